//! Typed settings read from the environment once at cold start. Every bad value is
//! refused by name, so a typo in template.yaml fails the first invocation loudly.

use std::collections::HashMap;
use std::str::FromStr;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Where settings come from: the process environment in Lambda, a map in tests.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.trim().is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

pub fn required_var(env: &impl EnvSource, name: &'static str) -> Result<String, ConfigError> {
    env.var(name).ok_or(ConfigError::Missing(name))
}

/// An optional variable parsed with `FromStr`; absent means `None`.
pub fn parse_var<T>(env: &impl EnvSource, name: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    env.var(name)
        .map(|value| {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
                value,
            })
        })
        .transpose()
}

/// An optional variable that must lie in `range`; absent means `default`.
pub fn parse_in_range<T>(
    env: &impl EnvSource,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    match parse_var(env, name)? {
        None => Ok(default),
        Some(value) if range.contains(&value) => Ok(value),
        Some(value) => Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be between {} and {}", range.start(), range.end()),
        }),
    }
}

/// What kind of JSON value this is, never the value itself.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An environment of the given pairs: for tests and tools that build a function's
/// settings without touching the process environment.
pub fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `SHOP_TIMEZONE` (Europe/Paris): the IANA zone of the shop's calendar.
pub fn shop_timezone(env: &impl EnvSource) -> Result<jiff::tz::TimeZone, ConfigError> {
    let name = env
        .var("SHOP_TIMEZONE")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "Europe/Paris".into());
    jiff::tz::db().get(&name).map_err(|_| ConfigError::Invalid {
        name: "SHOP_TIMEZONE",
        value: name.clone(),
        reason: "not an IANA time zone name such as Europe/Paris".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use env_of as env;

    #[test]
    fn names_the_variable_that_is_wrong() {
        let env = env(&[("PAGE_SIZE", "lots")]);
        let err = parse_var::<u32>(&env, "PAGE_SIZE").unwrap_err();
        assert!(err.to_string().contains("PAGE_SIZE=\"lots\""), "{err}");
        assert_eq!(
            required_var(&env, "CARTS_TABLE"),
            Err(ConfigError::Missing("CARTS_TABLE"))
        );
        assert_eq!(parse_var::<u32>(&env, "ABSENT"), Ok(None));
    }

    #[test]
    fn a_bounded_variable_outside_its_range_is_refused_by_name() {
        let env = env(&[("DAYS", "9999999"), ("FEW", "3")]);
        let err = parse_in_range::<u32>(&env, "DAYS", 1..=3650, 30).unwrap_err();
        assert!(
            err.to_string().contains("DAYS=\"9999999\"") && err.to_string().contains("between 1 and 3650"),
            "{err}"
        );
        assert_eq!(parse_in_range::<u32>(&env, "FEW", 1..=3650, 30), Ok(3));
        assert_eq!(parse_in_range::<u32>(&env, "ABSENT", 1..=3650, 30), Ok(30));
    }
}
