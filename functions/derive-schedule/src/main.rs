//! Wiring only: read the config, build the DynamoDB client once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::derive_schedule::dynamo::DynamoSchedule;
use backoffice::jobs::derive_schedule::{self, DeriveConfig, DeriveDeps, StreamBatch};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::messages::consent::DynamoConsents;
use backoffice::messages::outbox::{DynamoOutbox, OutboxTables};
use backoffice::report::counters::DailyCounters;
use backoffice::report::events::DynamoTally;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::config::{ProcessEnv, required_var};
use backoffice::runtime::init;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A function that cannot start answers the invocation with the reason (runtime::init).
    let deps = init::start(deps()).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<StreamBatch>| {
        derive_schedule::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<DeriveDeps<DynamoSchedule>, Error> {
    let config = DeriveConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let client = dynamodb_client(&sdk_config);
    let outbox = DynamoOutbox::new(
        client.clone(),
        OutboxTables {
            messages: config.messages_table.clone(),
            orders: config.orders_table.clone(),
            carts: config.carts_table.clone(),
            reviews: String::new(),
            consent: String::new(),
        },
        config.kinds.clone(),
        Arc::new(SystemClock),
    );
    // The daily report's counters, when the stack has them: orders, abandoned and
    // recovered carts, new and returning customers (the consent table keeps a customer's
    // first order).
    let tally = match DailyCounters::from_env(client.clone(), &ProcessEnv)? {
        Some(counters) => Some(DynamoTally {
            counters,
            consents: DynamoConsents::new(client.clone(), required_var(&ProcessEnv, "CONSENT_TABLE")?),
            outbox: outbox.clone(),
        }),
        None => None,
    };
    Ok(DeriveDeps {
        store: DynamoSchedule {
            carts: DynamoCarts::new(client.clone(), config.carts_table.clone()),
            // The reviews table is never touched by this function: it only schedules and counts.
            orders: DynamoOrders::new(client, config.orders_table.clone(), String::new()),
            outbox,
            tally,
        },
        config,
    })
}
