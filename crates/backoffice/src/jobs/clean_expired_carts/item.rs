//! Reading the expiry index's entries. This is the one place that knows how an index
//! entry maps to a Rust type, and the reasons an entry can be unusable.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;

/// Epoch seconds below this (2001-09-09) are not a cart's expiry: most likely a writer
/// stored a duration or a day count. DynamoDB TTL also ignores such old values.
const EARLIEST_PLAUSIBLE_EXPIRY: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCart {
    pub cart_id: String,
    pub expires_at: i64,
}

/// An index entry the sweeper skips, with the key to find it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedCart {
    /// The cart id, or `<missing cartId>` when even that is unreadable.
    pub key: String,
    pub reason: MalformedReason,
}

#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum MalformedReason {
    MissingAttribute(&'static str),
    WrongType {
        attribute: &'static str,
        found: &'static str,
    },
    #[strum(serialize = "expiry_not_whole_seconds")]
    NotWholeSeconds(String),
    #[strum(serialize = "expiry_implausible")]
    ImplausibleExpiry(i64),
}

impl MalformedReason {
    /// A short label for counting reasons in results and metrics.
    pub fn label(&self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingAttribute(attribute) => write!(f, "{attribute} is missing"),
            Self::WrongType { attribute, found } => {
                write!(f, "{attribute} is of type {found}, expected the contract's type")
            }
            Self::NotWholeSeconds(raw) => write!(f, "expiresAt {raw:?} is not a whole number of epoch seconds"),
            Self::ImplausibleExpiry(value) => {
                write!(f, "expiresAt {value} is before 2001: not Unix epoch seconds")
            }
        }
    }
}

fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

/// Reads one `expiry-index` entry (keys only: `cartId`, `expiryShard`, `expiresAt`).
pub fn decode_expiry_entry(item: &HashMap<String, AttributeValue>) -> Result<ExpiredCart, MalformedCart> {
    let cart_id = match item.get("cartId") {
        Some(AttributeValue::S(id)) => id.clone(),
        Some(other) => {
            return Err(MalformedCart {
                key: "<unreadable cartId>".into(),
                reason: MalformedReason::WrongType {
                    attribute: "cartId",
                    found: type_name(other),
                },
            });
        }
        None => {
            return Err(MalformedCart {
                key: "<missing cartId>".into(),
                reason: MalformedReason::MissingAttribute("cartId"),
            });
        }
    };
    let malformed = |reason| MalformedCart {
        key: cart_id.clone(),
        reason,
    };
    let raw = match item.get("expiresAt") {
        Some(AttributeValue::N(raw)) => raw,
        Some(other) => {
            return Err(malformed(MalformedReason::WrongType {
                attribute: "expiresAt",
                found: type_name(other),
            }));
        }
        None => return Err(malformed(MalformedReason::MissingAttribute("expiresAt"))),
    };
    let expires_at: i64 = raw
        .parse()
        .map_err(|_| malformed(MalformedReason::NotWholeSeconds(raw.clone())))?;
    if expires_at < EARLIEST_PLAUSIBLE_EXPIRY {
        return Err(malformed(MalformedReason::ImplausibleExpiry(expires_at)));
    }
    Ok(ExpiredCart { cart_id, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn reads_a_well_formed_entry() {
        let item = entry(&[
            ("cartId", AttributeValue::S("c-1".into())),
            ("expiresAt", AttributeValue::N("1764000000".into())),
        ]);
        assert_eq!(
            decode_expiry_entry(&item),
            Ok(ExpiredCart {
                cart_id: "c-1".into(),
                expires_at: 1_764_000_000
            })
        );
    }

    #[test]
    fn names_the_key_and_the_reason_of_a_bad_entry() {
        let cases = [
            (
                entry(&[("cartId", AttributeValue::S("c-2".into()))]),
                MalformedReason::MissingAttribute("expiresAt"),
            ),
            (
                entry(&[
                    ("cartId", AttributeValue::S("c-2".into())),
                    ("expiresAt", AttributeValue::S("soon".into())),
                ]),
                MalformedReason::WrongType {
                    attribute: "expiresAt",
                    found: "S",
                },
            ),
            (
                entry(&[
                    ("cartId", AttributeValue::S("c-2".into())),
                    ("expiresAt", AttributeValue::N("1764000000.5".into())),
                ]),
                MalformedReason::NotWholeSeconds("1764000000.5".into()),
            ),
            (
                entry(&[
                    ("cartId", AttributeValue::S("c-2".into())),
                    ("expiresAt", AttributeValue::N("86400".into())),
                ]),
                MalformedReason::ImplausibleExpiry(86_400),
            ),
        ];
        for (item, reason) in cases {
            assert_eq!(
                decode_expiry_entry(&item),
                Err(MalformedCart {
                    key: "c-2".into(),
                    reason
                })
            );
        }
        let no_key = decode_expiry_entry(&entry(&[("expiresAt", AttributeValue::N("1764000000".into()))])).unwrap_err();
        assert_eq!(no_key.reason, MalformedReason::MissingAttribute("cartId"));
    }
}
