//! Wiring only: read the config and the Twilio secret, build the clients once, run the
//! handler for each webhook request from the Function URL.

use std::sync::Arc;

use backoffice::aws::{SdkSettings, dynamodb_client, load_sdk_config};
use backoffice::jobs::record_review_reply::alerts::{ShopAlerts, WhatsAppAdminAlert};
use backoffice::jobs::record_review_reply::dynamo::DynamoReplies;
use backoffice::jobs::record_review_reply::forward::Forwarder;
use backoffice::jobs::record_review_reply::{self, FunctionUrlRequest, ReplyConfig, ReplyDeps, SignatureValidator};
use backoffice::report::counters::DailyCounters;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::config::{ProcessEnv, shop_timezone};
use backoffice::runtime::init;
use backoffice::secrets::twilio_config;
use backoffice::twilio::TwilioClient;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A function that cannot start answers the invocation with the reason (runtime::init).
    let deps = init::start(deps()).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<FunctionUrlRequest>| {
        record_review_reply::handle(&deps, event)
    }))
    .await
}

/// Settings read and clients built once per cold start.
async fn deps() -> Result<ReplyDeps<DynamoReplies, ShopAlerts>, Error> {
    let config = ReplyConfig::from_env(&ProcessEnv)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&ProcessEnv)?).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
    // The same Twilio account as request-reviews: its auth token signs the webhooks.
    let twilio_config = twilio_config(&ProcessEnv, &secrets).await?;
    let validator = SignatureValidator::new(twilio_config.auth_token.clone());
    let twilio = TwilioClient::new(twilio_config)?;
    let alerts = ShopAlerts {
        sns: config
            .alert_topic_arn
            .clone()
            .map(|topic_arn| (backoffice::aws::sns_client(&sdk_config), topic_arn)),
        whatsapp: match (&config.admin_whatsapp_to, &config.admin_alert_template_sid) {
            (Some(to), Some(template_sid)) => Some(WhatsAppAdminAlert {
                twilio,
                to: to.clone(),
                template_sid: template_sid.clone(),
            }),
            _ => None,
        },
    };
    let forwarder = match &config.forward_url {
        Some(url) => Some(Forwarder::new(url.clone(), validator.clone(), config.forward_timeout)?),
        None => None,
    };
    let client = dynamodb_client(&sdk_config);
    let mut store = DynamoReplies::new(
        client.clone(),
        &config.orders_table,
        &config.reviews_table,
        &config.consent_table,
    );
    if let Some(messages_table) = &config.messages_table {
        store = store.with_deliveries(messages_table);
    }
    if let Some(stats_table) = &config.stats_table {
        store = store.with_counters(DailyCounters::new(client, stats_table, shop_timezone(&ProcessEnv)?));
    }
    Ok(ReplyDeps {
        store,
        alerts,
        validator,
        clock: Arc::new(SystemClock),
        config,
        forwarder,
    })
}
