//! A table's stream as Lambda hands it to a consumer: the records the DynamoDB API keeps
//! (Streams API: DescribeStream, GetShardIterator, GetRecords), turned into Lambda's
//! DynamoDB event (`aws_lambda_events`), so the path from a write to the consumer is real.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use backoffice::jobs::derive_schedule::StreamBatch;
use devstack::stack::Stack;
use serde_json::json;

/// Every record of `table`'s stream from the start, in Lambda's event shape.
pub async fn stream_records(stack: &Stack, table: &str) -> Vec<serde_json::Value> {
    let mut loader = backoffice::aws::config_loader(&backoffice::aws::SdkSettings::default());
    if let Some(endpoint) = &stack.endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-3"));
    }
    let streams = aws_sdk_dynamodbstreams::Client::new(&loader.load().await);
    let described = stack.client.describe_table().table_name(table).send().await.unwrap();
    let stream_arn = described
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the template gives the table a stream");
    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut records = Vec::new();
    for shard in description.shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        // An open shard always hands back a next iterator: stop at the first empty page.
        while let Some(current) = iterator {
            let page = streams.get_records().shard_iterator(current).send().await.unwrap();
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let change = record.dynamodb().unwrap();
                let image = |image: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
                    serde_dynamo::Item::from(image.cloned().unwrap_or_default())
                };
                records.push(json!({
                    "eventID": record.event_id(),
                    "eventName": record.event_name().unwrap().as_str(),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "eu-west-3",
                    "eventSourceARN": stream_arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": change.approximate_creation_date_time().map_or_else(|| chrono::Utc::now().timestamp(), |t| t.secs()),
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
    records
}

/// Every record of `table`'s stream from the start, as Lambda's event for that table.
pub async fn stream_batch(stack: &Stack, table: &str) -> StreamBatch {
    batch(stream_records(stack, table).await)
}

/// Records as one Lambda event.
pub fn batch(records: Vec<serde_json::Value>) -> StreamBatch {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}
