//! What the sweep needs from the Carts table: the expiry index it reads, and the store
//! trait its adapters implement.
//!
//! Every cart carries `expiryShard` so that it appears in the sparse `expiry-index` GSI
//! (hash `expiryShard`, range `expiresAt`). The sweeper queries each shard for
//! `expiresAt <= now`, so its reads grow with the carts that are due, not with the table.
//! Writers must set `expiryShard`: [`Cart::new`] and [`dynamo::DynamoCarts::put`] do.

use std::future::Future;

use crate::store::StoreError;
use crate::store::walk::IndexPage;

pub use super::item::{ExpiredCart, MalformedCart, MalformedReason, decode_expiry_entry};
pub use crate::domain::cart::{CART_LIFETIME, Cart, expiry_shard_for};

/// The GSI the sweeper reads; defined in template.yaml.
pub const EXPIRY_INDEX: &str = "expiry-index";

/// A page of due `expiry-index` entries: the carts, or why an entry could not be read.
pub type ExpiredPage<Cursor> = IndexPage<Result<ExpiredCart, MalformedCart>, Cursor>;

/// The most conditional deletes one `BatchExecuteStatement` takes.
pub const DELETE_BATCH: usize = 25;

/// One cart's answer within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchedDelete {
    Done(DeleteOutcome),
    /// Throttled or failed on its own (the others went through): retried alone.
    Retry(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Nothing to delete: DynamoDB TTL or another run got there first.
    AlreadyGone,
    /// Its `expiresAt` moved into the future after the index was read.
    NotExpired,
}

/// What the sweeper needs from a cart store.
pub trait CartStore: Send + Sync {
    /// Opaque position in a paged query.
    type Cursor: Send;

    /// Up to `limit` index entries of `shard` with `expiresAt <= now`.
    fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<Self::Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<ExpiredPage<Self::Cursor>, StoreError>> + Send;

    /// Deletes the cart only if it still exists and `expiresAt <= now` at that moment.
    fn delete_if_expired(
        &self,
        cart_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;

    /// Up to [`DELETE_BATCH`] carts, each deleted under the condition of
    /// [`CartStore::delete_if_expired`], in one request: one answer per cart, in order.
    /// By default one delete after the other.
    fn delete_batch_if_expired(
        &self,
        cart_ids: &[String],
        now: i64,
    ) -> impl Future<Output = Result<Vec<BatchedDelete>, StoreError>> + Send {
        async move {
            let mut answers = Vec::with_capacity(cart_ids.len());
            for cart_id in cart_ids {
                answers.push(match self.delete_if_expired(cart_id, now).await {
                    Ok(outcome) => BatchedDelete::Done(outcome),
                    Err(error) => BatchedDelete::Retry(error.to_string()),
                });
            }
            Ok(answers)
        }
    }
}
