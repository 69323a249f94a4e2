//! The shop's back office: domain types, DynamoDB adapters and the scheduled jobs.
//!
//! Each function's `main.rs` reads its config, builds clients once, and hands a deps
//! struct to the job's `handle`. Everything else lives here.

#[cfg(test)]
mod alloc_meter;
pub mod aws;
pub mod domain;
pub mod https;
pub mod jobs;
pub mod messages;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod store;
#[cfg(any(test, feature = "fakes"))]
pub mod testing;
pub mod twilio;

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_meter::MeteredAllocator = alloc_meter::MeteredAllocator;
