//! Wiring only: read the config and the Twilio secret, build the clients once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::clock::SystemClock;
use backoffice::config::ProcessEnv;
use backoffice::orders::dynamo::DynamoOrders;
use backoffice::review_requests::{self, ReviewDeps, ReviewJobConfig};
use backoffice::secrets::twilio_config;
use backoffice::trigger::JobPayload;
use backoffice::twilio::TwilioClient;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    backoffice::logging::init();
    let config = ReviewJobConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
    let twilio = TwilioClient::new(twilio_config(&ProcessEnv, &secrets).await?)?;
    let deps = ReviewDeps {
        store: DynamoOrders::new(
            dynamodb_client(&sdk_config),
            &config.orders_table,
            &config.reviews_table,
        ),
        messenger: twilio,
        clock: Arc::new(SystemClock),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<JobPayload>| {
        review_requests::handle(&deps, event)
    }))
    .await
}
