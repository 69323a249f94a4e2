//! One module per function, each with the same parts: `mod.rs` (the handler and the
//! run), `config.rs` (its settings), `store.rs` (what it needs from DynamoDB: the port),
//! `dynamo.rs` (the adapter), `memory.rs` (an in-memory fake for tests), `metrics.rs`
//! (its metric list) and `tests.rs`.

pub mod clean_expired_carts;
pub mod daily_report;
pub mod derive_schedule;
pub mod erase_customer;
pub mod record_review_reply;
pub mod request_reviews;
pub mod send_messages;
