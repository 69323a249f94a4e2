//! `devstack`: the local stack from one command.
//!
//! - `devstack demo`: embedded DynamoDB, tables from template.yaml, a Twilio stand-in,
//!   seed carts and orders, run both jobs, print their results and the messages sent,
//!   walk one order through its life (every message, through the tables' streams), then
//!   play three customers' signed replies through the webhook's handler.
//! - `devstack serve [--host 127.0.0.1] [--port 8000] [--prefix shop] [--seed-carts N]
//!   [--seed-orders N]`: the same stack as servers for `cargo lambda watch`, `sam local
//!   invoke` and the AWS CLI; prints the environment to use.
//! - `devstack count --endpoint URL --table NAME`: items in a table.
//! - `devstack webhook-event --url URL --from PHONE --sid SID --body TEXT`: a Function URL
//!   event of Twilio's POST of that reply, signed for `URL` with the stand-in's auth token
//!   (for `sam local invoke -e`).
//! - `devstack stream-event --endpoint URL --table NAME [--key VALUE]`: Lambda's DynamoDB
//!   Streams event of the table's stream records (those of the item `VALUE` only), read
//!   through the Streams API (for `cargo lambda invoke` and `sam local invoke -e`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::{self, SweeperConfig, SweeperDeps};
use backoffice::jobs::daily_report::{self, OwnerChannels, ReportConfig, ReportDeps};
use backoffice::jobs::record_review_reply::{SignatureValidator, signed_twilio_post};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::report::counters::DailyCounters;
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{AuthToken, TwilioClient, TwilioConfig};
use chrono::Utc;
use devstack::life::order_life;
use devstack::replies::{play_replies, reply_params};
use devstack::seed::{count_items, seed_carts, seed_demo_orders, seed_malformed_carts};
use devstack::stack::{Stack, client_for};
use devstack::streams::stream_records;
use devstack::twilio_standin::{LOCAL_AUTH_TOKEN, TwilioStandIn};

type Failure = Box<dyn std::error::Error>;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The function's environment for this stack, as a map the config readers accept.
fn function_env(stack: &Stack, twilio: &TwilioStandIn) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = stack
        .tables
        .env_vars()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(twilio.env_vars().into_iter().map(|(k, v)| (k.to_string(), v)));
    // No quiet hours: what the local stack sends must not depend on the time of day.
    env.insert("QUIET_HOURS_START".into(), "00:00".into());
    env.insert("QUIET_HOURS_END".into(), "00:00".into());
    env
}

async fn demo() -> Result<(), Failure> {
    let stack = Stack::embedded("shop", 0).await?;
    let twilio = TwilioStandIn::start().await?;
    let env = function_env(&stack, &twilio);
    let now = Utc::now();
    println!(
        "local DynamoDB (dynoxide) at {}",
        stack.endpoint.as_deref().unwrap_or_default()
    );
    println!("local Twilio stand-in at {}", twilio.uri());

    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    let seeded = seed_carts(&carts, now, 30, 15).await?;
    let malformed = seed_malformed_carts(&stack.client, &stack.tables.carts).await?;
    println!(
        "\nseeded {} expired, {} live and {} malformed carts",
        seeded.expired.len(),
        seeded.live.len(),
        malformed.len()
    );
    let sweeper = SweeperDeps {
        store: carts,
        clock: Arc::new(SystemClock),
        config: SweeperConfig::from_env(&env)?,
    };
    let swept = clean_expired_carts::run(&sweeper, &serde_json::json!({}), Deadline::unbounded()).await?;
    println!("clean-expired-carts result:\n{}", serde_json::to_string_pretty(&swept)?);
    println!(
        "carts left in the table: {}",
        count_items(&stack.client, &stack.tables.carts).await?
    );

    let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
    seed_demo_orders(&stack.client, &orders, &stack.tables.reviews, now, 5).await?;
    println!("\nseeded 5 due orders, 1 not yet due, 1 too old, 1 already reviewed, 1 with a bad phone number");
    let counters = DailyCounters::from_env(stack.client.clone(), &env)?.ok_or("STATS_TABLE")?;
    let reviews = ReviewDeps {
        store: orders.with_counters(counters.clone()),
        messenger: TwilioClient::new(TwilioConfig::from_env(&env)?)?,
        clock: Arc::new(SystemClock),
        config: ReviewJobConfig::from_env(&env)?,
    };
    let requested = request_reviews::run(&reviews, &serde_json::json!({}), Deadline::unbounded(), "demo").await?;
    println!("request-reviews result:\n{}", serde_json::to_string_pretty(&requested)?);
    println!("messages the Twilio stand-in received:");
    // Sent concurrently: printed in a stable order.
    let mut messages = twilio.messages();
    messages.sort_by(|a, b| a.to.cmp(&b.to));
    for message in messages {
        let to = message.to.trim_start_matches("whatsapp:");
        let to = PhoneNumber::parse(to)
            .map(|p| p.masked().to_string())
            .unwrap_or_else(|_| "<unparsable>".into());
        let content = match (message.content_sid, message.content_variables, message.body) {
            (Some(sid), variables, _) => format!("template {sid} with {}", variables.unwrap_or_default()),
            (None, _, Some(body)) => format!("body {body:?}"),
            _ => "nothing".into(),
        };
        println!("  to whatsapp:{to}: {content}");
    }
    let again = request_reviews::run(&reviews, &serde_json::json!({}), Deadline::unbounded(), "demo-again").await?;
    println!("a second run the same day sends {} message(s)", again.sent);

    demo_replies(&stack, &env).await?;
    demo_report(counters, &env).await?;

    // A stack of its own, so that only this order's changes are on the streams.
    let life = Stack::embedded("life", 0).await?;
    order_life(&life, &twilio, &function_env(&life, &twilio)).await
}

async fn demo_replies(stack: &Stack, env: &HashMap<String, String>) -> Result<(), Failure> {
    println!("\ncustomers reply on WhatsApp (signed webhook POSTs to record-review-reply):");
    play_replies(
        stack,
        env,
        &[
            ("+33620000000", "5 parfait, merci"),
            ("+33620000001", "1 - arrivé froid"),
        ],
    )
    .await?;
    println!(
        "reviews in the table: {}",
        count_items(&stack.client, &stack.tables.reviews).await?
    );
    Ok(())
}

/// Today's figures as the owner will read them tomorrow morning: the daily-report job in a
/// dry run as of tomorrow, printed as its e-mail.
async fn demo_report(counters: DailyCounters, env: &HashMap<String, String>) -> Result<(), Failure> {
    let config = ReportConfig::from_env(env)?;
    let deps = ReportDeps {
        counters,
        sender: OwnerChannels {
            sns: None,
            whatsapp: None,
        },
        clock: Arc::new(SystemClock),
        config,
        channel_time: daily_report::DEFAULT_CHANNEL_TIME,
    };
    let tomorrow = Utc::now() + chrono::TimeDelta::days(1);
    let payload = serde_json::json!({"now": tomorrow.to_rfc3339(), "dryRun": true});
    let preview = daily_report::run(&deps, &payload).await?;
    println!(
        "
the owner's report of the day (daily-report, as it will e-mail it tomorrow morning):"
    );
    for line in preview.report.render(deps.config.locale, &deps.config.currency).lines() {
        println!("  {line}");
    }
    Ok(())
}

async fn serve(args: &[String]) -> Result<(), Failure> {
    let host: IpAddr = flag(args, "--host")
        .map(|h| h.parse())
        .transpose()?
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let port: u16 = flag(args, "--port").map(|p| p.parse()).transpose()?.unwrap_or(8000);
    let prefix = flag(args, "--prefix").unwrap_or_else(|| "shop".into());
    let stack = Stack::embedded_at(&prefix, SocketAddr::new(host, port)).await?;
    let twilio = TwilioStandIn::start_at(host, Duration::ZERO).await?;
    let now = Utc::now();
    if let Some(count) = flag(args, "--seed-carts") {
        let count: usize = count.parse()?;
        let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
        seed_carts(&carts, now, count, count / 2).await?;
        seed_malformed_carts(&stack.client, &stack.tables.carts).await?;
    }
    if let Some(count) = flag(args, "--seed-orders") {
        let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
        seed_demo_orders(&stack.client, &orders, &stack.tables.reviews, now, count.parse()?).await?;
    }
    println!(
        "AWS_ENDPOINT_URL_DYNAMODB={}",
        stack.endpoint.as_deref().unwrap_or_default()
    );
    // In name order, so that the printed environment reads the same every time.
    let mut env: Vec<(String, String)> = function_env(&stack, &twilio).into_iter().collect();
    env.sort();
    for (name, value) in env {
        println!("{name}={value}");
    }
    println!("ready");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn webhook_event(args: &[String]) -> Result<(), Failure> {
    let required = |name: &str| flag(args, name).ok_or_else(|| format!("{name} is required"));
    let from = PhoneNumber::parse(&required("--from")?)?;
    let params = reply_params(from.as_str(), &required("--sid")?, &required("--body")?);
    let validator = SignatureValidator::new(AuthToken::new(LOCAL_AUTH_TOKEN));
    let url = required("--url")?;
    let event = signed_twilio_post(&validator, &url, &params).ok_or("--url must be an absolute URL")?;
    println!("{}", serde_json::to_string_pretty(&event)?);
    Ok(())
}

async fn count(args: &[String]) -> Result<(), Failure> {
    let endpoint = flag(args, "--endpoint").ok_or("--endpoint URL is required")?;
    let table = flag(args, "--table").ok_or("--table NAME is required")?;
    println!("{}", count_items(&client_for(Some(&endpoint)).await, &table).await?);
    Ok(())
}

/// The Lambda event of `--table`'s stream records (from the start), only those whose key
/// is `--key` if given: what the event source mapping would hand derive-schedule.
async fn stream_event(args: &[String]) -> Result<(), Failure> {
    let endpoint = flag(args, "--endpoint").ok_or("--endpoint URL is required")?;
    let table = flag(args, "--table").ok_or("--table NAME is required")?;
    let key = flag(args, "--key");
    let client = client_for(Some(&endpoint)).await;
    let records: Vec<serde_json::Value> = stream_records(&client, Some(&endpoint), &table)
        .await?
        .into_iter()
        .filter(|record| {
            key.as_ref().is_none_or(|key| {
                record["dynamodb"]["Keys"]
                    .as_object()
                    .is_some_and(|keys| keys.values().any(|value| value["S"].as_str() == Some(key.as_str())))
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "Records": records }))?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("demo") | None => demo().await,
        Some("serve") => serve(&args).await,
        Some("count") => count(&args).await,
        Some("webhook-event") => webhook_event(&args),
        Some("stream-event") => stream_event(&args).await,
        Some(other) => {
            Err(format!("unknown command {other:?}: use demo, serve, count, webhook-event or stream-event").into())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devstack: {error}");
            ExitCode::FAILURE
        }
    }
}
