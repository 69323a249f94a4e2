//! Wiring only: read the config, build the DynamoDB client once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::carts::dynamo::DynamoCarts;
use backoffice::clock::SystemClock;
use backoffice::config::ProcessEnv;
use backoffice::sweeper::{self, SweeperConfig, SweeperDeps};
use backoffice::trigger::JobPayload;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    backoffice::logging::init();
    let config = SweeperConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let deps = SweeperDeps {
        store: DynamoCarts::new(dynamodb_client(&sdk_config), config.carts_table.clone()),
        clock: Arc::new(SystemClock),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<JobPayload>| {
        sweeper::handle(&deps, event)
    }))
    .await
}
