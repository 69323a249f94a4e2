//! Wiring only: read the config and the Twilio secret, build the clients once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::messages::consent::DynamoConsents;
use backoffice::report::counters::DailyCounters;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::config::ProcessEnv;
use backoffice::runtime::init;
use backoffice::runtime::trigger::JobPayload;
use backoffice::secrets::twilio_config;
use backoffice::twilio::TwilioClient;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A function that cannot start answers the invocation with the reason (runtime::init).
    let deps = init::start(deps()).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<JobPayload>| {
        request_reviews::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<ReviewDeps<DynamoOrders, TwilioClient>, Error> {
    let config = ReviewJobConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
    let twilio = TwilioClient::new(twilio_config(&ProcessEnv, &secrets).await?)?;
    let client = dynamodb_client(&sdk_config);
    let mut store = DynamoOrders::new(client.clone(), &config.orders_table, &config.reviews_table)
        .with_consents(DynamoConsents::new(client.clone(), &config.consent_table));
    if let Some(counters) = DailyCounters::from_env(client, &ProcessEnv)? {
        store = store.with_counters(counters);
    }
    Ok(ReviewDeps {
        store,
        messenger: twilio,
        clock: Arc::new(SystemClock),
        config,
    })
}
