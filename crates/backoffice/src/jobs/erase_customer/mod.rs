//! `erase-customer`: the right to erasure. A manual invocation (`aws lambda invoke`) with
//! `{"phone": "+33612345678"}` removes the customer's personal data from every table: the
//! phone number and name on orders, carts and messages, the phone and free-text comments
//! on reviews, and the consent item. What stays is anonymous: orders, ratings, message
//! counts. Idempotent: a second run finds nothing left to erase. `"dryRun": true` counts.
//!
//! The tables have no index by phone for carts, reviews and messages, so each is read with
//! a `Scan` filtered on the number: acceptable for a rare manual request, never on a
//! schedule (docs/decisions/erasure.md).

mod dynamo;

use chrono::SecondsFormat;
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use dynamo::{DynamoErasure, ErasureTables};

use crate::domain::phone::PhoneNumber;
use crate::runtime::clock::Clock;
use crate::runtime::config::{ConfigError, EnvSource, json_kind, required_var};
use crate::runtime::job::{JobError, read_payload};
use crate::runtime::trigger::{JobPayload, PayloadError, read_as};

pub const FUNCTION_NAME: &str = "erase-customer";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EraseRequest {
    phone: String,
    #[serde(default)]
    dry_run: bool,
}

/// What was erased (or, in a dry run, would be), per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub orders: u64,
    pub carts: u64,
    pub reviews: u64,
    pub messages: u64,
    pub consent: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EraseResponse {
    pub success: bool,
    /// Masked: the number itself is what was erased.
    pub phone: String,
    pub dry_run: bool,
    pub erased: Erased,
    pub timestamp: String,
}

impl ErasureTables {
    /// `ORDERS_TABLE`, `CARTS_TABLE`, `REVIEWS_TABLE`, `MESSAGES_TABLE`, `CONSENT_TABLE` (all required).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            orders: required_var(env, "ORDERS_TABLE")?,
            carts: required_var(env, "CARTS_TABLE")?,
            reviews: required_var(env, "REVIEWS_TABLE")?,
            messages: required_var(env, "MESSAGES_TABLE")?,
            consent: required_var(env, "CONSENT_TABLE")?,
        })
    }
}

pub struct EraseDeps {
    pub store: DynamoErasure,
    pub clock: std::sync::Arc<dyn Clock>,
}

pub async fn handle(deps: &EraseDeps, event: LambdaEvent<JobPayload>) -> Result<EraseResponse, JobError> {
    let payload = read_payload(FUNCTION_NAME, &event.payload)?;
    run(deps, &payload).await
}

/// One erasure: the payload is refused by name unless it is `{"phone": "<E.164>"}` (and
/// `dryRun`).
pub async fn run(deps: &EraseDeps, payload: &Value) -> Result<EraseResponse, JobError> {
    let refuse = |reason: String| {
        tracing::error!(function = FUNCTION_NAME, %reason, "refused payload");
        JobError::InvalidPayload(PayloadError::BadErasureRequest(reason))
    };
    if !payload.is_object() {
        return Err(refuse(format!(
            "payload must be a JSON object, got {}",
            json_kind(payload)
        )));
    }
    let request: EraseRequest = read_as(payload).map_err(refuse)?;
    let phone = PhoneNumber::parse(&request.phone).map_err(|e| refuse(format!("`phone` is not usable: {e}")))?;
    let erased = deps.store.erase(&phone, request.dry_run, deps.clock.now()).await?;
    let response = EraseResponse {
        success: true,
        phone: phone.masked().to_string(),
        dry_run: request.dry_run,
        erased,
        timestamp: deps.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    tracing::info!(
        function = FUNCTION_NAME,
        phone = %response.phone,
        dry_run = response.dry_run,
        erased = serde_json::to_string(&response.erased).unwrap_or_default(),
        "erasure summary"
    );
    Ok(response)
}
