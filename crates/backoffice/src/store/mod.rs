//! What every DynamoDB adapter shares: the error type of a store call, the attribute
//! helpers ([`dynamo`]), and the sharding of the sparse indexes ([`shard`]).

pub mod dynamo;
pub mod partition;
pub mod shard;
pub mod walk;

/// A DynamoDB call that failed after the SDK's retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("DynamoDB {operation} on {table}: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub table: String,
    pub message: String,
    /// Throttling, timeouts and 5xx: worth another try later.
    pub retryable: bool,
}
