//! The review job (request-reviews) against a Twilio stand-in that answers after 150 ms:
//! the rate it achieves against the one configured, and its DynamoDB requests per send.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::messages::consent::DynamoConsents;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{TwilioClient, TwilioConfig};
use bench::results::{Float, Reviews};
use bench::{Failure, RequestCounter, counted_client, create_table, local_sdk_config};
use chrono::{DateTime, TimeDelta, Utc};
use devstack::seed::put_completed_order;
use devstack::twilio_standin::{
    LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, LOCAL_TEMPLATE_SID, LOCAL_WHATSAPP_FROM, TwilioStandIn,
};
use futures::StreamExt;
use serde_json::json;

/// How long the Twilio stand-in takes to accept a message (issue #5: 150 ms).
const TWILIO_STANDIN_DELAY: Duration = Duration::from_millis(150);

/// `orders` orders completed 8 days before `now`, all due for a review request, then one
/// run of the job at `mps` messages per second.
pub async fn bench_reviews(endpoint: &str, orders: usize, mps: u32, now: DateTime<Utc>) -> Result<Reviews, Failure> {
    let sdk_config = local_sdk_config(endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let (orders_table, reviews_table) = ("bench-r-orders", "bench-r-reviews");
    create_table(&admin, "OrdersTable", orders_table).await?;
    create_table(&admin, "ReviewsTable", reviews_table).await?;
    let consent_table = "bench-r-consent";
    create_table(&admin, "ConsentTable", consent_table).await?;
    let writer = DynamoOrders::new(admin.clone(), orders_table, reviews_table);
    let completed_at = now - TimeDelta::days(8);
    let seeded = futures::stream::iter(0..orders)
        .map(|i| {
            let writer = &writer;
            async move {
                put_completed_order(
                    writer,
                    &format!("ord-{i:06}"),
                    &format!("+3362{i:07}"),
                    Some("Ana Lopez"),
                    completed_at,
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    seeded.into_iter().collect::<Result<Vec<()>, _>>()?;

    let twilio = TwilioStandIn::start_with_delay(TWILIO_STANDIN_DELAY).await?;
    let env: HashMap<String, String> = [
        ("ORDERS_TABLE", orders_table.to_string()),
        ("REVIEWS_TABLE", reviews_table.to_string()),
        ("CONSENT_TABLE", consent_table.to_string()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.to_string()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.to_string()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.to_string()),
        ("REVIEW_TEMPLATE_SID", LOCAL_TEMPLATE_SID.to_string()),
        ("TWILIO_MAX_MPS", mps.to_string()),
        ("QUIET_HOURS_START", "00:00".to_string()),
        ("QUIET_HOURS_END", "00:00".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = ReviewJobConfig::from_env(&env)?;
    let concurrency = config.concurrency;
    let counter = RequestCounter::default();
    let deps = ReviewDeps {
        store: DynamoOrders::new(counted_client(&sdk_config, &counter), orders_table, reviews_table).with_consents(
            DynamoConsents::new(counted_client(&sdk_config, &counter), consent_table),
        ),
        messenger: TwilioClient::new(TwilioConfig::from_env(&env)?)?,
        clock: Arc::new(SystemClock),
        config,
    };
    let started = Instant::now();
    let response = request_reviews::run(&deps, &json!({}), Deadline::unbounded(), "bench-run").await?;
    let whole_run_s = started.elapsed().as_secs_f64();
    let mut arrivals: Vec<Instant> = twilio.messages().iter().map(|m| m.received_at).collect();
    arrivals.sort();
    let sent = response.sent;
    if sent != orders as u64 {
        return Err(format!(
            "the review run sent {sent} of {orders}: {}",
            serde_json::to_string(&response)?
        )
        .into());
    }
    let span_s = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
        _ => f64::NAN,
    };
    // Sends between the first and the last request: (n - 1) intervals.
    let achieved = (arrivals.len() as f64 - 1.0) / span_s;
    let mut max_in_1s = 0;
    let mut low = 0;
    for high in 0..arrivals.len() {
        while arrivals[high].duration_since(arrivals[low]) >= Duration::from_secs(1) {
            low += 1;
        }
        max_in_1s = max_in_1s.max(high - low + 1);
    }
    let first_send_after_s = arrivals
        .first()
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(f64::NAN);
    Ok(Reviews {
        due_orders: orders,
        sent,
        configured_mps: mps,
        achieved_mps: Float(achieved),
        rate_ratio: Float(achieved / f64::from(mps)),
        achieved_mps_definition: "(sends - 1) / time from the first to the last request received by the stand-in"
            .into(),
        whole_run_s: Float(whole_run_s),
        whole_run_mps: Float(sent as f64 / whole_run_s),
        first_send_after_s: Float(first_send_after_s),
        max_sends_in_any_1s: max_in_1s,
        standin_delay_ms: TWILIO_STANDIN_DELAY.as_millis() as u64,
        review_concurrency: concurrency,
        dynamodb_requests: counter.by_operation(),
        dynamodb_requests_per_sent: Float(counter.total() as f64 / sent.max(1) as f64),
        items_read: response.report.items_read,
    })
}
