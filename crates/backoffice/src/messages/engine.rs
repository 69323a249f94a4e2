//! The one path of every outgoing message: claim, send, settle; park what is unsure for
//! reconciliation. Each kind's storage sits behind [`Outbox`], each channel behind
//! [`Messenger`]; nothing here knows which kind it sends.
//!
//! Exactly once: a message is claimed with a conditional write (which also re-checks
//! that its subject still qualifies) before it is sent, so concurrent runs, a duplicate
//! scheduler delivery or a Lambda retry cannot send it twice. When the outcome of a send
//! is unknown (Twilio may have accepted it, or the run died between claim and send), the
//! message is parked for reconciliation and never resent by itself: a missing reminder is
//! cheaper than a customer messaged twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::kind::Kind;
use super::quiet::QuietHours;
use super::reconcile::{Parked, ReconcileReport, Resolution, reconcile};
use crate::domain::phone::PhoneNumber;
use crate::report::counters::Counter;
use crate::runtime::clock::Clock;
use crate::runtime::job::{Aborted, Deadline};
use crate::store::StoreError;
use crate::store::walk::{IndexPage, Walked, walk_shards};
use crate::twilio::{LookupError, MessageList, SendError, SentMessage};

/// A message's identity: one of each kind per order or cart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub kind: Kind,
    /// The order's or the cart's id.
    pub subject_id: String,
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.kind, self.subject_id)
    }
}

/// A message whose time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMessage {
    pub id: MessageId,
    pub customer_phone: PhoneNumber,
    pub customer_name: Option<String>,
    /// When it became due (for the review request: the order's completion).
    pub due_at: DateTime<Utc>,
    /// Too late to send after this: closed as `too_old` instead.
    pub send_before: Option<DateTime<Utc>>,
    /// When the change that made it happened: a customer who opted out after this does
    /// not get it, even if they opted back in since.
    pub since: DateTime<Utc>,
}

/// A due entry that cannot become a message, and why (missing phone, unreadable time...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable {
    pub id: MessageId,
    /// A short label for counts and metrics.
    pub label: &'static str,
    pub detail: String,
}

/// Why a message is closed without being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// Its time to be useful passed before a run reached it.
    TooOld,
    /// Its subject no longer qualifies (paid, collected, cancelled, reviewed, converted...).
    Ineligible(&'static str),
    /// Its data cannot make a message.
    Invalid { label: &'static str, detail: String },
}

impl Closing {
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooOld => "too_old",
            Self::Ineligible(label) | Self::Invalid { label, .. } => label,
        }
    }
}

/// A run's hold on one message: written by the claim, required by every later update, so
/// a run can only settle what it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub claim_id: String,
    pub claimed_at: DateTime<Utc>,
}

/// The other messages of a parked message's order or cart, as reconciliation needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Siblings {
    /// Their Twilio SIDs: a message listed under one of them is not the parked one.
    pub sids: std::collections::HashSet<String>,
    /// One of them is parked too: a listed message naming the subject could be either.
    pub parked: bool,
    /// One of them cannot be read (why): the SID it holds cannot be set apart.
    pub unreadable: Option<String>,
}

/// What a check before the claim says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Never: close with this reason.
    Close(&'static str),
    /// Not now: leave it in line for a later run.
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// The caps hold it until then ([`super::caps`]).
    Deferred(DateTime<Utc>),
    /// Another run claimed or settled it first (a concurrent or duplicate run), or a writer
    /// postponed it since the run read it.
    TakenElsewhere,
    /// The subject no longer qualifies: the message is closed with this reason.
    Ineligible(&'static str),
    /// Not tried: the run's deadline came first. The message stays in line.
    NotStarted,
}

/// How a claimed message ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Sent {
        message_sid: String,
        sent_at: DateTime<Utc>,
    },
    /// Twilio refused for good (invalid or unsubscribed number, ...).
    Failed { code: Option<u32>, reason: String },
    /// Nothing was delivered and trying again later may work: back in line.
    Released { reason: String },
    /// The message may have gone out: parked for reconciliation, never resent by itself.
    Unknown { reason: String },
}

/// A claim still held, as the store lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightClaim {
    pub id: MessageId,
    pub claimed_at: Option<DateTime<Utc>>,
}

/// A page of due entries.
pub type DuePage<Cursor> = IndexPage<Result<DueMessage, Unsendable>, Cursor>;

/// Where messages wait, are claimed and settled.
pub trait Outbox: Send + Sync {
    type Cursor: Send;

    /// Due entries of `shard` whose due time is strictly before `due_before` (epoch seconds).
    fn due_page(
        &self,
        shard: &str,
        due_before: i64,
        cursor: Option<Self::Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<DuePage<Self::Cursor>, StoreError>> + Send;

    /// A check the claim's own condition cannot make.
    fn check(
        &self,
        message: &DueMessage,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Verdict, StoreError>> + Send;

    /// Moves a waiting message's due time to `until` (the caps hold it).
    fn defer(&self, message: &DueMessage, until: DateTime<Utc>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes the message out of line, only if it is still waiting and its subject still
    /// qualifies. The step that makes sending exactly-once.
    fn claim(
        &self,
        message: &DueMessage,
        claim: &Claim,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Claims up to [`CLAIM_BATCH`] messages under one claim: one answer each, in order.
    /// By default one after the other, so each claim sees the ones before it (the caps);
    /// none starts once `deadline` is reached, as each may take the SDK's whole retry
    /// budget.
    fn claim_all(
        &self,
        messages: &[DueMessage],
        claim: &Claim,
        deadline: Deadline,
    ) -> impl Future<Output = Vec<Result<ClaimOutcome, StoreError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(messages.len());
            for message in messages {
                if deadline.reached() {
                    answers.push(Ok(ClaimOutcome::NotStarted));
                    continue;
                }
                answers.push(self.claim(message, claim).await);
            }
            answers
        }
    }

    fn settle(
        &self,
        message: &DueMessage,
        claim: &Claim,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether sent messages may be settled later, [`SETTLE_BATCH`] at a time: only when
    /// nothing a later claim checks waits for the settlement (the messages table counts a
    /// claim in the caps; the review request counts its send when settled).
    fn settles_in_batches(&self) -> bool {
        false
    }

    /// Settles up to [`SETTLE_BATCH`] messages: one answer each, in order. By default one
    /// after the other.
    fn settle_all(&self, settled: &[Settled]) -> impl Future<Output = Vec<Result<(), StoreError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(settled.len());
            for one in settled {
                answers.push(self.settle(&one.message, &one.claim, &one.settlement).await);
            }
            answers
        }
    }

    /// Closes a waiting message without sending. Does nothing if a run claimed it meanwhile.
    fn close(&self, id: &MessageId, closing: &Closing) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every claim held.
    fn in_flight(&self) -> impl Future<Output = Result<Vec<InFlightClaim>, StoreError>> + Send;

    /// Parks a claim left behind by a run that died for reconciliation, if it is still
    /// the same claim.
    fn park_stale_claim(
        &self,
        claim: &InFlightClaim,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Messages waiting for reconciliation.
    fn awaiting_reconciliation(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every message waiting for reconciliation.
    fn parked(&self) -> impl Future<Output = Result<Vec<Parked>, StoreError>> + Send;

    /// What the other messages of `parked`'s order or cart say about Twilio's list: the
    /// SIDs recorded on them, and whether one is parked too. None by default.
    fn siblings(&self, parked: &Parked) -> impl Future<Output = Result<Siblings, StoreError>> + Send {
        let _ = parked;
        async { Ok(Siblings::default()) }
    }

    /// Settles a parked message, only if it is still parked under the same claim.
    /// `Ok(false)`: it was not (another run settled it).
    fn resolve(
        &self,
        parked: &Parked,
        resolution: &Resolution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds a run's sends to the day's counters ([`crate::report::counters`]). Nothing by
    /// default (stores that count nothing).
    fn count(
        &self,
        _at: DateTime<Utc>,
        _increments: &[(Counter, u64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Records that the customer opted out, as Twilio said when it refused `message`
    /// (error 21610): no later message goes to them until they opt back in.
    fn record_opt_out(
        &self,
        message: &DueMessage,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A claimed message and how it ended, to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub message: DueMessage,
    pub claim: Claim,
    pub settlement: Settlement,
}

/// Sent messages settled together, in one request where the store can.
pub const SETTLE_BATCH: usize = 25;

/// Messages claimed together, in one request where the store can. What is claimed and
/// not sent when the run must stop is released, so a run never holds more claims than it
/// has messages in flight plus one batch.
pub const CLAIM_BATCH: usize = 25;

/// Twilio's "the recipient has opted out" refusal.
pub const TWILIO_OPTED_OUT: u32 = 21610;

/// Sends one message. Twilio in production; a fake in unit tests.
pub trait Messenger: Send + Sync {
    /// Sends one message, retrying a passing failure only while the retry can end before
    /// `deadline`.
    fn send(
        &self,
        message: &DueMessage,
        deadline: Deadline,
    ) -> impl Future<Output = Result<SentMessage, SendError>> + Send;

    /// The messages this sender sent to `to` since `since`'s day, for reconciliation.
    fn sent_to(
        &self,
        to: &PhoneNumber,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<MessageList, LookupError>> + Send;

    /// How long after its claim a message this sender does not list is surely never
    /// sent ([`super::reconcile::absent_after`]).
    fn absent_after(&self) -> TimeDelta;
}

/// What one kind's messages did in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    /// Due in quiet hours: left in line for the opening.
    pub held: u64,
    pub sent: u64,
    pub failed: u64,
    pub released: u64,
    pub unknown: u64,
    pub skipped: BTreeMap<&'static str, u64>,
}

/// What one run did. Serialised into the result and the run summary log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchReport {
    /// In the response as the contract's top-level `sent`.
    #[serde(skip)]
    pub sent: u64,
    /// Refused by Twilio for good (invalid or unsubscribed number...), not retried.
    /// In the response as the contract's top-level `failed`.
    #[serde(skip)]
    pub failed: u64,
    pub failed_reasons: BTreeMap<String, u64>,
    /// Not delivered and retryable (429, 5xx, network): back in line for the next run.
    pub released: u64,
    /// Twilio may have the message: parked for reconciliation, not resent.
    pub unknown: u64,
    /// Due messages that were not sent, by reason (too_old, has_review, paid, invalid_phone...).
    pub skipped: BTreeMap<&'static str, u64>,
    /// A dry run's count of the messages it would send.
    pub would_send: u64,
    /// Due in quiet hours: left in line, untouched, for the opening.
    pub held: u64,
    /// Claims left by a run that died, parked for reconciliation by this run.
    pub stale_claims_parked: u64,
    /// Messages waiting for a person to reconcile, after this run.
    pub awaiting_reconciliation: u64,
    /// What this run settled of the messages whose outcome was unknown.
    pub reconciliation: ReconcileReport,
    /// DynamoDB errors on single messages; those are retried by the next run.
    pub store_errors: u64,
    pub items_read: u64,
    /// True when the run stopped at its deadline (or on a configuration error) with work left.
    pub more: bool,
    /// The same outcomes, per kind.
    pub by_kind: BTreeMap<Kind, KindCounts>,
}

impl DispatchReport {
    /// Due messages this run looked at.
    pub fn total(&self) -> u64 {
        self.sent
            + self.failed
            + self.released
            + self.unknown
            + self.would_send
            + self.held
            + self.skipped.values().sum::<u64>()
    }

    fn count(&mut self, kind: Kind, outcome: Outcome) {
        let counts = self.by_kind.entry(kind).or_default();
        match outcome {
            Outcome::Sent => {
                self.sent += 1;
                counts.sent += 1;
            }
            Outcome::Failed(reason) => {
                self.failed += 1;
                counts.failed += 1;
                *self.failed_reasons.entry(reason).or_default() += 1;
            }
            Outcome::Released => {
                self.released += 1;
                counts.released += 1;
            }
            Outcome::Unknown => {
                self.unknown += 1;
                counts.unknown += 1;
            }
            Outcome::Skipped(reason) => {
                *self.skipped.entry(reason).or_default() += 1;
                *counts.skipped.entry(reason).or_default() += 1;
            }
            Outcome::WouldSend => self.would_send += 1,
            Outcome::Held => {
                self.held += 1;
                counts.held += 1;
            }
            Outcome::NotStarted => self.more = true,
            // Counted once written, as `Sent` or a store error.
            Outcome::ToSettle(_) => {}
            Outcome::StoreError => self.store_errors += 1,
        }
    }
}

/// `STALE_CLAIM_MINUTES` (20): how old a claim must be before it is taken for a dead run's
/// and parked. At least 16, longer than any run (Lambda stops one at 15 minutes), so a
/// live run's claims are never parked; at most a day.
pub fn stale_claim_after(
    env: &impl crate::runtime::config::EnvSource,
) -> Result<Duration, crate::runtime::config::ConfigError> {
    let minutes: u64 = crate::runtime::config::parse_in_range(env, "STALE_CLAIM_MINUTES", 16..=1440, 20)?;
    Ok(Duration::from_secs(minutes * 60))
}

/// The skip reason of a due entry whose key names no kind this version knows.
pub const UNKNOWN_KIND: &str = "unknown_kind";

pub struct DispatchOptions {
    /// Entries due strictly before this are read.
    pub due_before: DateTime<Utc>,
    /// Entries due strictly before this are closed as too old (the review request's window).
    pub too_old_before: Option<DateTime<Utc>>,
    pub page_size: i32,
    pub concurrency: usize,
    pub dry_run: bool,
    /// The run's id, the start of every claim id of this run (each batch of claims adds
    /// a token of its own), so only the batch that claimed a message settles it.
    pub claim_id: String,
    pub stale_claim_after: Duration,
    /// The function name in log lines.
    pub function: &'static str,
    /// No message of a kind it holds goes out in them.
    pub quiet: QuietHours,
}

/// A run that could not read or update the store. `report` holds what was done before.
pub type DispatchAborted = Aborted<DispatchReport>;

/// How one due message ended in this run.
enum Outcome {
    Sent,
    /// Accepted by Twilio; its settlement waits to be written with others.
    ToSettle(Box<Settled>),
    Failed(String),
    Released,
    Unknown,
    Skipped(&'static str),
    WouldSend,
    Held,
    NotStarted,
    StoreError,
}

/// Sends every due message of the outbox, then adds what went out (or was refused) to
/// the day's counters: one write per run, whatever the run's size. A counter write that
/// fails is logged and lost; the run's sends stand.
pub async fn dispatch<O: Outbox, M: Messenger>(
    outbox: &O,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &DispatchOptions,
) -> Result<DispatchReport, DispatchAborted> {
    let outcome = dispatch_due(outbox, messenger, clock, deadline, options).await;
    if !options.dry_run {
        let report = match &outcome {
            Ok(report) => report,
            Err(aborted) => &aborted.report,
        };
        let increments: Vec<(Counter, u64)> = report
            .by_kind
            .iter()
            .flat_map(|(kind, counts)| {
                [
                    (Counter::Sent(*kind), counts.sent),
                    (Counter::Failed(*kind), counts.failed),
                ]
            })
            .collect();
        if let Err(error) = outbox.count(clock.now(), &increments).await {
            tracing::error!(function = options.function, %error, "the day's counters were not updated");
        }
    }
    outcome
}

async fn dispatch_due<O: Outbox, M: Messenger>(
    outbox: &O,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &DispatchOptions,
) -> Result<DispatchReport, DispatchAborted> {
    let mut report = DispatchReport::default();
    let aborted = |report: DispatchReport, cause| DispatchAborted { report, cause };
    if !options.dry_run {
        match park_stale_claims(outbox, clock, options).await {
            Ok(parked) => report.stale_claims_parked = parked,
            Err(cause) => return Err(aborted(report, cause)),
        }
        match reconcile(outbox, messenger, clock, deadline, options.function).await {
            Ok(reconciled) => report.reconciliation = reconciled,
            Err(cause) => return Err(aborted(report, cause)),
        }
    }
    // A configuration error (bad credentials, unknown sender) fails every send: stop.
    let halted = AtomicBool::new(false);
    let stopped_early = AtomicBool::new(false);
    let items_read = AtomicU64::new(0);
    let foreign = AtomicU64::new(0);
    // One stream over every page of every shard feeds one pool of in-flight messages, so
    // sends go on while the next page is read: the rate limiter never waits on a page
    // boundary. Pages are read only as the pool needs more, so memory stays at one page
    // plus the messages in flight.
    let due_before = options.due_before.timestamp();
    let entries = walk_shards(
        |shard, cursor| async move { outbox.due_page(&shard, due_before, cursor, options.page_size).await },
        || must_stop(deadline, &halted),
    )
    .map(|walked| {
        let entries = match walked {
            Ok(Walked::Page(page)) => {
                items_read.fetch_add(page.items_read, Ordering::Relaxed);
                foreign.fetch_add(page.foreign, Ordering::Relaxed);
                page.entries.into_iter().map(Ok).collect()
            }
            Ok(Walked::StoppedEarly) => {
                stopped_early.store(true, Ordering::Relaxed);
                Vec::new()
            }
            Err(cause) => vec![Err(cause)],
        };
        futures::stream::iter(entries)
    })
    .flatten();
    let mut abort = None;
    // Each entry is checked on its own, claimed with the others ready at that moment (up
    // to CLAIM_BATCH, one batch at a time), then sent and settled on its own.
    let checked = entries
        .map(|entry| {
            let halted = &halted;
            async move {
                let entry = entry?;
                let kind = match &entry {
                    Ok(message) => message.id.kind,
                    Err(unsendable) => unsendable.id.kind,
                };
                Ok((
                    kind,
                    before_claim(outbox, clock, deadline, options, halted, entry).await,
                ))
            }
        })
        .buffered(options.concurrency);
    let claimed = checked
        .ready_chunks(CLAIM_BATCH)
        .then(|chunk| {
            let halted = &halted;
            async move {
                let mut steps = Vec::with_capacity(chunk.len());
                let mut to_claim = Vec::new();
                for entry in chunk {
                    match entry {
                        Ok((_, Checked::ToClaim(message))) => to_claim.push(message),
                        Ok((kind, Checked::Done(outcome))) => steps.push(Ok((kind, Step::Done(outcome)))),
                        Err(cause) => steps.push(Err(cause)),
                    }
                }
                steps.extend(
                    claim_chunk(outbox, clock, deadline, options, halted, to_claim)
                        .await
                        .into_iter()
                        .map(Ok),
                );
                futures::stream::iter(steps)
            }
        })
        .flatten();
    let outcomes = claimed
        .map(|step| {
            let halted = &halted;
            async move {
                match step? {
                    (kind, Step::Done(outcome)) => Ok((kind, outcome)),
                    (kind, Step::Send(message, claim)) => Ok((
                        kind,
                        send_claimed(outbox, messenger, clock, deadline, options, halted, message, claim).await,
                    )),
                }
            }
        })
        .buffer_unordered(options.concurrency);
    let mut outcomes = std::pin::pin!(outcomes);
    // Sent messages are settled SETTLE_BATCH at a time. A run that dies with some not
    // written leaves their claims held: the next runs park and reconcile them, so none is
    // sent twice.
    let mut to_settle = Vec::with_capacity(SETTLE_BATCH);
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok((_, Outcome::ToSettle(settled))) => {
                to_settle.push(*settled);
                if to_settle.len() >= SETTLE_BATCH {
                    settle_sent(outbox, options, &mut to_settle, &mut report).await;
                }
            }
            Ok((kind, outcome)) => report.count(kind, outcome),
            Err(cause) => abort = Some(cause),
        }
    }
    settle_sent(outbox, options, &mut to_settle, &mut report).await;
    report.items_read = items_read.load(Ordering::Relaxed);
    // Left in the index (a newer version of the code may know their kind), yet counted.
    let foreign = foreign.load(Ordering::Relaxed);
    if foreign > 0 {
        *report.skipped.entry(UNKNOWN_KIND).or_default() += foreign;
    }
    if stopped_early.load(Ordering::Relaxed) || halted.load(Ordering::Relaxed) {
        report.more = true;
    }
    if let Some(cause) = abort {
        return Err(aborted(report, cause));
    }
    match outbox.awaiting_reconciliation().await {
        Ok(count) => report.awaiting_reconciliation = count,
        Err(cause) => return Err(aborted(report, cause)),
    }
    Ok(report)
}

/// Writes the settlements waiting in `to_settle`, and counts each.
async fn settle_sent<O: Outbox>(
    outbox: &O,
    options: &DispatchOptions,
    to_settle: &mut Vec<Settled>,
    report: &mut DispatchReport,
) {
    if to_settle.is_empty() {
        return;
    }
    let answers = outbox.settle_all(to_settle).await;
    for (settled, answer) in to_settle
        .drain(..)
        .zip(answers.into_iter().map(Some).chain(std::iter::repeat(None)))
    {
        let kind = settled.message.id.kind;
        match answer {
            Some(Ok(())) => report.count(kind, Outcome::Sent),
            Some(Err(error)) => {
                // The claim stays held; a later run parks and reconciles it.
                tracing::error!(function = options.function, message_id = %settled.message.id, settlement = ?settled.settlement, %error, "could not record the outcome");
                report.count(kind, Outcome::StoreError);
            }
            None => {
                tracing::error!(function = options.function, message_id = %settled.message.id, "no answer for this settlement");
                report.count(kind, Outcome::StoreError);
            }
        }
    }
}

async fn park_stale_claims<O: Outbox>(
    outbox: &O,
    clock: &dyn Clock,
    options: &DispatchOptions,
) -> Result<u64, StoreError> {
    let cutoff = TimeDelta::from_std(options.stale_claim_after)
        .ok()
        .and_then(|age| clock.now().checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut parked = 0;
    for claim in outbox.in_flight().await? {
        if claim.claimed_at.is_none_or(|at| at < cutoff) {
            tracing::warn!(
                function = options.function,
                message_id = %claim.id,
                claimed_at = ?claim.claimed_at,
                "a run died between claim and outcome: parked for reconciliation, not resent"
            );
            outbox
                .park_stale_claim(
                    &claim,
                    "claimed by a run that did not finish; message may have been sent",
                )
                .await?;
            parked += 1;
        }
    }
    Ok(parked)
}

/// Closes a message that will not be sent; `Skipped(label)` unless the close itself failed.
async fn close<O: Outbox>(outbox: &O, options: &DispatchOptions, id: &MessageId, closing: Closing) -> Outcome {
    if !options.dry_run
        && let Err(error) = outbox.close(id, &closing).await
    {
        tracing::warn!(function = options.function, message_id = %id, %error, "could not close the message");
        return Outcome::StoreError;
    }
    Outcome::Skipped(closing.label())
}

/// Whether the run must start nothing more: its deadline came, or a configuration error
/// stopped it.
fn must_stop(deadline: Deadline, halted: &AtomicBool) -> bool {
    deadline.reached() || halted.load(Ordering::Relaxed)
}

/// How far an entry went before its claim.
enum Checked {
    Done(Outcome),
    ToClaim(DueMessage),
}

/// What comes of an entry once its batch is claimed.
enum Step {
    Done(Outcome),
    Send(DueMessage, Claim),
}

/// Everything before the claim: closes the unsendable and the too old, holds what quiet
/// hours or the outbox's check hold.
async fn before_claim<O: Outbox>(
    outbox: &O,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &DispatchOptions,
    halted: &AtomicBool,
    entry: Result<DueMessage, Unsendable>,
) -> Checked {
    if must_stop(deadline, halted) {
        return Checked::Done(Outcome::NotStarted);
    }
    let message = match entry {
        Ok(message) => message,
        Err(unsendable) => {
            tracing::warn!(function = options.function, message_id = %unsendable.id, reason = %unsendable.detail, "skipping message");
            let closing = Closing::Invalid {
                label: unsendable.label,
                detail: unsendable.detail,
            };
            return Checked::Done(close(outbox, options, &unsendable.id, closing).await);
        }
    };
    let too_old = options.too_old_before.is_some_and(|before| message.due_at < before)
        || message.send_before.is_some_and(|before| clock.now() >= before);
    if too_old {
        return Checked::Done(close(outbox, options, &message.id, Closing::TooOld).await);
    }
    if options.quiet.holds(message.id.kind, clock.now()) {
        return Checked::Done(Outcome::Held);
    }
    match outbox.check(&message, clock.now()).await {
        Ok(Verdict::Go) => {}
        Ok(Verdict::Close(reason)) => {
            return Checked::Done(close(outbox, options, &message.id, Closing::Ineligible(reason)).await);
        }
        Ok(Verdict::Hold) => return Checked::Done(Outcome::Held),
        Err(error) => {
            tracing::warn!(function = options.function, message_id = %message.id, %error, "could not check the message");
            return Checked::Done(Outcome::StoreError);
        }
    }
    if options.dry_run {
        return Checked::Done(Outcome::WouldSend);
    }
    Checked::ToClaim(message)
}

/// Claims `messages` together; what is not claimed ends here.
async fn claim_chunk<O: Outbox>(
    outbox: &O,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &DispatchOptions,
    halted: &AtomicBool,
    messages: Vec<DueMessage>,
) -> Vec<(Kind, Step)> {
    if messages.is_empty() {
        return Vec::new();
    }
    if must_stop(deadline, halted) {
        return messages
            .iter()
            .map(|message| (message.id.kind, Step::Done(Outcome::NotStarted)))
            .collect();
    }
    // The run's id, then a token of this batch of claims alone: a claim the SDK sent again
    // after a lost answer finds its own id on the item and knows it holds it, which no
    // other batch, nor a retry of this run with the same request id, can mistake for its own.
    let claim = Claim {
        claim_id: format!("{}/{}", options.claim_id, crate::store::dynamo::claim_token()),
        claimed_at: clock.now(),
    };
    let answers = outbox.claim_all(&messages, &claim, deadline).await;
    let answers = answers.into_iter().map(Some).chain(std::iter::repeat(None));
    let steps = messages.into_iter().zip(answers).map(|(message, answer)| {
        let claim = &claim;
        async move {
            let kind = message.id.kind;
            let answer = answer.unwrap_or_else(|| {
                Err(StoreError {
                    operation: "claim",
                    table: String::new(),
                    message: "no answer for this claim".into(),
                    retryable: true,
                })
            });
            match after_claim(outbox, options, &message, answer).await {
                None => (kind, Step::Send(message, claim.clone())),
                Some(outcome) => (kind, Step::Done(outcome)),
            }
        }
    });
    futures::future::join_all(steps).await
}

/// What a claim's answer leaves to do: `None` to send the message.
async fn after_claim<O: Outbox>(
    outbox: &O,
    options: &DispatchOptions,
    message: &DueMessage,
    answer: Result<ClaimOutcome, StoreError>,
) -> Option<Outcome> {
    match answer {
        Ok(ClaimOutcome::Claimed) => None,
        Ok(ClaimOutcome::TakenElsewhere) => Some(Outcome::Skipped("claimed_elsewhere")),
        Ok(ClaimOutcome::NotStarted) => Some(Outcome::NotStarted),
        Ok(ClaimOutcome::Deferred(until)) => {
            // Held past the point where it makes sense: dropped, not sent late.
            if message.send_before.is_some_and(|before| until >= before) {
                return Some(close(outbox, options, &message.id, Closing::Ineligible("capped")).await);
            }
            if let Err(error) = outbox.defer(message, until).await {
                tracing::warn!(function = options.function, message_id = %message.id, %error, "could not defer the message");
                return Some(Outcome::StoreError);
            }
            Some(Outcome::Held)
        }
        Ok(ClaimOutcome::Ineligible(reason)) => {
            Some(close(outbox, options, &message.id, Closing::Ineligible(reason)).await)
        }
        Err(error) => {
            tracing::warn!(function = options.function, message_id = %message.id, %error, "could not claim the message");
            Some(Outcome::StoreError)
        }
    }
}

/// Sends a claimed message and settles it; one the run can no longer send (its deadline,
/// or a configuration error) is released for the next run.
#[allow(clippy::too_many_arguments)]
async fn send_claimed<O: Outbox, M: Messenger>(
    outbox: &O,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &DispatchOptions,
    halted: &AtomicBool,
    message: DueMessage,
    claim: Claim,
) -> Outcome {
    // Every attempt ends within the claim's send span, where reconciliation looks for a
    // message whose answer was lost: one created later could be taken for absent and sent
    // again. Claims written slowly (a throttled table) or a long wait for the rate
    // limiter can use up the span; the message then goes back in line unsent.
    let claim_span_left = (claim.claimed_at + super::reconcile::SEND_SPAN - clock.now())
        .to_std()
        .unwrap_or_default();
    let deadline = deadline.earliest(Deadline::after(claim_span_left));
    if must_stop(deadline, halted) {
        let released = Settlement::Released {
            reason: "claimed, but the run stopped, or the claim's send span ended, before sending it".into(),
        };
        if let Err(error) = outbox.settle(&message, &claim, &released).await {
            // The claim stays held; the next run parks it for reconciliation.
            tracing::error!(function = options.function, message_id = %message.id, %error, "could not release the claim");
            return Outcome::StoreError;
        }
        return Outcome::NotStarted;
    }
    let sent = messenger.send(&message, deadline).await;
    let (settlement, outcome) = settlement_for(options.function, &message, sent, clock.now(), halted);
    if matches!(settlement, Settlement::Sent { .. }) && outbox.settles_in_batches() {
        return Outcome::ToSettle(Box::new(Settled {
            message,
            claim,
            settlement,
        }));
    }
    if let Err(error) = outbox.settle(&message, &claim, &settlement).await {
        // The claim stays held; the next run parks it for reconciliation, so this message
        // is never sent twice.
        tracing::error!(function = options.function, message_id = %message.id, ?settlement, %error, "could not record the outcome");
        return Outcome::StoreError;
    }
    if let Settlement::Failed {
        code: Some(TWILIO_OPTED_OUT),
        ..
    } = settlement
        && let Err(error) = outbox.record_opt_out(&message, clock.now()).await
    {
        // The message's own outcome is recorded: it counts as failed, not as a store error.
        tracing::warn!(function = options.function, message_id = %message.id, %error, "could not record Twilio's opt-out");
    }
    outcome
}

fn settlement_for(
    function: &'static str,
    message: &DueMessage,
    sent: Result<SentMessage, SendError>,
    now: DateTime<Utc>,
    halted: &AtomicBool,
) -> (Settlement, Outcome) {
    let to = message.customer_phone.masked();
    let id = &message.id;
    match sent {
        Ok(sent) => {
            tracing::info!(function, message_id = %id, kind = %id.kind, %to, message_sid = %sent.sid, "message sent");
            (
                Settlement::Sent {
                    message_sid: sent.sid,
                    sent_at: now,
                },
                Outcome::Sent,
            )
        }
        Err(error) if error.may_have_been_delivered() => {
            tracing::warn!(function, message_id = %id, %to, %error, "outcome unknown: parked for reconciliation");
            (
                Settlement::Unknown {
                    reason: error.to_string(),
                },
                Outcome::Unknown,
            )
        }
        Err(error) if error.is_configuration_error() => {
            tracing::error!(function, message_id = %id, %error, "Twilio configuration error: stopping the run");
            halted.store(true, Ordering::Relaxed);
            (
                Settlement::Released {
                    reason: error.to_string(),
                },
                Outcome::Released,
            )
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(function, message_id = %id, %to, %error, "not sent, released for the next run");
            (
                Settlement::Released {
                    reason: error.to_string(),
                },
                Outcome::Released,
            )
        }
        Err(error) => {
            let label = match error.twilio_code() {
                Some(code) => format!("twilio_{code}"),
                None => "rejected".to_string(),
            };
            tracing::warn!(function, message_id = %id, %to, %error, "Twilio refused the message for good");
            (
                Settlement::Failed {
                    code: error.twilio_code(),
                    reason: error.to_string(),
                },
                Outcome::Failed(label),
            )
        }
    }
}
