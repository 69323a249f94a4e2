//! Wiring only: read the config, build the clients once, run the handler.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::daily_report::{self, OwnerChannels, ReportConfig, ReportDeps};
use backoffice::report::counters::DailyCounters;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::config::{ConfigError, ProcessEnv};
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
        daily_report::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<ReportDeps<OwnerChannels>, Error> {
    let config = ReportConfig::from_env(&ProcessEnv)?;
    let sdk_settings = SdkSettings::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&sdk_settings).await;
    let counters = DailyCounters::from_env(dynamodb_client(&sdk_config), &ProcessEnv)?
        .ok_or(ConfigError::Missing("STATS_TABLE"))?;
    // Twilio only when the report goes to WhatsApp.
    let (whatsapp, send_timeout) = match &config.whatsapp {
        Some(_) => {
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
            let twilio = twilio_config(&ProcessEnv, &secrets).await?;
            let timeout = twilio.timeout.max(sdk_settings.operation_timeout);
            (Some(TwilioClient::new(twilio)?), timeout)
        }
        None => (None, sdk_settings.operation_timeout),
    };
    Ok(ReportDeps {
        counters,
        sender: OwnerChannels {
            sns: config
                .topic_arn
                .clone()
                .map(|topic| (backoffice::aws::sns_client(&sdk_config), topic)),
            whatsapp,
        },
        clock: Arc::new(SystemClock),
        config,
        channel_time: send_timeout + 2 * sdk_settings.operation_timeout,
    })
}
