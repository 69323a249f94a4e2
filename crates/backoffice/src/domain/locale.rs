//! The language of every text the back office itself writes to a customer (the webhook's
//! answers, the plain-text fallbacks); approved templates carry their own language.

use crate::runtime::config::{ConfigError, EnvSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    Fr,
    En,
}

impl Locale {
    /// `SHOP_LOCALE`: `fr` (default) or `en`; a region (`fr-FR`, `en_GB`) is accepted.
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let Some(value) = env.var("SHOP_LOCALE").filter(|v| !v.trim().is_empty()) else {
            return Ok(Self::default());
        };
        let language = value.trim().to_ascii_lowercase();
        match language.split(['-', '_']).next() {
            Some("fr") => Ok(Self::Fr),
            Some("en") => Ok(Self::En),
            _ => Err(ConfigError::Invalid {
                name: "SHOP_LOCALE",
                value,
                reason: "must be fr or en".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::env_of;

    #[test]
    fn the_shop_s_language_defaults_to_french_and_refuses_others_by_name() {
        assert_eq!(Locale::from_env(&env_of(&[])), Ok(Locale::Fr));
        assert_eq!(Locale::from_env(&env_of(&[("SHOP_LOCALE", "en-GB")])), Ok(Locale::En));
        let error = Locale::from_env(&env_of(&[("SHOP_LOCALE", "de")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("SHOP_LOCALE"), "{error}");
    }
}
