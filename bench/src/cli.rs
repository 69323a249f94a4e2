//! The command line. Parsed with lexopt: no dependencies and no derive macros, so a cold
//! `make bench`, which has a build-time budget, pays nothing for it (clap's derive would
//! compile syn and proc-macro2 first). An unknown option, a missing or malformed value or a
//! stray argument is an error that names it; an option given twice keeps its last value,
//! except `--function` and `--bootstrap`, which add one function each.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bench::Failure;
use lexopt::{Arg, Parser};

pub const USAGE: &str = "\
usage:
  bench run [--carts N] [--expired-pct P] [--scale K] [--large-carts N] [--orders N] [--mps N]
            [--lifecycle-orders N] [--reconcile-parked N] [--report-events N]
            [--naive-carts N]
            [--init-starts N] [--ceiling-keys N] [--function NAME=PATH]... [--bootstrap NAME=PATH]...
            [--bootstrap-target T] [--opt-level L] [--host-profile P] [--emulator E] [--build-s S]
            [--out FILE]
  bench sweep-only --table T [--batch-size N]
  bench naive-sweep --table T
  bench ceiling --table T --prefix P [--start S] [--count N] [--concurrency C] [--shape S]
  bench table [--results PATH]
";

pub enum Command {
    Run(Box<RunOptions>),
    SweepOnly { table: String, batch_size: Option<usize> },
    NaiveSweep { table: String },
    Ceiling(CeilingOptions),
    Table { results: PathBuf },
    Help,
}

/// `bench run`: every measurement, the results written to `out`.
#[derive(Debug)]
pub struct RunOptions {
    /// Carts in each swept table.
    pub carts: usize,
    /// The share of them that is expired, in %.
    pub expired_pct: usize,
    /// How many times more expired carts the second sweep has.
    pub scale: usize,
    /// Carts in the optional larger table (0: no such sweep).
    pub large_carts: usize,
    /// Orders due for a review request.
    pub orders: usize,
    /// The review job's and the dispatcher's message rate.
    pub mps: u32,
    /// Orders created at the start of the lifecycle bench (twice as many 12 hours later,
    /// half as many carts).
    pub lifecycle_orders: usize,
    /// Carts of the tables where the job and a naive sweep are compared.
    pub naive_carts: usize,
    /// Messages parked as unknown for the reconciliation bench.
    pub reconcile_parked: usize,
    /// Order events of the report bench's large day (a tenth for the small one).
    pub report_events: usize,
    /// Cold starts timed per function.
    pub init_starts: usize,
    /// Keys deleted at each concurrency of the emulator's ceiling.
    pub ceiling_keys: usize,
    pub out: PathBuf,
    /// Host binaries to start on the Runtime API stand-in, by function.
    pub functions: BTreeMap<String, PathBuf>,
    /// Deployed bootstraps whose sizes are reported, by function.
    pub bootstraps: BTreeMap<String, PathBuf>,
    /// Recorded as given, for the results.
    pub bootstrap_target: String,
    pub opt_level: Option<String>,
    pub host_profile: Option<String>,
    pub emulator: Option<String>,
    pub build_s: Option<f64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            carts: 200_000,
            expired_pct: 10,
            scale: 5,
            large_carts: 0,
            orders: 2_000,
            mps: 80,
            lifecycle_orders: 600,
            naive_carts: 100_000,
            reconcile_parked: 200,
            report_events: 2_000,
            init_starts: 20,
            ceiling_keys: 10_000,
            out: PathBuf::from("bench/results.json"),
            functions: BTreeMap::new(),
            bootstraps: BTreeMap::new(),
            bootstrap_target: "aarch64-unknown-linux-gnu".into(),
            opt_level: None,
            host_profile: None,
            emulator: None,
            build_s: None,
        }
    }
}

/// `bench ceiling`: `count` deletes of the live keys `start..start + count`, in requests
/// of the given shape.
#[derive(Debug)]
pub struct CeilingOptions {
    pub table: String,
    pub prefix: String,
    pub start: usize,
    pub count: usize,
    pub concurrency: usize,
    pub shape: DeleteShape,
}

/// How a ceiling run deletes its keys: the request shapes a sweep could use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteShape {
    /// One unconditional `DeleteItem` a key.
    DeleteItem,
    /// 25 unconditional deletes a `BatchWriteItem` (the naive sweep's shape).
    BatchWrite,
    /// 25 conditional PartiQL deletes a `BatchExecuteStatement` (the job's shape).
    PartiqlBatch,
    /// 100 conditional deletes a `TransactWriteItems`.
    Transaction,
}

impl DeleteShape {
    pub const ALL: [DeleteShape; 4] = [
        DeleteShape::DeleteItem,
        DeleteShape::BatchWrite,
        DeleteShape::PartiqlBatch,
        DeleteShape::Transaction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DeleteShape::DeleteItem => "delete-item",
            DeleteShape::BatchWrite => "batch-write",
            DeleteShape::PartiqlBatch => "partiql-batch",
            DeleteShape::Transaction => "transaction",
        }
    }

    /// Keys deleted by one request.
    pub fn keys_per_request(self) -> usize {
        match self {
            DeleteShape::DeleteItem => 1,
            DeleteShape::BatchWrite | DeleteShape::PartiqlBatch => 25,
            DeleteShape::Transaction => 100,
        }
    }
}

impl FromStr for DeleteShape {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|shape| shape.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|shape| shape.name()).collect();
            format!("--shape: {name:?} is none of {}", known.join(", "))
        })
    }
}

/// The command the arguments (without the program's name) ask for. Errors start with
/// `bench` and the command, ready to print.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Failure> {
    let mut parser = Parser::from_args(args);
    let command = match parser.next().map_err(|error| format!("bench: {error}"))? {
        Some(Arg::Value(command)) => command,
        Some(Arg::Long("help") | Arg::Short('h')) => return Ok(Command::Help),
        None => return Err(format!("bench: no command\n{USAGE}").into()),
        Some(other) => return Err(format!("bench: {} before the command\n{USAGE}", other.unexpected()).into()),
    };
    let command = command.to_string_lossy();
    match command.as_ref() {
        "run" => run_options(&mut parser).map(|options| Command::Run(Box::new(options))),
        "sweep-only" => {
            let mut table = None;
            let mut batch_size = None;
            options(&mut parser, "sweep-only", |name, parser| {
                match name {
                    "table" => table = Some(text(parser, name)?),
                    "batch-size" => batch_size = Some(number(parser, name)?),
                    _ => return Err(unknown(name)),
                }
                Ok(())
            })?;
            Ok(Command::SweepOnly {
                table: required(table, "sweep-only", "table")?,
                batch_size,
            })
        }
        "naive-sweep" => {
            let mut table = None;
            options(&mut parser, "naive-sweep", |name, parser| {
                match name {
                    "table" => table = Some(text(parser, name)?),
                    _ => return Err(unknown(name)),
                }
                Ok(())
            })?;
            Ok(Command::NaiveSweep {
                table: required(table, "naive-sweep", "table")?,
            })
        }
        "ceiling" => ceiling_options(&mut parser).map(Command::Ceiling),
        "table" => {
            let mut results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json");
            options(&mut parser, "table", |name, parser| {
                match name {
                    "results" => results = PathBuf::from(text(parser, name)?),
                    _ => return Err(unknown(name)),
                }
                Ok(())
            })?;
            Ok(Command::Table { results })
        }
        other => Err(format!("bench: unknown command {other:?}\n{USAGE}").into()),
    }
}

fn run_options(parser: &mut Parser) -> Result<RunOptions, Failure> {
    let mut o = RunOptions::default();
    options(parser, "run", |name, parser| {
        match name {
            "carts" => o.carts = number(parser, name)?,
            "expired-pct" => o.expired_pct = number(parser, name)?,
            "scale" => o.scale = number(parser, name)?,
            "large-carts" => o.large_carts = number(parser, name)?,
            "orders" => o.orders = number(parser, name)?,
            "lifecycle-orders" => o.lifecycle_orders = number(parser, name)?,
            "reconcile-parked" => o.reconcile_parked = number(parser, name)?,
            "naive-carts" => o.naive_carts = number(parser, name)?,
            "report-events" => o.report_events = number(parser, name)?,
            "mps" => o.mps = number(parser, name)?,
            "init-starts" => o.init_starts = number(parser, name)?,
            "ceiling-keys" => o.ceiling_keys = number(parser, name)?,
            "out" => o.out = PathBuf::from(text(parser, name)?),
            "function" => named_path(parser, name, &mut o.functions)?,
            "bootstrap" => named_path(parser, name, &mut o.bootstraps)?,
            "bootstrap-target" => o.bootstrap_target = text(parser, name)?,
            "opt-level" => o.opt_level = Some(text(parser, name)?),
            "host-profile" => o.host_profile = Some(text(parser, name)?),
            "emulator" => o.emulator = Some(text(parser, name)?),
            "build-s" => o.build_s = Some(number(parser, name)?),
            _ => return Err(unknown(name)),
        }
        Ok(())
    })?;
    Ok(o)
}

fn ceiling_options(parser: &mut Parser) -> Result<CeilingOptions, Failure> {
    let (mut table, mut prefix) = (None, None);
    let (mut start, mut count, mut concurrency) = (0, 10_000, 32);
    let mut shape = DeleteShape::DeleteItem;
    options(parser, "ceiling", |name, parser| {
        match name {
            "shape" => shape = text(parser, name)?.parse()?,
            "table" => table = Some(text(parser, name)?),
            "prefix" => prefix = Some(text(parser, name)?),
            "start" => start = number(parser, name)?,
            "count" => count = number(parser, name)?,
            "concurrency" => concurrency = number(parser, name)?,
            _ => return Err(unknown(name)),
        }
        Ok(())
    })?;
    Ok(CeilingOptions {
        table: required(table, "ceiling", "table")?,
        prefix: required(prefix, "ceiling", "prefix")?,
        start,
        count,
        concurrency,
        shape,
    })
}

/// Hands each `--name` of `command` to `option`, which takes its value from the parser.
fn options(
    parser: &mut Parser,
    command: &str,
    mut option: impl FnMut(&str, &mut Parser) -> Result<(), Failure>,
) -> Result<(), Failure> {
    while let Some(arg) = parser.next().map_err(|error| format!("bench {command}: {error}"))? {
        match arg {
            Arg::Long(name) => {
                let name = name.to_owned();
                option(&name, parser).map_err(|error| format!("bench {command}: {error}"))?;
            }
            Arg::Short(letter) => return Err(format!("bench {command}: unknown option -{letter}\n{USAGE}").into()),
            Arg::Value(value) => {
                return Err(format!(
                    "bench {command}: unexpected argument {}\n{USAGE}",
                    value.to_string_lossy()
                )
                .into());
            }
        }
    }
    Ok(())
}

fn unknown(name: &str) -> Failure {
    format!("unknown option --{name}\n{USAGE}").into()
}

fn required(value: Option<String>, command: &str, name: &str) -> Result<String, Failure> {
    value.ok_or_else(|| format!("bench {command}: --{name} is required").into())
}

fn text(parser: &mut Parser, name: &str) -> Result<String, Failure> {
    let value = parser.value().map_err(|_| format!("--{name} wants a value"))?;
    value
        .into_string()
        .map_err(|value| format!("--{name}: not valid UTF-8: {}", value.to_string_lossy()).into())
}

fn number<T: FromStr>(parser: &mut Parser, name: &str) -> Result<T, Failure> {
    let value = text(parser, name)?;
    value
        .parse()
        .map_err(|_| format!("--{name}: not a number: {value}").into())
}

/// `--function NAME=PATH`, `--bootstrap NAME=PATH`: the same NAME again replaces its path.
fn named_path(parser: &mut Parser, name: &str, paths: &mut BTreeMap<String, PathBuf>) -> Result<(), Failure> {
    let pair = text(parser, name)?;
    let (function, path) = pair
        .split_once('=')
        .ok_or_else(|| format!("--{name} wants NAME=PATH: {pair}"))?;
    paths.insert(function.to_string(), PathBuf::from(path));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &str) -> Result<Command, Failure> {
        parse(args.split_whitespace().map(OsString::from))
    }

    fn error(args: &str) -> String {
        match parse_args(args) {
            Ok(_) => panic!("{args}: accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn run_keeps_its_defaults_and_reads_every_option() {
        let Ok(Command::Run(defaults)) = parse_args("run") else {
            panic!("bench run")
        };
        assert_eq!(
            (defaults.carts, defaults.orders, defaults.init_starts),
            (200_000, 2_000, 20)
        );
        assert_eq!(defaults.out, PathBuf::from("bench/results.json"));
        assert_eq!(defaults.bootstrap_target, "aarch64-unknown-linux-gnu");
        let Ok(Command::Run(o)) = parse_args(
            "run --carts 2000 --orders=40 --function a=x --function b=y --bootstrap a=z --build-s 331 --opt-level s",
        ) else {
            panic!("bench run with options")
        };
        assert_eq!((o.carts, o.orders, o.build_s), (2000, 40, Some(331.0)));
        assert_eq!(o.functions.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(o.bootstraps["a"], PathBuf::from("z"));
        assert_eq!(o.opt_level.as_deref(), Some("s"));
    }

    #[test]
    fn the_other_commands_take_their_options() {
        let Ok(Command::Ceiling(c)) = parse_args("ceiling --table t --prefix a --start 10 --concurrency 64") else {
            panic!("bench ceiling")
        };
        assert_eq!((c.table.as_str(), c.prefix.as_str()), ("t", "a"));
        assert_eq!((c.start, c.count, c.concurrency), (10, 10_000, 64));
        assert_eq!(c.shape, DeleteShape::DeleteItem);
        let Ok(Command::Ceiling(c)) = parse_args("ceiling --table t --prefix a --shape transaction") else {
            panic!("bench ceiling --shape")
        };
        assert_eq!((c.shape, c.shape.keys_per_request()), (DeleteShape::Transaction, 100));
        assert!(matches!(parse_args("sweep-only --table t"), Ok(Command::SweepOnly { table, .. }) if table == "t"));
        assert!(
            matches!(parse_args("table --results r.json"), Ok(Command::Table { results }) if results == Path::new("r.json"))
        );
    }

    #[test]
    fn a_wrong_argument_is_named() {
        assert!(error("run --cartz 5").contains("unknown option --cartz"));
        assert!(error("run --carts many").contains("--carts: not a number: many"));
        assert!(error("run --build-s soon").contains("--build-s: not a number: soon"));
        assert!(error("run --function clean-expired-carts").contains("--function wants NAME=PATH"));
        assert!(error("run --carts").contains("--carts wants a value"));
        assert!(error("run extra").contains("unexpected argument extra"));
        assert!(error("ceiling --table t").contains("--prefix is required"));
        assert!(
            error("ceiling --table t --prefix a --shape scan").contains("--shape: \"scan\" is none of delete-item,")
        );
        assert!(error("sweep-only").contains("--table is required"));
        assert!(error("walk").contains("unknown command \"walk\""));
    }
}
