//! `devstack`: the local stack from one command.
//!
//! - `devstack demo`: embedded DynamoDB, tables from template.yaml, seed data, run the
//!   jobs, print their results.
//! - `devstack serve [--port 8000] [--prefix shop] [--seed-carts N]`: the same stack as a
//!   server for `cargo lambda watch` and the AWS CLI; prints the environment to use.
//! - `devstack count --endpoint URL --table NAME`: items in a table.

use std::process::ExitCode;
use std::sync::Arc;

use backoffice::carts::dynamo::DynamoCarts;
use backoffice::clock::SystemClock;
use backoffice::job::Deadline;
use backoffice::sweeper::{self, SweeperConfig, SweeperDeps};
use chrono::Utc;
use devstack::seed::{count_items, seed_carts, seed_malformed_carts};
use devstack::stack::{Stack, client_for};

type Failure = Box<dyn std::error::Error>;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

async fn demo() -> Result<(), Failure> {
    let stack = Stack::embedded("shop", 0).await?;
    let now = Utc::now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    let seeded = seed_carts(&carts, now, 30, 15).await?;
    let malformed = seed_malformed_carts(&stack.client, &stack.tables.carts).await?;
    println!(
        "local DynamoDB (dynoxide) at {}; seeded {} expired, {} live and {} malformed carts",
        stack.endpoint.as_deref().unwrap_or_default(),
        seeded.expired.len(),
        seeded.live.len(),
        malformed.len()
    );

    let deps = SweeperDeps {
        store: carts,
        clock: Arc::new(SystemClock),
        config: SweeperConfig {
            carts_table: stack.tables.carts.clone(),
            page_size: 500,
            concurrency: 32,
            stop_margin: std::time::Duration::ZERO,
        },
    };
    let result = sweeper::run(&deps, &serde_json::json!({}), Deadline::unbounded()).await?;
    println!(
        "clean-expired-carts result:\n{}",
        serde_json::to_string_pretty(&result)?
    );
    println!(
        "carts left in the table: {}",
        count_items(&stack.client, &stack.tables.carts).await?
    );
    Ok(())
}

async fn serve(args: &[String]) -> Result<(), Failure> {
    let port: u16 = flag(args, "--port").map(|p| p.parse()).transpose()?.unwrap_or(8000);
    let prefix = flag(args, "--prefix").unwrap_or_else(|| "shop".into());
    let stack = Stack::embedded(&prefix, port).await?;
    if let Some(count) = flag(args, "--seed-carts") {
        let count: usize = count.parse()?;
        let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
        seed_carts(&carts, Utc::now(), count, count / 2).await?;
        seed_malformed_carts(&stack.client, &stack.tables.carts).await?;
    }
    println!(
        "AWS_ENDPOINT_URL_DYNAMODB={}",
        stack.endpoint.as_deref().unwrap_or_default()
    );
    for (name, table) in stack.tables.env_vars() {
        println!("{name}={table}");
    }
    println!("ready");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn count(args: &[String]) -> Result<(), Failure> {
    let endpoint = flag(args, "--endpoint").ok_or("--endpoint URL is required")?;
    let table = flag(args, "--table").ok_or("--table NAME is required")?;
    println!("{}", count_items(&client_for(Some(&endpoint)).await, &table).await?);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("demo") | None => demo().await,
        Some("serve") => serve(&args).await,
        Some("count") => count(&args).await,
        Some(other) => Err(format!("unknown command {other:?}: use demo, serve or count").into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devstack: {error}");
            ExitCode::FAILURE
        }
    }
}
