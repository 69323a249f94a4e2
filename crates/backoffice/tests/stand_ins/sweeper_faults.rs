//! DynamoDB faults the sweeper must survive: throttling (retried by the SDK with
//! backoff), throttling that outlasts the retries (counted, the run fails so Lambda
//! records it, the cart is retried next run), and a hung connection cut by the timeouts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use backoffice::aws::SdkSettings;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::{SweeperConfig, SweeperDeps, run};
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::job::{Deadline, JobError};
use serde_json::json;

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#;

fn fast_retries() -> SdkSettings {
    SdkSettings {
        connect_timeout: Duration::from_millis(200),
        attempt_timeout: Duration::from_millis(300),
        operation_timeout: Duration::from_secs(2),
        max_attempts: 3,
    }
}

fn deps(client: aws_sdk_dynamodb::Client) -> SweeperDeps<DynamoCarts> {
    SweeperDeps {
        store: DynamoCarts::new(client, "carts"),
        clock: Arc::new(SystemClock),
        config: SweeperConfig {
            carts_table: "carts".into(),
            page_size: 100,
            concurrency: 4,
            batch_size: 25,
            stop_margin: Duration::ZERO,
        },
    }
}

fn is_first_shard(query: &aws_sdk_dynamodb::operation::query::QueryInput) -> bool {
    query.expression_attribute_values().and_then(|v| v.get(":shard")) == Some(&AttributeValue::S("00".into()))
}

/// One due cart in shard "00".
fn one_due_cart() -> QueryOutput {
    let item = HashMap::from([
        ("cartId".to_string(), AttributeValue::S("cart-1".into())),
        ("expiryShard".to_string(), AttributeValue::S("00".into())),
        ("expiresAt".to_string(), AttributeValue::N("1700000000".into())),
    ]);
    QueryOutput::builder().items(item).count(1).scanned_count(1).build()
}

fn one_due_cart_in_first_shard() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(is_first_shard)
        .then_output(one_due_cart)
}

fn empty_shards() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_dynamodb::Client::query).then_output(|| QueryOutput::builder().count(0).scanned_count(0).build())
}

#[tokio::test]
async fn throttled_calls_are_retried_with_backoff_and_the_run_succeeds() {
    let throttled_query = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(is_first_shard)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .http_status(400, Some(THROTTLED.into()))
        .output(one_due_cart)
        .build();
    let throttled_delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .output(|| DeleteItemOutput::builder().build())
        .build();
    let settings = fast_retries();
    let others = empty_shards();
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&throttled_query, &throttled_delete, &others],
        |config| config
            .retry_config(settings.retry_config())
            .timeout_config(settings.timeout_config())
    );

    let response = run(&deps(client), &json!({}), Deadline::unbounded()).await.unwrap();

    assert_eq!(response.deleted_count, 1);
    assert_eq!(
        throttled_query.num_calls(),
        3,
        "the first query was throttled twice, then retried"
    );
    assert_eq!(
        throttled_delete.num_calls(),
        2,
        "the delete was throttled once, then retried"
    );
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_fails_the_item_not_the_batch() {
    let always_throttled_delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let settings = fast_retries();
    let cart_query = one_due_cart_in_first_shard();
    let others = empty_shards();
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&cart_query, &always_throttled_delete, &others],
        |config| config
            .retry_config(settings.retry_config())
            .timeout_config(settings.timeout_config())
    );

    let error = run(&deps(client), &json!({}), Deadline::unbounded()).await.unwrap_err();

    assert!(matches!(error, JobError::ItemsFailed { failed: 1 }), "{error}");
    assert!(error.retryable());
    assert_eq!(
        always_throttled_delete.num_calls(),
        3,
        "max_attempts bounds the retries"
    );
    assert_eq!(others.num_calls(), 15, "the other shards were still swept");
}

/// A server that accepts connections and never answers.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (endpoint, task)
}

#[tokio::test]
async fn a_hung_call_is_cut_by_the_timeouts_and_reported_as_retryable() {
    let (endpoint, server) = black_hole().await;
    let settings = fast_retries();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .http_client(backoffice::https::sdk_http_client())
        .endpoint_url(&endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-3"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);

    // The outer timeout only keeps a regression from hanging the suite.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run(&deps(client), &json!({}), Deadline::unbounded()),
    )
    .await
    .expect("the SDK timeouts must end the call");

    let error = outcome.unwrap_err();
    match &error {
        JobError::Store(store) => {
            assert!(store.retryable, "{store}");
            assert_eq!(store.operation, "Query");
            assert!(store.message.to_lowercase().contains("timeout"), "{store}");
        }
        other => panic!("expected a DynamoDB error, got {other}"),
    }
    server.abort();
}
