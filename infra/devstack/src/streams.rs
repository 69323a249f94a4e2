//! A table's stream as Lambda hands it to a consumer: the records the DynamoDB API keeps
//! (Streams API: DescribeStream, GetShardIterator, GetRecords), turned into Lambda's
//! DynamoDB event (`aws_lambda_events`), so the path from a write to the consumer is real
//! in the tests, the demo and the benchmark.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use backoffice::jobs::derive_schedule::StreamBatch;
use serde_json::json;

use crate::stack::Stack;

#[derive(Debug, thiserror::Error)]
#[error("reading the stream of {table}: {message}")]
pub struct StreamError {
    table: String,
    message: String,
}

/// Every record of `table`'s stream from the start, in Lambda's event shape. `endpoint`:
/// the emulator's, or `None` for AWS.
pub async fn stream_records(
    client: &aws_sdk_dynamodb::Client,
    endpoint: Option<&str>,
    table: &str,
) -> Result<Vec<serde_json::Value>, StreamError> {
    let fail = |message: String| StreamError {
        table: table.to_owned(),
        message,
    };
    let mut loader = backoffice::aws::config_loader(&backoffice::aws::SdkSettings::default());
    if let Some(endpoint) = endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-3"));
    }
    let streams = aws_sdk_dynamodbstreams::Client::new(&loader.load().await);
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let stream_arn = described
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or_else(|| fail("the table has no stream".into()))?;
    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?
        .stream_description
        .ok_or_else(|| fail("DescribeStream gave no description".into()))?;
    let mut records = Vec::new();
    for shard in description.shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .set_shard_id(shard.shard_id().map(str::to_owned))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?
            .shard_iterator;
        // An open shard always hands back a next iterator: stop at the first empty page.
        while let Some(current) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let Some(change) = record.dynamodb() else { continue };
                let image = |image: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
                    serde_dynamo::Item::from(image.cloned().unwrap_or_default())
                };
                let created = change
                    .approximate_creation_date_time()
                    .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.secs());
                records.push(json!({
                    "eventID": record.event_id(),
                    "eventName": record.event_name().map(|name| name.as_str()),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "eu-west-3",
                    "eventSourceARN": stream_arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": created,
                        "Keys": image(change.keys.as_ref()),
                        "NewImage": image(change.new_image.as_ref()),
                        "OldImage": image(change.old_image.as_ref()),
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes(),
                        "StreamViewType": "NEW_AND_OLD_IMAGES"
                    }
                }));
            }
            iterator = page.next_shard_iterator;
        }
    }
    Ok(records)
}

/// Every record of `table`'s stream from the start, as Lambda's event for that table.
pub async fn stream_batch(stack: &Stack, table: &str) -> Result<StreamBatch, StreamError> {
    Ok(batch(
        stream_records(&stack.client, stack.endpoint.as_deref(), table).await?,
    ))
}

/// Records as one Lambda event (a record that is not one is kept, for the consumer to skip).
pub fn batch(records: Vec<serde_json::Value>) -> StreamBatch {
    serde_json::from_value(json!({ "Records": records })).unwrap_or_default()
}

/// Hands each record to a consumer once, as Lambda does, remembering what it delivered.
#[derive(Debug, Default)]
pub struct StreamTap {
    delivered: HashSet<String>,
}

impl StreamTap {
    /// The records of `tables`' streams not delivered yet, as one event.
    pub async fn fresh(&mut self, stack: &Stack, tables: &[&str]) -> Result<StreamBatch, StreamError> {
        self.fresh_at(&stack.client, stack.endpoint.as_deref(), tables).await
    }

    /// [`StreamTap::fresh`] on any endpoint.
    pub async fn fresh_at(
        &mut self,
        client: &aws_sdk_dynamodb::Client,
        endpoint: Option<&str>,
        tables: &[&str],
    ) -> Result<StreamBatch, StreamError> {
        let mut fresh = Vec::new();
        for table in tables {
            for record in stream_records(client, endpoint, table).await? {
                // Sequence numbers are unique within a stream only.
                let sequence = format!(
                    "{table}/{}",
                    record["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default()
                );
                if self.delivered.insert(sequence) {
                    fresh.push(record);
                }
            }
        }
        Ok(batch(fresh))
    }
}
