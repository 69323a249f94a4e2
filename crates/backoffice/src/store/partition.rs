//! One partition of a sharded sparse index: read whole (the small ones: claims in flight,
//! messages awaiting reconciliation) or page by page below a bound (what is due).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::Select;

use super::StoreError;
use super::dynamo::{Item, n, s, store_error};

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

    /// One page of the partition's items whose `range_key` is strictly below `before`, in
    /// range order, from `cursor`: a job's walk over one shard of a sparse index.
    pub async fn page_below(
        &self,
        range_key: &str,
        before: i64,
        cursor: Option<Item>,
        limit: i32,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StoreError> {
        self.client
            .query()
            .table_name(self.table)
            .index_name(self.index)
            .key_condition_expression("#hash = :value AND #range < :before")
            .expression_attribute_names("#hash", self.hash_key)
            .expression_attribute_names("#range", range_key)
            .expression_attribute_values(":value", s(self.value))
            .expression_attribute_values(":before", n(before))
            .set_exclusive_start_key(cursor)
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error("Query", self.table, e))
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
