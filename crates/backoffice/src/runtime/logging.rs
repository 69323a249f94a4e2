//! The functions' log subscriber, installed once at cold start by each `main.rs`.
//!
//! It behaves like `lambda_runtime::tracing::init_default_subscriber` (lambda_runtime_api_client
//! 1.1), which it replaces: lines go to stdout, without the target and without a timestamp
//! (Lambda stamps each line); one JSON object per line when Lambda's advanced logging
//! controls ask for JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`, the template's `LogFormat: JSON`),
//! tracing's text format otherwise. A JSON line is `{"level":"INFO","fields":{"message":…,
//! …}}`, plus `span`/`spans` inside a span: the Logs Insights queries in template.yaml read
//! `fields.*`.
//!
//! The level is a single [`LevelFilter`], see [`LogSettings::from_env`]. It applies to
//! this project's own code, which masks phone numbers and never logs a secret. Every
//! other crate (the AWS SDK, hyper, rustls, reqwest, the runtime) is capped at
//! [`DEPENDENCY_LEVEL_CAP`] whatever the level: at `DEBUG` and `TRACE` the SDK prints
//! whole requests and responses, phone numbers included.

use tracing::Dispatch;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::runtime::config::{EnvSource, ProcessEnv};

/// The line format Lambda's log controls ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// tracing's human-readable format.
    Text,
}

/// What the subscriber is built from, decided from the environment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: LevelFilter,
}

impl LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT`: `JSON` in any case gives [`LogFormat::Json`]; `Text`, any
    /// other value or none gives [`LogFormat::Text`].
    ///
    /// The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda from the template's
    /// `ApplicationLogLevel`), else `RUST_LOG`, else `INFO`. The first of the two that is set
    /// (and not blank) is parsed as one level: `trace`, `debug`, `info`, `warn`, `error` or
    /// `off`, in any case, or `0`-`5`; Lambda's `FATAL` gives `ERROR`, the nearest level
    /// tracing has (the subscriber this replaces gave `INFO`, more than was asked for). Any
    /// other value gives `INFO`.
    ///
    /// Per-target `RUST_LOG` directives (`backoffice=debug,hyper=warn`) are not supported:
    /// such a value is not a level and gives `INFO`. Parsing them needs tracing-subscriber's
    /// `env-filter`, which brings a regex engine (regex-automata, regex-syntax,
    /// aho-corasick, matchers) into every bootstrap, for a filter built once per cold start.
    pub fn from_env(env: &impl EnvSource) -> Self {
        let set = |name| {
            env.var(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let format = match set("AWS_LAMBDA_LOG_FORMAT") {
            Some(format) if format.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let level = set("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| set("RUST_LOG"))
            .and_then(|level| {
                if level.eq_ignore_ascii_case("fatal") {
                    Some(LevelFilter::ERROR)
                } else {
                    level.parse().ok()
                }
            })
            .unwrap_or(LevelFilter::INFO);
        Self { format, level }
    }
}

/// Installs the subscriber for the whole process, from the process environment.
///
/// # Panics
///
/// If a global subscriber is already installed: call it once, first thing in `main`.
pub fn init() {
    let dispatch = subscriber(LogSettings::from_env(&ProcessEnv), std::io::stdout);
    tracing::dispatcher::set_global_default(dispatch)
        .expect("init() is called once, before any other subscriber is installed");
}

/// The crates whose events follow the selected level.
const OWN_TARGETS: &[&str] = &[
    "backoffice",
    "clean_expired_carts",
    "request_reviews",
    "record_review_reply",
];

/// The most any other crate may log.
pub const DEPENDENCY_LEVEL_CAP: LevelFilter = LevelFilter::WARN;

fn targets(level: LevelFilter) -> Targets {
    OWN_TARGETS.iter().fold(
        Targets::new().with_default(level.min(DEPENDENCY_LEVEL_CAP)),
        |targets, own| targets.with_target(*own, level),
    )
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(settings: LogSettings, writer: W) -> Dispatch
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_target(false)
        .without_time()
        // Already off (the "ansi" feature is not enabled); stays off should a crate
        // enable it, as escape codes would reach CloudWatch as text.
        .with_ansi(false)
        .with_max_level(settings.level);
    let targets = targets(settings.level);
    match settings.format {
        LogFormat::Json => Dispatch::new(builder.json().finish().with(targets)),
        LogFormat::Text => Dispatch::new(builder.finish().with(targets)),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;
    use crate::runtime::config::env_of as env;

    fn level(pairs: &[(&str, &str)]) -> LevelFilter {
        LogSettings::from_env(&env(pairs)).level
    }

    fn format(pairs: &[(&str, &str)]) -> LogFormat {
        LogSettings::from_env(&env(pairs)).format
    }

    #[test]
    fn aws_lambda_log_level_wins_over_rust_log() {
        let pairs = [("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "trace")];
        assert_eq!(level(&pairs), LevelFilter::WARN);
    }

    #[test]
    fn rust_log_is_read_when_aws_lambda_log_level_is_unset_or_blank() {
        assert_eq!(level(&[("RUST_LOG", "error")]), LevelFilter::ERROR);
        let blank = [("AWS_LAMBDA_LOG_LEVEL", " "), ("RUST_LOG", "error")];
        assert_eq!(level(&blank), LevelFilter::ERROR);
    }

    #[test]
    fn level_defaults_to_info() {
        assert_eq!(level(&[]), LevelFilter::INFO);
        assert_eq!(
            level(&[("AWS_LAMBDA_LOG_LEVEL", ""), ("RUST_LOG", "")]),
            LevelFilter::INFO
        );
    }

    #[test]
    fn level_is_read_in_any_case() {
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "debug")]), LevelFilter::DEBUG);
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]), LevelFilter::DEBUG);
        assert_eq!(level(&[("RUST_LOG", "Trace")]), LevelFilter::TRACE);
        assert_eq!(level(&[("RUST_LOG", "off")]), LevelFilter::OFF);
    }

    #[test]
    fn lambdas_fatal_level_keeps_errors_only() {
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]), LevelFilter::ERROR);
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "fatal")]), LevelFilter::ERROR);
    }

    #[test]
    fn an_unparsable_level_falls_back_to_info() {
        for value in ["verbose", "backoffice=debug", "info,hyper=warn", "9"] {
            assert_eq!(level(&[("RUST_LOG", value)]), LevelFilter::INFO, "{value}");
        }
        // The variable that wins is the one parsed: a bad AWS_LAMBDA_LOG_LEVEL does not
        // fall through to RUST_LOG.
        let pairs = [("AWS_LAMBDA_LOG_LEVEL", "loud"), ("RUST_LOG", "error")];
        assert_eq!(level(&pairs), LevelFilter::INFO);
    }

    #[test]
    fn json_format_is_case_insensitive() {
        for value in ["JSON", "json", "Json"] {
            assert_eq!(format(&[("AWS_LAMBDA_LOG_FORMAT", value)]), LogFormat::Json, "{value}");
        }
    }

    #[test]
    fn text_format_when_text_absent_or_unknown() {
        assert_eq!(format(&[("AWS_LAMBDA_LOG_FORMAT", "TEXT")]), LogFormat::Text);
        assert_eq!(format(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]), LogFormat::Text);
        assert_eq!(format(&[("AWS_LAMBDA_LOG_FORMAT", "yaml")]), LogFormat::Text);
        assert_eq!(format(&[]), LogFormat::Text);
    }

    /// A `MakeWriter` that keeps what is written.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap().lines().map(str::to_owned).collect()
        }
    }

    /// What the subscriber built from `settings` writes while `log` runs.
    fn output(settings: LogSettings, log: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let dispatch = subscriber(settings, move || writer.clone());
        tracing::dispatcher::with_default(&dispatch, log);
        captured.lines()
    }

    #[test]
    fn a_json_line_has_the_level_and_the_fields_only() {
        let settings = LogSettings {
            format: LogFormat::Json,
            level: LevelFilter::INFO,
        };
        let lines = output(settings, || {
            tracing::info!(deleted = 20, to = "+33******00", "run summary");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        // No "timestamp" (Lambda adds its own), no "target", no colour codes.
        assert_eq!(
            line,
            json!({
                "level": "INFO",
                "fields": {"message": "run summary", "deleted": 20, "to": "+33******00"},
            })
        );
    }

    #[test]
    fn a_json_line_inside_a_span_names_it() {
        let settings = LogSettings {
            format: LogFormat::Json,
            level: LevelFilter::INFO,
        };
        let lines = output(settings, || {
            let _run = tracing::info_span!("run", job = "clean-expired-carts").entered();
            tracing::info!("started");
        });
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["fields"], json!({"message": "started"}));
        assert_eq!(line["span"], json!({"name": "run", "job": "clean-expired-carts"}));
        assert_eq!(line["spans"], json!([{"name": "run", "job": "clean-expired-carts"}]));
    }

    #[test]
    fn a_text_line_has_the_level_message_and_fields_without_time_or_target() {
        let settings = LogSettings {
            format: LogFormat::Text,
            level: LevelFilter::INFO,
        };
        let lines = output(settings, || tracing::warn!(failed = 2, "run summary"));
        assert_eq!(lines, [" WARN run summary failed=2"]);
    }

    #[test]
    fn events_below_the_level_are_not_written() {
        let settings = LogSettings {
            format: LogFormat::Json,
            level: LevelFilter::WARN,
        };
        let lines = output(settings, || {
            tracing::debug!("debug");
            tracing::info!("info");
            tracing::warn!("warn");
            tracing::error!("error");
        });
        let levels: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["level"].clone())
            .collect();
        assert_eq!(levels, [json!("WARN"), json!("ERROR")]);
    }

    #[test]
    fn other_crates_never_log_below_warn_even_at_trace() {
        let settings = LogSettings {
            format: LogFormat::Json,
            level: LevelFilter::TRACE,
        };
        let lines = output(settings, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "response body +33612345678");
            tracing::debug!(target: "aws_sdk_dynamodb", "response +33612345678");
            tracing::info!(target: "hyper_util::client", "connected");
            tracing::warn!(target: "aws_config", "no region");
            tracing::trace!(target: "backoffice::jobs::clean_expired_carts", "own trace");
            tracing::debug!("own debug");
        });
        let messages: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["fields"]["message"].clone())
            .collect();
        assert_eq!(messages, [json!("no region"), json!("own trace"), json!("own debug")]);
    }
}
