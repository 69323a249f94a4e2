//! Whole partitions of an index: the small ones the message engine reads whole (claims
//! in flight, messages awaiting reconciliation), page after page.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::Select;

use super::StoreError;
use super::dynamo::{Item, s, store_error};

/// One partition of `index` on `table`: the items whose `hash_key` is `value`.
pub struct Partition<'a> {
    pub client: &'a Client,
    pub table: &'a str,
    pub index: &'a str,
    pub hash_key: &'a str,
    pub value: &'a str,
}

impl Partition<'_> {
    /// Every item of the partition.
    pub async fn items(&self) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        self.pages(None, |output| {
            items.extend(output.items.unwrap_or_default());
        })
        .await?;
        Ok(items)
    }

    /// How many items the partition holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let mut count = 0u64;
        self.pages(Some(Select::Count), |output| {
            count += u64::try_from(output.count).unwrap_or_default()
        })
        .await?;
        Ok(count)
    }

    async fn pages(
        &self,
        select: Option<Select>,
        mut each: impl FnMut(aws_sdk_dynamodb::operation::query::QueryOutput),
    ) -> Result<(), StoreError> {
        let mut cursor = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(self.table)
                .index_name(self.index)
                .key_condition_expression("#hash = :value")
                .expression_attribute_names("#hash", self.hash_key)
                .expression_attribute_values(":value", s(self.value))
                .set_select(select.clone())
                .set_exclusive_start_key(cursor)
                .send()
                .await
                .map_err(|e| store_error("Query", self.table, e))?;
            cursor = output.last_evaluated_key.clone().filter(|key| !key.is_empty());
            each(output);
            if cursor.is_none() {
                return Ok(());
            }
        }
    }
}
