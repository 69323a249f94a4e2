//! Finding a customer's items (a filtered `Scan` per table) and removing their personal
//! attributes with conditional writes, so a run that stops half-way is finished by the next.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};

use super::Erased;
use crate::domain::phone::PhoneNumber;
use crate::store::StoreError;
use crate::store::dynamo::{Item, item_exists, rfc3339, s, store_error, written};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureTables {
    pub orders: String,
    pub carts: String,
    pub reviews: String,
    pub messages: String,
    pub consent: String,
}

#[derive(Debug, Clone)]
pub struct DynamoErasure {
    client: Client,
    tables: ErasureTables,
}

impl DynamoErasure {
    pub fn new(client: Client, tables: ErasureTables) -> Self {
        Self { client, tables }
    }

    /// The keys of `table`'s items whose `customerPhone` is `phone`, each with the number
    /// as stored. A stored number is read as the functions read it (surrounding spaces
    /// trimmed), so an order written `" +33…"` is the customer's too. A filter would cost
    /// the same: a Scan reads every item whatever it returns.
    async fn keys_of(&self, table: &str, key: &str, phone: &PhoneNumber) -> Result<Vec<(String, String)>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(table)
                .filter_expression("contains(customerPhone, :phone)")
                .projection_expression("#key, customerPhone")
                .expression_attribute_names("#key", key)
                .expression_attribute_values(":phone", s(phone.as_str()))
                .set_exclusive_start_key(cursor)
                .send()
                .await
                .map_err(|e| store_error("Scan", table, e))?;
            for item in output.items.unwrap_or_default() {
                let stored = item.get("customerPhone").and_then(|v| v.as_s().ok());
                let theirs = stored.is_some_and(|stored| PhoneNumber::parse(stored).is_ok_and(|p| p == *phone));
                if let (true, Some(value), Some(stored)) = (theirs, item.get(key).and_then(|v| v.as_s().ok()), stored) {
                    keys.push((value.clone(), stored.clone()));
                }
            }
            cursor = output.last_evaluated_key.filter(|k| !k.is_empty());
            if cursor.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Removes `remove` from the item, only while it still holds the number as `stored`.
    /// `true`: done now.
    async fn strip(
        &self,
        table: &str,
        key: &str,
        value: &str,
        stored: &str,
        remove: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .key(key, s(value))
            .update_expression(format!("SET erasedAt = :now REMOVE {remove}"))
            .condition_expression("customerPhone = :phone")
            .expression_attribute_values(":phone", s(stored))
            .expression_attribute_values(":now", s(rfc3339(now)));
        if remove.contains("#comment") {
            // `comment` is a DynamoDB reserved word.
            update = update.expression_attribute_names("#comment", "comment");
        }
        written(update.send().await, "UpdateItem", table)
    }

    /// Erases (or counts, in a dry run) the customer's personal data in every table.
    pub async fn erase(&self, phone: &PhoneNumber, dry_run: bool, now: DateTime<Utc>) -> Result<Erased, StoreError> {
        let t = &self.tables;
        let mut erased = Erased::default();
        let plan: [(&str, &str, &str, &mut u64); 4] = [
            (&t.orders, "orderId", "customerPhone, customerName", &mut erased.orders),
            (&t.carts, "cartId", "customerPhone, customerName", &mut erased.carts),
            (
                &t.reviews,
                "orderId",
                "customerPhone, #comment, previousComment",
                &mut erased.reviews,
            ),
            (
                &t.messages,
                "messageId",
                "customerPhone, customerName",
                &mut erased.messages,
            ),
        ];
        for (table, key, remove, count) in plan {
            for (value, stored) in self.keys_of(table, key, phone).await? {
                if dry_run {
                    *count += 1;
                    continue;
                }
                if table == t.messages {
                    self.close_waiting_message(&value, now).await?;
                }
                if self.strip(table, key, &value, &stored, remove, now).await? {
                    *count += 1;
                }
            }
        }
        erased.consent = if dry_run {
            u64::from(self.consent_exists(phone).await?)
        } else {
            let output = self
                .client
                .delete_item()
                .table_name(&t.consent)
                .key("phone", s(phone.as_str()))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| store_error("DeleteItem", &t.consent, e))?;
            u64::from(output.attributes.is_some_and(|item| !item.is_empty()))
        };
        Ok(erased)
    }

    /// A message still waiting is closed first, so no run sends it without its number.
    async fn close_waiting_message(&self, message_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.messages)
            .key("messageId", s(message_id))
            .update_expression("SET #st = :skipped, skipReason = :erased, closedAt = :now REMOVE dueShard")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":skipped", s("skipped"))
            .expression_attribute_values(":erased", s("erased"))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await;
        written(result, "UpdateItem", &self.tables.messages).map(|_| ())
    }

    async fn consent_exists(&self, phone: &PhoneNumber) -> Result<bool, StoreError> {
        item_exists(&self.client, &self.tables.consent, "phone", phone.as_str()).await
    }
}
