//! The Messages table: one item per (kind, order or cart), the outbox of every kind but
//! the review request. The one module that maps its items.
//!
//! | attribute | |
//! |---|---|
//! | `messageId` | key: `{kind}#{subjectId}`, so a subject gets each kind once |
//! | `kind`, `subjectId`, `customerPhone`, `customerName` | copied from the subject when scheduled |
//! | `dueAt`, `sendBefore` | epoch seconds; `dueAt` is `due-index`'s range key |
//! | `status` | `pending`, `sending`, `sent`, `failed`, `unknown` or `skipped` |
//! | `dueShard` | `due-index`'s hash key: `00`..`15` while pending, `sending` while send_claim, `reconcile` when unknown, `reconcile-by-hand` when reconciliation cannot decide; removed once settled |
//! | `claimId`, `claimedAt`, `attempts`, `messageSid`, `sentAt`, `lastError`, `skipReason` | the engine's record |
//! | `expiresAt` | TTL: 90 days after `sendBefore` |

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::caps::Caps;
use super::consent::DynamoConsents;
use super::eligibility::{needs_no_review, subject_condition, why_not};
use super::engine::{
    CLAIM_BATCH, Claim, ClaimOutcome, Closing, DueMessage, DuePage, InFlightClaim, MessageId, Outbox, Settled,
    Settlement, Siblings, Unsendable, Verdict,
};
use super::kind::{Category, Kind, KindsConfig, Subject};
use super::plan::{Scheduled, Step};
use super::reconcile::{Parked, Resolution};
use crate::domain::consent::{ConsentChange, ConsentSource, OptOut};
use crate::domain::phone::PhoneNumber;
use crate::report::counters::{Counter, DailyCounters};
use crate::runtime::clock::Clock;
use crate::runtime::job::Deadline;
use crate::store::StoreError;
use crate::store::dynamo::{
    Item, batch_statement, claim_token, execute_batch, item_exists, n, rfc3339, s, send_claim, store_error, string,
    written,
};
use crate::store::partition::Partition;
use crate::store::shard::shard_of;

/// The GSI the dispatcher reads; defined in template.yaml.
pub const DUE_INDEX: &str = "due-index";
const SENDING: &str = "sending";
const RECONCILE: &str = "reconcile";
/// `dueShard` of a message reconciliation could not decide: a person does.
const RECONCILE_BY_HAND: &str = "reconcile-by-hand";

/// A settlement's condition: the message is still under the run's claim.
const STILL_CLAIMED: &str = "claimId = :claimId";

/// A release's condition: still under the run's claim, or already released by it and
/// neither claimed nor closed since, which is how the SDK's retry of a release whose
/// answer was lost finds it. Without it the retry would fail and the claim's caps never be
/// given back.
const CLAIMED_OR_RELEASED_BY_IT: &str =
    "claimId = :claimId OR (attribute_not_exists(claimId) AND releasedClaimId = :claimId AND #st = :pending)";
/// How long a settled message is kept for the record.
const KEPT_FOR: TimeDelta = TimeDelta::days(90);

/// Where a message stands, as stored in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    Sending,
    Sent,
    Failed,
    Unknown,
    Skipped,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A new message as written by [`DynamoOutbox::schedule`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewMessageItem<'a> {
    message_id: String,
    kind: Kind,
    subject_type: Subject,
    subject_id: &'a str,
    customer_phone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_name: Option<&'a str>,
    due_at: i64,
    send_before: i64,
    status: MessageStatus,
    due_shard: String,
    scheduled_at: String,
    expires_at: i64,
}

/// A message as the dispatcher and tools read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub message_id: String,
    pub subject_id: String,
    pub customer_phone: String,
    #[serde(default)]
    pub customer_name: Option<String>,
    pub due_at: i64,
    pub send_before: i64,
    pub status: MessageStatus,
    #[serde(default)]
    pub claim_id: Option<String>,
    #[serde(default)]
    pub claimed_at: Option<String>,
    #[serde(default)]
    pub message_sid: Option<String>,
    #[serde(default)]
    pub skip_reason: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub scheduled_at: Option<String>,
}

/// The key of a message.
pub fn message_key(id: &MessageId) -> String {
    format!("{}#{}", id.kind, id.subject_id)
}

/// The id in a key, if it is one.
pub fn parse_key(key: &str) -> Option<MessageId> {
    let (kind, subject_id) = key.split_once('#')?;
    Some(MessageId {
        kind: kind.parse().ok()?,
        subject_id: subject_id.to_owned(),
    })
}

fn epoch(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

fn from_epoch(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Reads one `due-index` entry. `None`: not a message key at all (nothing this code wrote).
fn decode_due(item: &Item) -> Option<Result<DueMessage, Unsendable>> {
    let id = parse_key(&string(item, "messageId")?)?;
    let stored = match serde_dynamo::from_item::<_, StoredMessage>(item.clone()) {
        Ok(stored) => stored,
        Err(error) => {
            return Some(Err(Unsendable {
                id,
                label: "unreadable_message",
                detail: error.to_string(),
            }));
        }
    };
    Some(match PhoneNumber::parse(&stored.customer_phone) {
        Ok(customer_phone) => Ok(DueMessage {
            id,
            customer_phone,
            customer_name: stored.customer_name,
            due_at: from_epoch(stored.due_at),
            send_before: Some(from_epoch(stored.send_before)),
            since: stored
                .scheduled_at
                .as_deref()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map_or_else(|| from_epoch(stored.due_at), |at| at.with_timezone(&Utc)),
        }),
        Err(error) => Err(Unsendable {
            id,
            label: "invalid_phone",
            detail: format!("customerPhone is not usable: {error}"),
        }),
    })
}

/// Where a put may land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Only where no message of its kind exists for its subject.
    New,
    /// There too, or over a waiting message due earlier.
    LaterThanWaiting,
}

/// What the back office changed, and what only looked the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// Nothing to do: the message exists already, or is no longer waiting.
    Unchanged,
}

#[derive(Clone)]
pub struct DynamoOutbox {
    client: Client,
    messages_table: String,
    orders_table: String,
    carts_table: String,
    reviews_table: String,
    consents: DynamoConsents,
    caps: Caps,
    kinds: KindsConfig,
    clock: std::sync::Arc<dyn Clock>,
    counters: Option<DailyCounters>,
    /// Set once the backend refused a batch of statements (no PartiQL): settle one by one.
    batches_refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The tables a [`DynamoOutbox`] reads and writes.
#[derive(Debug, Clone)]
pub struct OutboxTables {
    pub messages: String,
    pub orders: String,
    pub carts: String,
    pub reviews: String,
    pub consent: String,
}

impl DynamoOutbox {
    pub fn new(client: Client, tables: OutboxTables, kinds: KindsConfig, clock: std::sync::Arc<dyn Clock>) -> Self {
        Self {
            consents: DynamoConsents::new(client.clone(), tables.consent),
            caps: Caps::default(),
            client,
            messages_table: tables.messages,
            orders_table: tables.orders,
            carts_table: tables.carts,
            reviews_table: tables.reviews,
            kinds,
            clock,
            counters: None,
            batches_refused: Default::default(),
        }
    }

    /// Counts each run's sends in the day's counters.
    pub fn with_counters(self, counters: DailyCounters) -> Self {
        Self {
            counters: Some(counters),
            ..self
        }
    }

    /// The marketing caps (default: [`Caps::default`]).
    pub fn with_caps(self, caps: Caps) -> Self {
        Self { caps, ..self }
    }

    fn subject_table(&self, kind: Kind) -> (&str, &'static str) {
        match kind.subject() {
            Subject::Order => (&self.orders_table, "orderId"),
            Subject::Cart => (&self.carts_table, "cartId"),
        }
    }

    /// Applies one step of a plan: idempotent, so a replayed record changes nothing.
    pub async fn apply(&self, step: &Step) -> Result<Applied, StoreError> {
        match step {
            Step::Schedule(scheduled) => self.schedule(scheduled).await,
            Step::Postpone(scheduled) => self.put(scheduled, Placement::LaterThanWaiting).await,
            Step::Drop { id, reason } => self.close_pending(id, reason, None).await,
        }
    }

    /// Puts a message in line, unless one of its kind exists for its subject.
    pub async fn schedule(&self, message: &Scheduled) -> Result<Applied, StoreError> {
        self.put(message, Placement::New).await
    }

    async fn put(&self, message: &Scheduled, placement: Placement) -> Result<Applied, StoreError> {
        let key = message_key(&message.id);
        let item = NewMessageItem {
            due_shard: shard_of(&key),
            message_id: key,
            kind: message.id.kind,
            subject_type: message.id.kind.subject(),
            subject_id: &message.id.subject_id,
            customer_phone: message.customer_phone.as_str(),
            customer_name: message.customer_name.as_deref(),
            due_at: epoch(message.due_at),
            send_before: epoch(message.send_before),
            status: MessageStatus::Pending,
            scheduled_at: rfc3339(self.clock.now()),
            expires_at: epoch(message.send_before + KEPT_FOR),
        };
        let item: Item = serde_dynamo::to_item(&item).map_err(|e| StoreError {
            operation: "PutItem",
            table: self.messages_table.clone(),
            message: format!("message {} cannot be encoded: {e}", message.id),
            retryable: false,
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.messages_table)
            .set_item(Some(item));
        let put = match placement {
            Placement::New => put.condition_expression("attribute_not_exists(messageId)"),
            // A waiting message holds nothing but what the put writes: replacing it loses nothing.
            Placement::LaterThanWaiting => put
                .condition_expression("attribute_not_exists(messageId) OR (#st = :pending AND dueAt < :due)")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":pending", s(MessageStatus::Pending.as_str()))
                .expression_attribute_values(":due", n(epoch(message.due_at))),
        };
        conditional(put.send().await, "PutItem", &self.messages_table)
    }

    async fn close_pending(&self, id: &MessageId, reason: &str, detail: Option<&str>) -> Result<Applied, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(id)))
            .update_expression("SET #st = :skipped, skipReason = :reason, closedAt = :now REMOVE dueShard")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(MessageStatus::Pending.as_str()))
            .expression_attribute_values(":skipped", s(MessageStatus::Skipped.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(rfc3339(self.clock.now())));
        if let Some(detail) = detail {
            update = update
                .update_expression(
                    "SET #st = :skipped, skipReason = :reason, closedAt = :now, lastError = :detail REMOVE dueShard",
                )
                .expression_attribute_values(":detail", s(detail));
        }
        conditional(update.send().await, "UpdateItem", &self.messages_table)
    }

    /// One message as stored, for tests and tools.
    pub async fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        match self.read_message(id).await? {
            None => Ok(None),
            Some(Ok(message)) => Ok(Some(message)),
            Some(Err(unreadable)) => Err(StoreError {
                operation: "GetItem",
                table: self.messages_table.clone(),
                message: unreadable,
                retryable: false,
            }),
        }
    }

    /// The message as stored, telling an item that cannot be read (`Some(Err)`, with why:
    /// it will read the same at every retry) from a call that failed (`Err`).
    pub async fn read_message(&self, id: &MessageId) -> Result<Option<Result<StoredMessage, String>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.messages_table, e))?;
        Ok(output
            .item
            .filter(|item| !item.is_empty())
            .map(|item| serde_dynamo::from_item(item).map_err(|e| format!("message {id} cannot be read: {e}"))))
    }

    async fn has_review(&self, order_id: &str) -> Result<bool, StoreError> {
        item_exists(&self.client, &self.reviews_table, "orderId", order_id).await
    }

    /// Why a claim was refused, read on the subject and the customer: not eligible, or
    /// held by the caps until a given time.
    async fn why_refused(&self, message: &DueMessage, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
        let kind = message.id.kind;
        let (table, key) = self.subject_table(kind);
        let subject = self
            .client
            .get_item()
            .table_name(table)
            .key(key, s(&message.id.subject_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", table, e))?
            .item;
        let has_review = needs_no_review(kind) && self.has_review(&message.id.subject_id).await?;
        if let Some(reason) = why_not(kind, subject.as_ref(), has_review, now) {
            return Ok(ClaimOutcome::Ineligible(reason));
        }
        let customer = self.consents.get(&message.customer_phone).await?;
        let marketing = self.is_marketing(kind);
        if let Some(reason) = customer.refuses(marketing, message.since) {
            return Ok(ClaimOutcome::Ineligible(reason));
        }
        Ok(match self.caps.next_allowed(&customer, now).filter(|_| marketing) {
            Some(until) => ClaimOutcome::Deferred(until),
            // Nothing refuses it now: another write raced this claim; the next run tries again.
            None => ClaimOutcome::Deferred(now + chrono::TimeDelta::minutes(1)),
        })
    }

    /// One claim's writes and checks: the message leaves the line if still waiting, its
    /// subject still qualifies, the customer's consent and caps allow it (and now count
    /// it), and for some kinds no review exists.
    fn claim_actions(&self, message: &DueMessage, claim: &Claim) -> Result<Vec<TransactWriteItem>, StoreError> {
        let kind = message.id.kind;
        let take = Update::builder()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(&message.id)))
            .update_expression(
                "SET #st = :sending, dueShard = :sending, claimId = :claimId, claimedAt = :claimedAt ADD attempts :one",
            )
            // Still due: a writer may have postponed it (a cart touched again) since the run
            // read it; it then waits for its new time.
            .condition_expression("#st = :pending AND dueAt <= :due")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":sending", s(SENDING))
            .expression_attribute_values(":pending", s(MessageStatus::Pending.as_str()))
            .expression_attribute_values(":due", n(epoch(claim.claimed_at)))
            .expression_attribute_values(":claimId", s(&claim.claim_id))
            .expression_attribute_values(":claimedAt", s(rfc3339(claim.claimed_at)))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(|e| build_error(&self.messages_table, e))?;
        let condition = subject_condition(kind, claim.claimed_at);
        let (table, key) = self.subject_table(kind);
        let mut check = ConditionCheck::builder()
            .table_name(table)
            .key(key, s(&message.id.subject_id))
            .condition_expression(condition.expression);
        for (name, value) in condition.names {
            check = check.expression_attribute_names(name, value);
        }
        for (name, value) in condition.values {
            check = check.expression_attribute_values(name, value);
        }
        let customer = self.consents.claim_update(
            &message.customer_phone,
            self.is_marketing(kind),
            message.since,
            claim.claimed_at,
            &self.caps,
        )?;
        let mut actions = vec![
            TransactWriteItem::builder().update(take).build(),
            TransactWriteItem::builder()
                .condition_check(check.build().map_err(|e| build_error(table, e))?)
                .build(),
            TransactWriteItem::builder().update(customer).build(),
        ];
        if needs_no_review(kind) {
            let no_review = ConditionCheck::builder()
                .table_name(&self.reviews_table)
                .key("orderId", s(&message.id.subject_id))
                .condition_expression("attribute_not_exists(orderId)")
                .build()
                .map_err(|e| build_error(&self.reviews_table, e))?;
            actions.push(TransactWriteItem::builder().condition_check(no_review).build());
        }
        Ok(actions)
    }

    /// The items a claim writes or checks, which no other claim of its transaction may.
    fn claim_keys(&self, message: &DueMessage) -> Vec<(&'static str, String)> {
        let mut keys = vec![
            ("message", message_key(&message.id)),
            ("customer", message.customer_phone.as_str().to_owned()),
            (
                match message.id.kind.subject() {
                    Subject::Order => "order",
                    Subject::Cart => "cart",
                },
                message.id.subject_id.clone(),
            ),
        ];
        if needs_no_review(message.id.kind) {
            keys.push(("review", message.id.subject_id.clone()));
        }
        keys
    }

    /// Why a claim alone was cancelled, when the backend did not say: the message, then
    /// its subject and customer, are read.
    async fn refused_without_reasons(&self, message: &DueMessage, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        match self.message(&message.id).await? {
            Some(stored) if stored.status != MessageStatus::Pending || stored.due_at > epoch(claim.claimed_at) => {
                Ok(ClaimOutcome::TakenElsewhere)
            }
            _ => self.why_refused(message, claim.claimed_at).await,
        }
    }

    /// A marketing message back in line gives back the caps its claim took, or it would be
    /// held back by its own claim (and dropped if that outlasts its `sendBefore`).
    async fn give_back_caps(
        &self,
        kind: Kind,
        phone: &PhoneNumber,
        claimed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.is_marketing(kind) {
            self.consents.give_back(phone, claimed_at, &self.caps).await?;
        }
        Ok(())
    }

    /// Whether `kind` is a marketing message (the review request always is).
    fn is_marketing(&self, kind: Kind) -> bool {
        self.kinds.get(kind).map_or(kind == Kind::ReviewRequest, |settings| {
            settings.category == Category::Marketing
        })
    }

    async fn update_claimed(
        &self,
        id: &MessageId,
        claim: &Claim,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        self.update_under(id, claim, STILL_CLAIMED, expression, values).await
    }

    async fn update_under(
        &self,
        id: &MessageId,
        claim: &Claim,
        condition: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(id)))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":claimId", s(&claim.claim_id));
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        update
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.messages_table, e))?;
        Ok(())
    }

    /// Sent settlements in one request. Per message: `Some(Ok)` written, `Some(Err)` its
    /// claim is no longer this run's, `None` to be written alone (throttled, failed alone).
    async fn settle_sent_batch<'a>(
        &self,
        settled: impl Iterator<Item = &'a Settled>,
    ) -> Result<Vec<Option<Result<(), StoreError>>>, StoreError> {
        use aws_sdk_dynamodb::types::BatchStatementErrorCodeEnum;
        let statement = format!(
            "UPDATE \"{}\" SET \"status\" = ? SET messageSid = ? SET sentAt = ? REMOVE dueShard REMOVE lastError \
             WHERE messageId = ? AND claimId = ?",
            self.messages_table
        );
        let mut statements = Vec::new();
        let mut ids = Vec::new();
        for one in settled {
            let Settlement::Sent { message_sid, sent_at } = &one.settlement else {
                continue;
            };
            statements.push(batch_statement(
                &self.messages_table,
                &statement,
                vec![
                    s(MessageStatus::Sent.as_str()),
                    s(message_sid),
                    s(rfc3339(*sent_at)),
                    s(message_key(&one.message.id)),
                    s(&one.claim.claim_id),
                ],
                false,
            )?);
            ids.push(one.message.id.clone());
        }
        let responses = execute_batch(&self.client, &self.messages_table, statements).await?;
        Ok(ids
            .iter()
            .zip(&responses)
            .map(|(id, response)| match response.error() {
                None => Some(Ok(())),
                Some(error) if error.code() == Some(&BatchStatementErrorCodeEnum::ConditionalCheckFailed) => {
                    Some(Err(StoreError {
                        operation: "BatchExecuteStatement",
                        table: self.messages_table.clone(),
                        message: format!("message {id} is no longer under this run's claim"),
                        retryable: false,
                    }))
                }
                Some(_) => None,
            })
            .collect())
    }

    /// One partition of `due-index` (`sending` or `reconcile`).
    fn partition<'a>(&'a self, value: &'a str) -> Partition<'a> {
        Partition {
            client: &self.client,
            table: &self.messages_table,
            index: DUE_INDEX,
            hash_key: "dueShard",
            value,
        }
    }
}

/// Claims that go in one transaction: no item twice, at most [`MAX_TRANSACTION_ACTIONS`].
#[derive(Default)]
struct ClaimGroup {
    /// Each claim's index among the messages, and how many actions it has, in order.
    claims: Vec<(usize, usize)>,
    actions: Vec<TransactWriteItem>,
    keys: std::collections::HashSet<(&'static str, String)>,
}

/// DynamoDB's limit on the actions of one `TransactWriteItems`.
const MAX_TRANSACTION_ACTIONS: usize = 100;

impl ClaimGroup {
    /// Adds the claim unless it shares an item with one already in, or would not fit.
    fn try_add(&mut self, index: usize, keys: Vec<(&'static str, String)>, actions: Vec<TransactWriteItem>) -> bool {
        let fits = self.claims.len() < CLAIM_BATCH && self.actions.len() + actions.len() <= MAX_TRANSACTION_ACTIONS;
        if !fits || keys.iter().any(|key| self.keys.contains(key)) {
            return false;
        }
        self.keys.extend(keys);
        self.claims.push((index, actions.len()));
        self.actions.extend(actions);
        true
    }
}

/// What the cancellation reasons of one claim's actions say (message first).
#[derive(Debug, PartialEq, Eq)]
enum ClaimFailure {
    /// Nothing of this claim failed: another claim cancelled the transaction.
    Untouched,
    /// The message was no longer waiting, or another run's transaction held one of its
    /// items at the same moment: that run has it, or the next run takes it.
    TakenElsewhere,
    /// The subject, the customer or a review refused it.
    Refused,
    /// Throttling or another error.
    Other,
}

impl ClaimFailure {
    fn of(codes: &[Option<String>]) -> Self {
        let code = |index: usize| codes.get(index).and_then(|code| code.as_deref()).unwrap_or("None");
        let failed = |index: usize| code(index) == "ConditionalCheckFailed";
        if failed(0) || (0..codes.len()).any(|index| code(index) == "TransactionConflict") {
            Self::TakenElsewhere
        } else if (1..codes.len()).any(failed) {
            Self::Refused
        } else if (0..codes.len()).all(|index| code(index) == "None") {
            Self::Untouched
        } else {
            Self::Other
        }
    }
}

/// A conditional write's result: refused by its condition is [`Applied::Unchanged`].
fn conditional<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    operation: &'static str,
    table: &str,
) -> Result<Applied, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Ok(if written(result, operation, table)? {
        Applied::Written
    } else {
        Applied::Unchanged
    })
}

impl Outbox for DynamoOutbox {
    type Cursor = Item;

    async fn due_page(
        &self,
        shard: &str,
        due_before: i64,
        cursor: Option<Item>,
        limit: i32,
    ) -> Result<DuePage<Item>, StoreError> {
        let output = self
            .partition(shard)
            .page_below("dueAt", due_before, cursor, limit)
            .await?;
        let mut entries = Vec::new();
        let mut foreign = 0;
        for item in output.items.unwrap_or_default() {
            match decode_due(&item) {
                Some(entry) => entries.push(entry),
                None => {
                    foreign += 1;
                    tracing::error!(
                        table = %self.messages_table,
                        message_id = ?item.get("messageId"),
                        "an entry of due-index is not a message of a known kind: left alone"
                    );
                }
            }
        }
        Ok(DuePage {
            items_read: u64::try_from(output.scanned_count).unwrap_or_default(),
            foreign,
            entries,
            next: output.last_evaluated_key.filter(|key| !key.is_empty()),
        })
    }

    async fn check(&self, message: &DueMessage, _now: DateTime<Utc>) -> Result<Verdict, StoreError> {
        Ok(match self.kinds.enabled(message.id.kind) {
            None => Verdict::Close("disabled"),
            Some(_) => Verdict::Go,
        })
    }

    async fn defer(&self, message: &DueMessage, until: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(&message.id)))
            .update_expression("SET dueAt = :until")
            // Only ever later: a writer may have postponed it past `until` since the read.
            .condition_expression("#st = :pending AND dueAt < :until")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(MessageStatus::Pending.as_str()))
            .expression_attribute_values(":until", n(epoch(until)))
            .send()
            .await;
        conditional(result, "UpdateItem", &self.messages_table).map(|_| ())
    }

    async fn claim(&self, message: &DueMessage, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        let mut answers = self
            .claim_all(std::slice::from_ref(message), claim, Deadline::unbounded())
            .await;
        answers
            .pop()
            .unwrap_or_else(|| Err(build_error(&self.messages_table, "no answer for the claim")))
    }

    /// Up to [`CLAIM_BATCH`] claims per `TransactWriteItems`, each claim's writes and
    /// checks as when alone. A transaction holds each item once, so claims that share a
    /// customer or a subject go in the next one, after it. A cancelled transaction says
    /// which claim failed (`CancellationReasons`): those are answered, the others are sent
    /// again without them; a backend that gives no reasons gets one claim per transaction.
    async fn claim_all(
        &self,
        messages: &[DueMessage],
        claim: &Claim,
        deadline: Deadline,
    ) -> Vec<Result<ClaimOutcome, StoreError>> {
        let mut answers: Vec<Option<Result<ClaimOutcome, StoreError>>> = vec![None; messages.len()];
        let mut waiting: Vec<usize> = (0..messages.len()).collect();
        let mut one_per_transaction = false;
        while !waiting.is_empty() {
            if deadline.reached() {
                for index in waiting {
                    answers[index] = Some(Ok(ClaimOutcome::NotStarted));
                }
                break;
            }
            let mut group = ClaimGroup::default();
            let mut next = Vec::new();
            for index in waiting {
                let message = &messages[index];
                if one_per_transaction && !group.claims.is_empty() {
                    next.push(index);
                    continue;
                }
                match self.claim_actions(message, claim) {
                    Ok(actions) => {
                        if !group.try_add(index, self.claim_keys(message), actions) {
                            next.push(index);
                        }
                    }
                    Err(error) => answers[index] = Some(Err(error)),
                }
            }
            waiting = next;
            if group.claims.is_empty() {
                continue;
            }
            let ClaimGroup { claims, actions, .. } = group;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await;
            let error = match result {
                Ok(_) => {
                    for (index, _) in &claims {
                        answers[*index] = Some(Ok(ClaimOutcome::Claimed));
                    }
                    continue;
                }
                Err(error) => error,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error()
            else {
                let error = store_error("TransactWriteItems", &self.messages_table, error);
                for (index, _) in &claims {
                    answers[*index] = Some(Err(error.clone()));
                }
                continue;
            };
            let reasons: Vec<Option<String>> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().map(str::to_owned))
                .collect();
            let total: usize = claims.iter().map(|(_, count)| count).sum();
            if reasons.len() != total {
                if claims.len() == 1 {
                    // No reasons given (some emulators): the message and the subject are read
                    // to tell which.
                    let index = claims[0].0;
                    answers[index] = Some(self.refused_without_reasons(&messages[index], claim).await);
                } else {
                    one_per_transaction = true;
                    waiting.extend(claims.iter().map(|(index, _)| *index));
                }
                continue;
            }
            let mut answered_any = false;
            let mut untouched = Vec::new();
            let mut offset = 0;
            for (index, count) in &claims {
                let codes = &reasons[offset..offset + count];
                offset += count;
                let answer = match ClaimFailure::of(codes) {
                    ClaimFailure::Untouched => {
                        untouched.push(*index);
                        continue;
                    }
                    ClaimFailure::TakenElsewhere => Ok(ClaimOutcome::TakenElsewhere),
                    ClaimFailure::Refused => self.why_refused(&messages[*index], claim.claimed_at).await,
                    // Throttled or refused for another reason: the next run tries again.
                    ClaimFailure::Other => Err(StoreError {
                        operation: "TransactWriteItems",
                        table: self.messages_table.clone(),
                        message: format!("claim cancelled: {codes:?}"),
                        retryable: true,
                    }),
                };
                answers[*index] = Some(answer);
                answered_any = true;
            }
            if !answered_any {
                // Cancelled, yet no claim of it failed: each goes alone.
                one_per_transaction = true;
            }
            waiting.extend(untouched);
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Err(build_error(&self.messages_table, "no answer for the claim"))))
            .collect()
    }

    async fn settle(&self, message: &DueMessage, claim: &Claim, settlement: &Settlement) -> Result<(), StoreError> {
        let id = &message.id;
        match settlement {
            Settlement::Sent { message_sid, sent_at } => {
                self.update_claimed(
                    id,
                    claim,
                    "SET #st = :sent, messageSid = :sid, sentAt = :at REMOVE dueShard, lastError",
                    vec![
                        (":sent", s(MessageStatus::Sent.as_str())),
                        (":sid", s(message_sid)),
                        (":at", s(rfc3339(*sent_at))),
                    ],
                )
                .await
            }
            Settlement::Failed { code, reason } => {
                self.update_claimed(
                    id,
                    claim,
                    "SET #st = :failed, failureCode = :code, lastError = :reason REMOVE dueShard",
                    vec![
                        (":failed", s(MessageStatus::Failed.as_str())),
                        (
                            ":code",
                            code.map_or_else(|| AttributeValue::Null(true), |c| n(i64::from(c))),
                        ),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
            Settlement::Released { reason } => {
                self.update_under(
                    id,
                    claim,
                    CLAIMED_OR_RELEASED_BY_IT,
                    "SET #st = :pending, dueShard = :shard, lastError = :reason, releasedClaimId = :claimId \
                     REMOVE claimId, claimedAt",
                    vec![
                        (":pending", s(MessageStatus::Pending.as_str())),
                        (":shard", s(shard_of(&message_key(id)))),
                        (":reason", s(reason)),
                    ],
                )
                .await?;
                self.give_back_caps(id.kind, &message.customer_phone, claim.claimed_at)
                    .await
            }
            Settlement::Unknown { reason } => {
                self.update_claimed(
                    id,
                    claim,
                    "SET #st = :unknown, dueShard = :reconcile, lastError = :reason",
                    vec![
                        (":unknown", s(MessageStatus::Unknown.as_str())),
                        (":reconcile", s(RECONCILE)),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
        }
    }

    /// The claim's transaction counted the message in the customer's caps already.
    fn settles_in_batches(&self) -> bool {
        true
    }

    /// The sent ones in one `BatchExecuteStatement` of PartiQL updates, each under its
    /// claim (`claimId = ?`); the others, and any the batch could not write, one by one.
    async fn settle_all(&self, settled: &[Settled]) -> Vec<Result<(), StoreError>> {
        use std::sync::atomic::Ordering;
        let batchable = |one: &Settled| matches!(one.settlement, Settlement::Sent { .. });
        let mut answers: Vec<Option<Result<(), StoreError>>> = vec![None; settled.len()];
        let sent: Vec<usize> = (0..settled.len()).filter(|&i| batchable(&settled[i])).collect();
        if sent.len() > 1 && !self.batches_refused.load(Ordering::Relaxed) {
            match self.settle_sent_batch(sent.iter().map(|&i| &settled[i])).await {
                Ok(batch) => {
                    for (&i, answer) in sent.iter().zip(batch) {
                        answers[i] = answer;
                    }
                }
                Err(error) => {
                    if !self.batches_refused.swap(true, Ordering::Relaxed) {
                        tracing::warn!(table = %self.messages_table, %error, "a batch of settlements was refused: settling one by one");
                    }
                }
            }
        }
        let mut done = Vec::with_capacity(settled.len());
        for (one, answer) in settled.iter().zip(answers) {
            done.push(match answer {
                Some(answer) => answer,
                None => self.settle(&one.message, &one.claim, &one.settlement).await,
            });
        }
        done
    }

    async fn close(&self, id: &MessageId, closing: &Closing) -> Result<(), StoreError> {
        let detail = match closing {
            Closing::Invalid { detail, .. } => Some(detail.as_str()),
            _ => None,
        };
        self.close_pending(id, closing.label(), detail).await.map(|_| ())
    }

    async fn in_flight(&self) -> Result<Vec<InFlightClaim>, StoreError> {
        Ok(self
            .partition(SENDING)
            .items()
            .await?
            .iter()
            .filter_map(|item| {
                let id = parse_key(&string(item, "messageId")?)?;
                let claimed_at = string(item, "claimedAt")
                    .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                    .map(|at| at.with_timezone(&Utc));
                Some(InFlightClaim { id, claimed_at })
            })
            .collect())
    }

    async fn park_stale_claim(&self, claim: &InFlightClaim, reason: &str) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(&claim.id)))
            .update_expression("SET #st = :unknown, dueShard = :reconcile, lastError = :reason")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":unknown", s(MessageStatus::Unknown.as_str()))
            .expression_attribute_values(":reconcile", s(RECONCILE))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":sending", s(MessageStatus::Sending.as_str()));
        update = match claim.claimed_at {
            Some(at) => update
                .condition_expression("#st = :sending AND claimedAt = :claimedAt")
                .expression_attribute_values(":claimedAt", s(rfc3339(at))),
            None => update.condition_expression("#st = :sending"),
        };
        conditional(update.send().await, "UpdateItem", &self.messages_table).map(|_| ())
    }

    async fn awaiting_reconciliation(&self) -> Result<u64, StoreError> {
        Ok(self.partition(RECONCILE).count().await? + self.partition(RECONCILE_BY_HAND).count().await?)
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        Ok(self
            .partition(RECONCILE)
            .items()
            .await?
            .iter()
            .filter_map(|item| {
                Some(Parked {
                    id: parse_key(&string(item, "messageId")?)?,
                    customer_phone: string(item, "customerPhone").and_then(|phone| PhoneNumber::parse(&phone).ok()),
                    claim_id: string(item, "claimId"),
                    claimed_at: string(item, "claimedAt")
                        .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                        .map(|at| at.with_timezone(&Utc)),
                })
            })
            .collect())
    }

    async fn siblings(&self, parked: &Parked) -> Result<Siblings, StoreError> {
        use strum::IntoEnumIterator;
        // The review request lives on the order, not in this table.
        let siblings = Kind::iter()
            .filter(|kind| *kind != parked.id.kind && *kind != Kind::ReviewRequest)
            .filter(|kind| kind.subject() == parked.id.kind.subject())
            .map(|kind| MessageId {
                kind,
                subject_id: parked.id.subject_id.clone(),
            })
            .collect::<Vec<_>>();
        let read = futures::future::join_all(siblings.iter().map(|id| self.read_message(id))).await;
        let mut found = Siblings::default();
        for message in read.into_iter().filter_map(Result::transpose) {
            match message? {
                Ok(message) => {
                    found.parked |= message.status == MessageStatus::Unknown;
                    found.sids.extend(message.message_sid);
                }
                Err(unreadable) => found.unreadable = Some(unreadable),
            }
        }
        Ok(found)
    }

    async fn resolve(&self, parked: &Parked, resolution: &Resolution) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("messageId", s(message_key(&parked.id)))
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":unknown", s(MessageStatus::Unknown.as_str()))
            .expression_attribute_values(":reconcile", s(RECONCILE))
            .expression_attribute_values(":now", s(rfc3339(self.clock.now())));
        // A token of this resolution alone: the SDK's retry of one whose answer was lost
        // is refused by it, and must still read as resolved (a requeue then gives the caps
        // back), where another run's resolution of the same message must not.
        let token = claim_token();
        // Still parked, under the same claim, and not yet moved aside.
        update = match &parked.claim_id {
            Some(claim_id) => update
                .condition_expression("#st = :unknown AND dueShard = :reconcile AND claimId = :claimId")
                .expression_attribute_values(":claimId", s(claim_id)),
            None => update
                .condition_expression("#st = :unknown AND dueShard = :reconcile AND attribute_not_exists(claimId)"),
        };
        update = match resolution {
            Resolution::Sent { message_sid, sent_at } => update
                .update_expression(
                    "SET #st = :sent, messageSid = :sid, sentAt = :at, reconciledAt = :now, reconcileToken = :token \
                     REMOVE dueShard, lastError",
                )
                .expression_attribute_values(":sent", s(MessageStatus::Sent.as_str()))
                .expression_attribute_values(":sid", s(message_sid))
                .expression_attribute_values(":at", s(rfc3339(*sent_at))),
            Resolution::Requeue { reason } => update
                .update_expression(
                    "SET #st = :pending, dueShard = :shard, lastError = :reason, reconciledAt = :now, \
                     reconcileToken = :token REMOVE claimId, claimedAt",
                )
                .expression_attribute_values(":pending", s(MessageStatus::Pending.as_str()))
                .expression_attribute_values(":shard", s(shard_of(&message_key(&parked.id))))
                .expression_attribute_values(":reason", s(reason)),
            Resolution::ByHand { reason } => update
                .update_expression(
                    "SET dueShard = :byHand, lastError = :reason, reconciledAt = :now, reconcileToken = :token",
                )
                .expression_attribute_values(":byHand", s(RECONCILE_BY_HAND))
                .expression_attribute_values(":reason", s(format!("reconciliation cannot decide: {reason}"))),
        };
        let update = update.expression_attribute_values(":token", s(&token));
        let resolved = send_claim(update, &self.messages_table, "reconcileToken", &token).await?;
        if let (true, Resolution::Requeue { .. }, Some(phone), Some(claimed_at)) =
            (resolved, resolution, &parked.customer_phone, parked.claimed_at)
        {
            self.give_back_caps(parked.id.kind, phone, claimed_at).await?;
        }
        Ok(resolved)
    }

    async fn count(&self, at: DateTime<Utc>, increments: &[(Counter, u64)]) -> Result<(), StoreError> {
        match &self.counters {
            Some(counters) => counters.add(at, increments, None).await,
            None => Ok(()),
        }
    }

    async fn record_opt_out(&self, message: &DueMessage, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.consents
            .record(
                &message.customer_phone,
                ConsentChange::OptOut(OptOut::All),
                ConsentSource::Twilio,
                at,
                None,
            )
            .await
            .map(|_| ())
    }
}

fn build_error(table: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError {
        operation: "TransactWriteItems",
        table: table.to_owned(),
        message: format!("the claim cannot be built: {error}"),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(codes: &[&str]) -> Vec<Option<String>> {
        codes.iter().map(|code| Some((*code).to_owned())).collect()
    }

    #[test]
    fn a_claims_cancellation_reasons_say_what_happened_to_it() {
        let of = |c: &[&str]| ClaimFailure::of(&codes(c));
        assert_eq!(of(&["None", "None", "None"]), ClaimFailure::Untouched);
        assert_eq!(ClaimFailure::of(&[None, None, None]), ClaimFailure::Untouched);
        assert_eq!(
            of(&["ConditionalCheckFailed", "None", "None"]),
            ClaimFailure::TakenElsewhere
        );
        assert_eq!(
            of(&["None", "None", "TransactionConflict"]),
            ClaimFailure::TakenElsewhere
        );
        assert_eq!(of(&["None", "ConditionalCheckFailed", "None"]), ClaimFailure::Refused);
        assert_eq!(
            of(&["None", "None", "None", "ConditionalCheckFailed"]),
            ClaimFailure::Refused
        );
        assert_eq!(of(&["ThrottlingError", "None", "None"]), ClaimFailure::Other);
    }

    fn actions(count: usize) -> Vec<TransactWriteItem> {
        vec![TransactWriteItem::builder().build(); count]
    }

    fn keys(customer: &str, order: &str) -> Vec<(&'static str, String)> {
        vec![("customer", customer.into()), ("order", order.into())]
    }

    #[test]
    fn a_transaction_of_claims_holds_each_item_once_and_at_most_its_limit() {
        let mut group = ClaimGroup::default();
        assert!(group.try_add(0, keys("+1", "o-1"), actions(4)));
        assert!(!group.try_add(1, keys("+1", "o-2"), actions(4)), "same customer");
        assert!(!group.try_add(2, keys("+2", "o-1"), actions(4)), "same order");
        assert!(group.try_add(3, keys("+3", "o-3"), actions(4)));
        assert_eq!(group.claims, vec![(0, 4), (3, 4)]);

        let mut full = ClaimGroup::default();
        for i in 0..CLAIM_BATCH {
            assert!(full.try_add(i, keys(&format!("+{i}"), &format!("o-{i}")), actions(4)));
        }
        assert_eq!(full.actions.len(), MAX_TRANSACTION_ACTIONS);
        assert!(!full.try_add(99, keys("+99", "o-99"), actions(3)));
    }
}
