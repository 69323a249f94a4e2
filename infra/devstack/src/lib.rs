//! The local stack: an embedded DynamoDB emulator, the template's tables, seed data,
//! and the helpers the integration and end-to-end tests share.

pub mod counter;
pub mod embedded;
pub mod faults;
pub mod life;
pub mod replies;
pub mod seed;
pub mod stack;
pub mod streams;
pub mod template;
pub mod twilio_standin;
