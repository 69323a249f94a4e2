//! The shop's back office: domain types, DynamoDB adapters and the scheduled jobs.
//!
//! Each function's `main.rs` reads its config, builds clients once, and hands a deps
//! struct to the job's `handle`. Everything else lives here.

#[cfg(test)]
mod alloc_meter;
pub mod aws;
pub mod carts;
pub mod clock;
pub mod config;
pub mod https;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod orders;
pub mod phone;
pub mod replies;
pub mod review_requests;
pub mod secrets;
pub mod shard;
pub mod sweeper;
pub mod trigger;
pub mod twilio;

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_meter::MeteredAllocator = alloc_meter::MeteredAllocator;
