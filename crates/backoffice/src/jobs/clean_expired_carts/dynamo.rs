//! The DynamoDB cart store, and the writer functions the shop's other services use.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, BatchStatementErrorCodeEnum, ReturnValuesOnConditionCheckFailure};

use super::store::{BatchedDelete, Cart, CartStore, DeleteOutcome, EXPIRY_INDEX, ExpiredPage, decode_expiry_entry};
use crate::store::StoreError;
use crate::store::dynamo::{Item, batch_statement, execute_batch, is_condition_failure, n, s, store_error};

#[derive(Debug, Clone)]
pub struct DynamoCarts {
    client: Client,
    table: String,
}

impl DynamoCarts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes a cart with every attribute the contract requires, index key included.
    pub async fn put(&self, cart: &Cart) -> Result<(), StoreError> {
        let item: Item = serde_dynamo::to_item(cart).map_err(|e| StoreError {
            operation: "PutItem",
            table: self.table.clone(),
            message: format!("cart {} cannot be encoded: {e}", cart.cart_id),
            retryable: false,
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", &self.table, e))?;
        Ok(())
    }

    /// Sets the attributes the expiry index needs on a cart written with its business
    /// attributes only: `expiryShard`, and `expiresAt` when the writer left it out. Never
    /// recreates a deleted cart nor moves an expiry a writer set. `false`: the cart is gone
    /// or has them already.
    pub async fn derive_expiry(
        &self,
        cart_id: &str,
        expiry_shard: &str,
        expires_at_if_absent: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("cartId", AttributeValue::S(cart_id.to_owned()))
            .expression_attribute_names("#shard", "expiryShard")
            .expression_attribute_values(":shard", AttributeValue::S(expiry_shard.to_owned()));
        // Only when something is missing, so a replayed record writes nothing.
        update = match expires_at_if_absent {
            Some(expires_at) => update
                .condition_expression(
                    "attribute_exists(cartId) AND (attribute_not_exists(#expiresAt) OR attribute_not_exists(#shard) OR #shard <> :shard)",
                )
                .update_expression("SET #shard = :shard, #expiresAt = if_not_exists(#expiresAt, :expiresAt)")
                .expression_attribute_names("#expiresAt", "expiresAt")
                .expression_attribute_values(":expiresAt", AttributeValue::N(expires_at.to_string())),
            None => update
                .condition_expression("attribute_exists(cartId) AND (attribute_not_exists(#shard) OR #shard <> :shard)")
                .update_expression("SET #shard = :shard"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", &self.table, e)),
        }
    }

    /// Moves a cart's expiry (the customer came back). Fails if the cart is gone.
    pub async fn extend(&self, cart_id: &str, new_expires_at: i64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("cartId", AttributeValue::S(cart_id.to_owned()))
            .update_expression("SET #expiresAt = :expiresAt")
            .condition_expression("attribute_exists(cartId)")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_values(":expiresAt", AttributeValue::N(new_expires_at.to_string()))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e))?;
        Ok(())
    }

    /// Reads one cart, for tests and tools. `None` when it does not exist.
    pub async fn get(&self, cart_id: &str) -> Result<Option<Cart>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("cartId", AttributeValue::S(cart_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.table, e))?;
        output
            .item
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| StoreError {
                    operation: "GetItem",
                    table: self.table.clone(),
                    message: format!("cart {cart_id} does not match the contract: {e}"),
                    retryable: false,
                })
            })
            .transpose()
    }
}

impl CartStore for DynamoCarts {
    type Cursor = Item;

    async fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<Item>,
        limit: i32,
    ) -> Result<ExpiredPage<Item>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EXPIRY_INDEX)
            .key_condition_expression("#shard = :shard AND #expiresAt <= :now")
            .expression_attribute_names("#shard", "expiryShard")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_values(":shard", AttributeValue::S(shard.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .set_exclusive_start_key(cursor)
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error("Query", &self.table, e))?;
        let items_read = u64::try_from(output.scanned_count).unwrap_or_default();
        Ok(ExpiredPage {
            foreign: 0,
            entries: output
                .items
                .unwrap_or_default()
                .iter()
                .map(decode_expiry_entry)
                .collect(),
            items_read,
            next: output.last_evaluated_key.filter(|key| !key.is_empty()),
        })
    }

    /// One `BatchExecuteStatement` of PartiQL deletes, each with its own condition:
    /// `DELETE … WHERE cartId = ? AND expiresAt <= ? RETURNING ALL OLD *`. A missing item
    /// is not an error for a PartiQL delete (DynamoDB and the emulators answer success),
    /// so the returned old item tells a deletion from a cart already gone; a failed
    /// condition returns the cart as it is (extended).
    async fn delete_batch_if_expired(&self, cart_ids: &[String], now: i64) -> Result<Vec<BatchedDelete>, StoreError> {
        let statement = format!(
            "DELETE FROM \"{}\" WHERE cartId = ? AND expiresAt <= ? RETURNING ALL OLD *",
            self.table
        );
        let statements = cart_ids
            .iter()
            .map(|cart_id| batch_statement(&self.table, &statement, vec![s(cart_id), n(now)], true))
            .collect::<Result<Vec<_>, _>>()?;
        let responses = execute_batch(&self.client, &self.table, statements).await?;
        let has_item = |item: Option<&Item>| item.is_some_and(|item| !item.is_empty());
        Ok(responses
            .iter()
            .map(|response| match response.error() {
                None if has_item(response.item()) => BatchedDelete::Done(DeleteOutcome::Deleted),
                None => BatchedDelete::Done(DeleteOutcome::AlreadyGone),
                Some(error) => match error.code() {
                    Some(BatchStatementErrorCodeEnum::ConditionalCheckFailed) if has_item(error.item()) => {
                        BatchedDelete::Done(DeleteOutcome::NotExpired)
                    }
                    Some(BatchStatementErrorCodeEnum::ConditionalCheckFailed) => {
                        BatchedDelete::Done(DeleteOutcome::AlreadyGone)
                    }
                    code => BatchedDelete::Retry(format!(
                        "{}: {}",
                        code.map_or("no code", BatchStatementErrorCodeEnum::as_str),
                        error.message().unwrap_or_default()
                    )),
                },
            })
            .collect())
    }

    async fn delete_if_expired(&self, cart_id: &str, now: i64) -> Result<DeleteOutcome, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("cartId", AttributeValue::S(cart_id.to_owned()))
            // Re-checked at the moment of deletion, as DynamoDB TTL does: a cart extended
            // since the index was read survives.
            .condition_expression("attribute_exists(cartId) AND #expiresAt <= :now")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(error) => match error.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let still_there = matches!(
                        service,
                        aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(e)
                            if e.item.as_ref().is_some_and(|item| !item.is_empty())
                    );
                    Ok(if still_there {
                        DeleteOutcome::NotExpired
                    } else {
                        DeleteOutcome::AlreadyGone
                    })
                }
                _ => Err(store_error("DeleteItem", &self.table, error)),
            },
        }
    }
}
