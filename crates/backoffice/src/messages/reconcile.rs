//! Settles, without a person, the messages whose send outcome is unknown: Twilio's own
//! Messages list says whether it has them (docs/decisions/reconciliation.md).
//!
//! For each parked message the list of WhatsApp messages this account sent to the
//! customer since the claim's day is read, and one is looked for that was created while
//! the claim could still send (from a little before the claim to [`SEND_SPAN`] after it)
//! and names the message's order or cart (every template and plain text carries its id).
//! - exactly one: **found**, settled as sent with its SID and time, so a reply still
//!   finds the order;
//! - none, once [`absent_after`] has passed since the claim (Twilio drops a message left
//!   in its queue longer than its `ValidityPeriod`, so none can still appear): **absent**,
//!   back in line;
//! - anything else (several candidates, a message in the window that does not name the
//!   subject, no claim time): moved aside for a person (docs/runbook.md), so no later run
//!   asks Twilio again. Absent is concluded only when nothing at all went to the customer
//!   around the claim, so this path never messages anyone twice.
//!
//! Twilio is asked once per message, after the wait: a message is looked up only once its
//! claim is older than [`absent_after`], when every answer is final. Twilio unreachable,
//! it stays parked for the next run.
//!
//! Every settlement is conditional on the message still being parked under the same
//! claim, so two runs reconciling at once settle it once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::engine::{MessageId, Messenger, Outbox, Siblings};
use crate::domain::phone::PhoneNumber;
use crate::report::counters::Counter;
use crate::runtime::clock::Clock;
use crate::runtime::job::Deadline;
use crate::store::StoreError;
use crate::twilio::{ListedMessage, LookupError};

/// How long after its claim a send can still create the message at Twilio: every
/// attempt's timeout and the waits between them, with room to spare.
pub const SEND_SPAN: TimeDelta = TimeDelta::minutes(5);
/// How far the clocks of Twilio and of this function may disagree.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(2);
/// Added to the wait, for Twilio's list to show what it has.
const LIST_DELAY: TimeDelta = TimeDelta::minutes(10);

/// How long after a claim a message missing from Twilio's list is surely never sent:
/// the send span, the longest a message may wait in Twilio's queue (`validity_period`),
/// and the list's own delay.
pub fn absent_after(validity_period: Duration) -> TimeDelta {
    SEND_SPAN + TimeDelta::from_std(validity_period).unwrap_or(TimeDelta::hours(10)) + LIST_DELAY
}

/// A message parked for reconciliation, as the outbox lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub id: MessageId,
    /// `None` when the stored number is not usable: left to a person.
    pub customer_phone: Option<PhoneNumber>,
    /// The claim it is parked under; every settlement requires it unchanged.
    pub claim_id: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
}

/// How a parked message is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Twilio has it.
    Sent {
        message_sid: String,
        sent_at: DateTime<Utc>,
    },
    /// Twilio does not have it and never will: back in line.
    Requeue { reason: String },
    /// Nothing can tell: moved aside for a person, never looked up again.
    ByHand { reason: String },
}

/// What Twilio's list says about one parked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Found {
        message_sid: String,
        sent_at: DateTime<Utc>,
    },
    Absent,
    /// Nothing can be concluded yet, or at all: left parked.
    Undecided(&'static str),
}

/// Reads the list's messages (those this account sent to the customer) for `parked`.
pub fn examine(parked: &Parked, listed: &[ListedMessage], now: DateTime<Utc>, absent_after: TimeDelta) -> Finding {
    let Some(claimed_at) = parked.claimed_at else {
        return Finding::Undecided("no_claim_time");
    };
    let from = claimed_at - CLOCK_SKEW;
    let until = claimed_at + SEND_SPAN + CLOCK_SKEW;
    let mut in_window = Vec::new();
    for message in listed {
        match message.created_at() {
            Some(at) if at >= from && at <= until => in_window.push((at, message)),
            Some(_) => {}
            None => return Finding::Undecided("unreadable_date"),
        }
    }
    let subject = parked.id.subject_id.as_str();
    let matching: Vec<_> = in_window
        .iter()
        .filter(|(_, message)| message.body.as_deref().is_some_and(|body| names(body, subject)))
        .collect();
    match matching.as_slice() {
        [(created_at, message)] => {
            return Finding::Found {
                message_sid: message.sid.clone(),
                sent_at: message.sent_at().unwrap_or(*created_at),
            };
        }
        [] => {}
        _ => return Finding::Undecided("several_matches"),
    }
    // Something went to the customer then, but it does not name the order or cart (a
    // template without the id, a redacted body): it may be this message. Never called absent.
    if !in_window.is_empty() {
        return Finding::Undecided("unmatched_in_window");
    }
    if now < claimed_at + absent_after {
        return Finding::Undecided("too_recent");
    }
    Finding::Absent
}

/// Whether `body` names `id` as a whole: `A-1` is not named by a body about `A-12`.
fn names(body: &str, id: &str) -> bool {
    let part_of_an_id = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    body.match_indices(id).any(|(at, _)| {
        let before = body[..at].chars().next_back();
        let after = body[at + id.len()..].chars().next();
        !before.is_some_and(part_of_an_id) && !after.is_some_and(part_of_an_id)
    })
}

fn by_hand(reason: &'static str) -> Resolution {
    Resolution::ByHand {
        reason: reason.to_owned(),
    }
}

/// The static label of a reason given to [`by_hand`].
fn undecided_label(reason: &str) -> &'static str {
    [
        "another_message_parked",
        "invalid_phone",
        "no_claim_time",
        "several_matches",
        "unmatched_in_window",
        "unreadable_date",
        "unreadable_sibling",
        "unusable_list",
    ]
    .into_iter()
    .find(|label| *label == reason)
    .unwrap_or("other")
}

/// What reconciliation did in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Twilio had them: settled as sent.
    pub found: u64,
    /// Twilio never had them: back in line (sent by this run if still due).
    pub requeued: u64,
    /// Not settled, by reason: still parked (`too_recent`, `twilio_unreachable`) or moved
    /// aside for a person (`several_matches`, `unmatched_in_window`...).
    pub undecided: BTreeMap<&'static str, u64>,
    /// Moved aside for a person by this run.
    pub left_for_a_person: u64,
    /// Settled by another run first.
    pub taken_elsewhere: u64,
    /// Twilio list requests made.
    pub list_requests: u64,
}

impl ReconcileReport {
    fn undecided(&mut self, reason: &'static str) {
        *self.undecided.entry(reason).or_default() += 1;
    }
}

/// Settles what it can of the parked messages; stops at the deadline. A store error
/// reading the parked messages aborts; one settling a message leaves it parked.
pub async fn reconcile<O: Outbox, M: Messenger>(
    outbox: &O,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    function: &'static str,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    let now = clock.now();
    // Once Twilio's list cannot be reached, the run asks no more: the sends come first.
    let mut twilio_down = false;
    // SIDs this run settled messages with: none of them is another parked message's.
    let mut settled_sids = std::collections::HashSet::new();
    for parked in outbox.parked().await? {
        if deadline.reached() {
            report.undecided("deadline");
            continue;
        }
        if twilio_down {
            report.undecided("twilio_unreachable");
            continue;
        }
        let resolution = match (&parked.customer_phone, parked.claimed_at) {
            (None, _) => by_hand("invalid_phone"),
            (_, None) => by_hand("no_claim_time"),
            // Before the wait is over an answer may still change: not asked yet.
            (Some(_), Some(claimed_at)) if now < claimed_at + messenger.absent_after() => {
                report.undecided("too_recent");
                continue;
            }
            (Some(phone), Some(claimed_at)) => match messenger.sent_to(phone, claimed_at - CLOCK_SKEW).await {
                // What a later run may read (an outage, a rate limit, credentials being
                // fixed): left parked.
                Err(error @ (LookupError::Unreachable(_) | LookupError::Refused { .. })) => {
                    tracing::warn!(function, message_id = %parked.id, %error, "reconciliation: Twilio's list unavailable, left parked");
                    report.undecided("twilio_unreachable");
                    twilio_down = true;
                    continue;
                }
                // A list that will read the same next time: for a person.
                Err(error) => {
                    tracing::warn!(function, message_id = %parked.id, %error, "reconciliation: Twilio's list cannot be used");
                    by_hand("unusable_list")
                }
                Ok(list) => {
                    report.list_requests += u64::from(list.requests);
                    // What Twilio sent under a SID another message of the same order or
                    // cart holds is that message, not this one (a ready-for-pickup sent
                    // minutes after a confirmation that never reached Twilio).
                    match outbox.siblings(&parked).await {
                        Err(error) => {
                            tracing::warn!(function, message_id = %parked.id, %error, "reconciliation: the other messages of the subject cannot be read, left parked");
                            report.undecided("store_error");
                            continue;
                        }
                        // One that will read the same next time: for a person.
                        Ok(Siblings {
                            unreadable: Some(unreadable),
                            ..
                        }) => {
                            tracing::warn!(function, message_id = %parked.id, error = %unreadable, "reconciliation: another message of the subject is unreadable");
                            by_hand("unreadable_sibling")
                        }
                        Ok(siblings) => {
                            let listed: Vec<_> = list
                                .messages
                                .into_iter()
                                .filter(|message| {
                                    !siblings.sids.contains(&message.sid) && !settled_sids.contains(&message.sid)
                                })
                                .collect();
                            match examine(&parked, &listed, now, messenger.absent_after()) {
                                // Two messages of the subject parked: the one found may be either.
                                Finding::Found { .. } if siblings.parked => by_hand("another_message_parked"),
                                Finding::Found { message_sid, sent_at } => Resolution::Sent { message_sid, sent_at },
                                Finding::Absent => Resolution::Requeue {
                                    reason: "reconciled: Twilio never had the message".into(),
                                },
                                Finding::Undecided("too_recent") => {
                                    report.undecided("too_recent");
                                    continue;
                                }
                                Finding::Undecided(reason) => by_hand(reason),
                            }
                        }
                    }
                }
            },
        };
        let to = parked.customer_phone.as_ref().map(|phone| phone.masked().to_string());
        match outbox.resolve(&parked, &resolution).await {
            Ok(true) => {
                let outcome = match &resolution {
                    Resolution::Sent { message_sid, sent_at } => {
                        report.found += 1;
                        settled_sids.insert(message_sid.clone());
                        // Never counted when its send's answer was lost: counted now, on
                        // the day Twilio sent it.
                        let sent = [(Counter::Sent(parked.id.kind), 1)];
                        if let Err(error) = outbox.count(*sent_at, &sent).await {
                            tracing::error!(function, message_id = %parked.id, %error, "the day's counters were not updated");
                        }
                        "found at Twilio: settled as sent"
                    }
                    Resolution::Requeue { .. } => {
                        report.requeued += 1;
                        "absent at Twilio: back in line"
                    }
                    Resolution::ByHand { reason } => {
                        report.left_for_a_person += 1;
                        report.undecided(undecided_label(reason));
                        "cannot be decided: left for a person"
                    }
                };
                tracing::info!(function, message_id = %parked.id, to, ?resolution, "reconciliation: {outcome}");
            }
            Ok(false) => report.taken_elsewhere += 1,
            Err(error) => {
                tracing::warn!(function, message_id = %parked.id, %error, "reconciliation could not be recorded");
                report.undecided("store_error");
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::kind::Kind;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_body_names_an_id_only_as_a_whole() {
        assert!(names("Commande A-1 prête.", "A-1"));
        assert!(names("A-1", "A-1"));
        assert!(names("(A-1)", "A-1"));
        assert!(names("A-12 puis A-1 !", "A-1"), "any whole occurrence");
        assert!(!names("Commande A-12 prête.", "A-1"));
        assert!(!names("Commande XA-1", "A-1"));
        assert!(!names("Commande A-1_b", "A-1"));
    }

    fn parked(claimed_at: &str) -> Parked {
        Parked {
            id: MessageId {
                kind: Kind::PaymentReminder,
                subject_id: "A-1001".into(),
            },
            customer_phone: Some(PhoneNumber::parse("+33612345678").unwrap()),
            claim_id: Some("run-1".into()),
            claimed_at: Some(at(claimed_at)),
        }
    }

    fn listed(sid: &str, created: &str, body: Option<&str>) -> ListedMessage {
        ListedMessage {
            sid: sid.into(),
            to: Some("whatsapp:+33612345678".into()),
            from: Some("whatsapp:+14155550100".into()),
            body: body.map(str::to_owned),
            direction: Some("outbound-api".into()),
            status: Some("delivered".into()),
            messaging_service_sid: None,
            date_created: Some(at(created).to_rfc2822()),
            date_sent: None,
        }
    }

    const WAIT: TimeDelta = TimeDelta::minutes(30);

    #[test]
    fn the_one_message_naming_the_order_in_the_claim_window_is_found() {
        let messages = [
            listed("SM-other", "2026-12-03T09:00:10Z", Some("Your order B-7 is ready")),
            listed(
                "SM-it",
                "2026-12-03T09:00:03Z",
                Some("Reminder: order A-1001 awaits payment"),
            ),
            listed("SM-yesterday", "2026-12-02T09:00:03Z", Some("order A-1001")),
        ];
        let finding = examine(
            &parked("2026-12-03T09:00:00Z"),
            &messages,
            at("2026-12-03T09:01:00Z"),
            WAIT,
        );
        assert_eq!(
            finding,
            Finding::Found {
                message_sid: "SM-it".into(),
                sent_at: at("2026-12-03T09:00:03Z"),
            }
        );
    }

    #[test]
    fn nothing_in_the_window_is_absent_only_once_the_wait_is_over() {
        let messages = [listed("SM-old", "2026-12-02T09:00:03Z", Some("order A-1001"))];
        let claim = parked("2026-12-03T09:00:00Z");
        assert_eq!(
            examine(&claim, &messages, at("2026-12-03T09:29:59Z"), WAIT),
            Finding::Undecided("too_recent")
        );
        assert_eq!(
            examine(&claim, &messages, at("2026-12-03T09:30:00Z"), WAIT),
            Finding::Absent
        );
    }

    #[test]
    fn what_cannot_be_told_apart_is_left_to_a_person() {
        let claim = parked("2026-12-03T09:00:00Z");
        let late = at("2026-12-04T09:00:00Z");
        let two = [
            listed("SM-1", "2026-12-03T09:00:01Z", Some("order A-1001")),
            listed("SM-2", "2026-12-03T09:00:02Z", Some("order A-1001 again")),
        ];
        assert_eq!(examine(&claim, &two, late, WAIT), Finding::Undecided("several_matches"));
        let redacted = [listed("SM-1", "2026-12-03T09:00:01Z", None)];
        assert_eq!(
            examine(&claim, &redacted, late, WAIT),
            Finding::Undecided("unmatched_in_window")
        );
        let without_the_id = [listed(
            "SM-1",
            "2026-12-03T09:00:01Z",
            Some("You left items in your cart"),
        )];
        assert_eq!(
            examine(&claim, &without_the_id, late, WAIT),
            Finding::Undecided("unmatched_in_window")
        );
        let no_time = Parked {
            claimed_at: None,
            ..claim.clone()
        };
        assert_eq!(examine(&no_time, &[], late, WAIT), Finding::Undecided("no_claim_time"));
    }

    #[test]
    fn the_wait_covers_twilios_queue() {
        assert_eq!(absent_after(Duration::from_secs(900)), TimeDelta::minutes(30));
    }
}
