//! `bench`: the benchmark behind `make bench` (see docs/benchmarks.md).
//!
//! - `bench run [options]`: starts dynoxide over HTTP in this process, seeds the data sets,
//!   runs every measurement (the sweeps and the ceiling in child processes, so their memory
//!   is their own), writes the results (bench/results.json) and prints their table.
//! - `bench sweep-only --table T`: one sweep as the function runs it, against the
//!   endpoint in `AWS_ENDPOINT_URL_DYNAMODB`; prints one JSON line (counts, rate, peak RSS).
//! - `bench ceiling --table T --prefix P --start S --count N --concurrency C`: the
//!   emulator's raw delete rate: N concurrent plain `DeleteItem` calls on known keys.
//! - `bench table [--results PATH]`: the Markdown table of a results file (default
//!   bench/results.json), as docs/benchmarks.md shows it.
//!
//! The options and their defaults: [`cli`]. The binary's modules: [`run`] (the whole
//! benchmark), [`sweep`], [`reviews`], [`lifecycle`], [`functions`] (init, invocations and the webhook
//! flood, on the Lambda Runtime API stand-in of [`runtime_api`]); the typed results and
//! their table are the library's ([`bench::results`]).

mod cli;
mod closing;
mod functions;
mod lifecycle;
mod reviews;
mod run;
mod runtime_api;
mod sweep;

use std::path::Path;
use std::process::ExitCode;

use bench::Failure;
use bench::results::{Results, results_table};

use crate::cli::Command;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{}", error.to_string().trim_end());
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let outcome = runtime.block_on(async {
        match command {
            Command::Run(options) => run::run_all(&options).await,
            Command::SweepOnly { table, batch_size } => sweep::sweep_only(&table, batch_size).await,
            Command::NaiveSweep { table } => sweep::naive_sweep(&table).await,
            Command::Ceiling(options) => sweep::ceiling(&options).await,
            Command::Table { results } => table(&results),
            Command::Help => {
                print!("{}", cli::USAGE);
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `bench table`: the table of a results file.
fn table(path: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let results: Results = serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    print!("{}", results_table(&results));
    Ok(())
}
