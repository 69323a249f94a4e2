//! Wiring only: read the config and the Twilio secret, build the clients once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::send_messages::{self, SendMessagesConfig, SendMessagesDeps};
use backoffice::messages::outbox::DynamoOutbox;
use backoffice::messages::sender::KindMessenger;
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
        send_messages::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<SendMessagesDeps<DynamoOutbox, KindMessenger>, Error> {
    let config = SendMessagesConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
    let twilio = TwilioClient::new(twilio_config(&ProcessEnv, &secrets).await?)?;
    let clock = Arc::new(SystemClock);
    let client = dynamodb_client(&sdk_config);
    let mut outbox = DynamoOutbox::new(
        client.clone(),
        (&config.tables).into(),
        config.kinds.clone(),
        clock.clone(),
    )
    .with_caps(config.caps);
    if let Some(counters) = DailyCounters::from_env(client, &ProcessEnv)? {
        outbox = outbox.with_counters(counters);
    }
    Ok(SendMessagesDeps {
        outbox,
        messenger: KindMessenger {
            twilio,
            kinds: config.kinds.clone(),
        },
        clock,
        config,
    })
}
