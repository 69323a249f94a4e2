//! The writer functions of the Orders table's data contract (`put_new`, `complete`) and
//! the read helpers for tests and tools. Writers never overwrite an existing order with
//! `PutItem`: that would reset a settled review request and message the customer again.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamo::{DynamoOrders, pending_attributes};
use super::store::{Order, OrderStatus};
use crate::store::StoreError;
use crate::store::dynamo::{Item, is_condition_failure, rfc3339, s, store_error, string};

impl DynamoOrders {
    /// Creates an order with its business attributes (refuses to overwrite one). A
    /// completed order is then put in line for its review request by the stream consumer's
    /// own write ([`DynamoOrders::queue_for_review`]), so that tools without the stream see
    /// it in line at once.
    pub async fn put_new(&self, order: &Order) -> Result<(), StoreError> {
        let item: Item = serde_dynamo::to_item(order).map_err(|e| self.encode_error(&order.order_id, e))?;
        let stored_completed_at = string(&item, "completedAt");
        self.client
            .put_item()
            .table_name(&self.orders_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await
            .map_err(|e| store_error("PutItem", &self.orders_table, e))?;
        if let (OrderStatus::Completed, Some(completed_at), Some(stored)) =
            (order.status, order.completed_at, stored_completed_at)
        {
            self.queue_for_review(&order.order_id, &stored, completed_at).await?;
        }
        Ok(())
    }

    /// Marks an order completed and, the first time only, puts it in line for its
    /// review request.
    pub async fn complete(&self, order_id: &str, completed_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .update_expression("SET #status = :completed, completedAt = :completedAt")
            .condition_expression("attribute_exists(orderId)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":completedAt", s(rfc3339(completed_at)))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.orders_table, e))?;
        self.queue_for_review(order_id, &rfc3339(completed_at), completed_at)
            .await
            .map(|_| ())
    }

    /// Puts a completed order in line for its review request, once: only while it is
    /// still `completed` at `completed_at` and has no request yet, so a replayed or
    /// out-of-date stream record changes nothing. `stored_completed_at` is `completedAt` as
    /// the item holds it (a writer's own RFC 3339 form). `false`: nothing to do.
    pub async fn queue_for_review(
        &self,
        order_id: &str,
        stored_completed_at: &str,
        completed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut queue = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .update_expression(
                "SET reviewPendingShard = :shard, reviewPendingSince = :since, reviewRequestStatus = :pending",
            )
            // Once a request exists, completing again never queues a second one.
            .condition_expression(
                "attribute_not_exists(reviewRequestStatus) AND #status = :completed AND completedAt = :completedAt",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":completedAt", s(stored_completed_at));
        for (name, value) in pending_attributes(order_id, completed_at) {
            let placeholder = match name.as_str() {
                "reviewPendingShard" => ":shard",
                "reviewPendingSince" => ":since",
                _ => ":pending",
            };
            queue = queue.expression_attribute_values(placeholder, value);
        }
        match queue.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", &self.orders_table, e)),
        }
    }

    /// The raw order item, for tests and tools.
    pub async fn get_item(&self, order_id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.orders_table, e))?;
        Ok(output.item)
    }

    /// `reviewRequestStatus` of an order, for tests and tools.
    pub async fn request_status(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_item(order_id)
            .await?
            .and_then(|item| match item.get("reviewRequestStatus") {
                Some(AttributeValue::S(status)) => Some(status.clone()),
                _ => None,
            }))
    }
}
