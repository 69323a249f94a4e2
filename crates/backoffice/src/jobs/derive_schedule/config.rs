//! `derive-schedule`'s settings.

use crate::messages::kind::KindsConfig;
use crate::messages::quiet::QuietHours;
use crate::runtime::config::{ConfigError, EnvSource, required_var, shop_timezone};

#[derive(Debug, Clone, PartialEq)]
pub struct DeriveConfig {
    pub carts_table: String,
    pub orders_table: String,
    /// Where the messages the changes schedule wait.
    pub messages_table: String,
    /// What each kind of message needs, to schedule it.
    pub kinds: KindsConfig,
    /// A message due in them is scheduled for the next opening.
    pub quiet: QuietHours,
}

impl DeriveConfig {
    /// `CARTS_TABLE`, `ORDERS_TABLE` (required): the tables whose streams this function
    /// reads and writes; `MESSAGES_TABLE` (required): where it schedules messages; every
    /// kind's settings ([`KindsConfig::from_env`]).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            carts_table: required_var(env, "CARTS_TABLE")?,
            orders_table: required_var(env, "ORDERS_TABLE")?,
            messages_table: required_var(env, "MESSAGES_TABLE")?,
            kinds: KindsConfig::from_env(env)?,
            quiet: QuietHours::from_env(env, shop_timezone(env)?)?,
        })
    }

    /// Which of the two tables a stream record comes from, by its event source ARN
    /// (`arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>`).
    pub fn table_of(&self, event_source_arn: &str) -> Option<SourceTable> {
        let name = event_source_arn.split_once(":table/")?.1.split('/').next()?;
        if name == self.carts_table {
            Some(SourceTable::Carts)
        } else if name == self.orders_table {
            Some(SourceTable::Orders)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceTable {
    Carts,
    Orders,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{ConfigError, env_of};

    #[test]
    fn records_are_told_apart_by_their_table() {
        let config = DeriveConfig::from_env(&env_of(&[
            ("CARTS_TABLE", "shop-carts"),
            ("ORDERS_TABLE", "shop-orders"),
            ("MESSAGES_TABLE", "shop-messages"),
        ]))
        .unwrap();
        let arn = |table: &str| {
            format!("arn:aws:dynamodb:eu-west-3:123456789012:table/{table}/stream/2026-11-29T10:00:00.000")
        };
        assert_eq!(config.table_of(&arn("shop-carts")), Some(SourceTable::Carts));
        assert_eq!(config.table_of(&arn("shop-orders")), Some(SourceTable::Orders));
        assert_eq!(config.table_of(&arn("shop-orders-archive")), None);
        assert_eq!(config.table_of("garbage"), None);
        assert_eq!(
            DeriveConfig::from_env(&env_of(&[("CARTS_TABLE", "c")])),
            Err(ConfigError::Missing("ORDERS_TABLE"))
        );
    }
}
