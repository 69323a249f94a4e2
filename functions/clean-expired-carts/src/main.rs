//! Wiring only: read the config, build the DynamoDB client once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::{self, SweeperConfig, SweeperDeps};
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::config::ProcessEnv;
use backoffice::runtime::init;
use backoffice::runtime::trigger::JobPayload;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A function that cannot start answers the invocation with the reason (runtime::init).
    let deps = init::start(deps()).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<JobPayload>| {
        clean_expired_carts::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<SweeperDeps<DynamoCarts>, Error> {
    let config = SweeperConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    Ok(SweeperDeps {
        store: DynamoCarts::new(dynamodb_client(&sdk_config), config.carts_table.clone()),
        clock: Arc::new(SystemClock),
        config,
    })
}
