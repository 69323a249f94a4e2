//! What a change to an order or a cart schedules: pure functions of the item's old and new
//! images (a DynamoDB stream record). A kind is scheduled when its trigger becomes true,
//! not each time a record shows it true, so replays and the back office's own writes
//! schedule nothing new; the Messages table's conditional writes make a duplicate harmless
//! anyway.

use chrono::{DateTime, TimeDelta, Utc};

use super::engine::MessageId;
use super::kind::{Kind, KindsConfig};
use super::quiet::QuietHours;
use crate::domain::phone::PhoneNumber;
use crate::store::dynamo::{Item, number, string};

/// How late a message may still go out; later it is closed as `too_old`: an order
/// confirmation a day late reads as a bug, not as service.
pub const SEND_WITHIN: TimeDelta = TimeDelta::hours(24);

/// A review reminder still makes sense a week late (the caps may hold it that long).
pub const REMINDER_SEND_WITHIN: TimeDelta = TimeDelta::days(7);

fn send_within(kind: Kind) -> TimeDelta {
    match kind {
        Kind::ReviewReminder => REMINDER_SEND_WITHIN,
        _ => SEND_WITHIN,
    }
}

/// A message to put in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub id: MessageId,
    pub customer_phone: PhoneNumber,
    pub customer_name: Option<String>,
    pub due_at: DateTime<Utc>,
    pub send_before: DateTime<Utc>,
}

/// One write a change asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Puts the message in line unless it exists.
    Schedule(Scheduled),
    /// Moves a waiting message's due time later (a cart touched again is idle again), or
    /// puts it in line if there is none (a cart from before the streams, touched now).
    Postpone(Scheduled),
    /// Closes a waiting message: its subject will never qualify again.
    Drop { id: MessageId, reason: &'static str },
}

/// Why a change schedules nothing although it might have: counted, never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Unplannable {
    NoCustomerPhone,
    InvalidCustomerPhone,
}

fn time(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    string(item, name)
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn is(item: &Item, name: &str, value: &str) -> bool {
    string(item, name).as_deref() == Some(value)
}

/// An order still going: not cancelled, not refunded.
fn live(order: &Item) -> bool {
    !is(order, "status", "cancelled") && !is(order, "paymentStatus", "refunded")
}

/// When each order kind's trigger holds on this image, and from when it counts.
fn order_trigger(kind: Kind, order: &Item, changed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !live(order) {
        return None;
    }
    let created_at = || time(order, "createdAt").unwrap_or(changed_at);
    let ready_at = || time(order, "readyAt").unwrap_or(changed_at);
    match kind {
        Kind::OrderConfirmation => Some(created_at()),
        Kind::PaymentReminder => {
            (is(order, "paymentStatus", "pending") && !is(order, "status", "completed")).then(created_at)
        }
        Kind::ReadyForPickup | Kind::PickupReminder => is(order, "status", "ready_pickup").then(ready_at),
        Kind::SatisfactionCheck => {
            if is(order, "status", "completed") {
                time(order, "completedAt")
            } else {
                None
            }
        }
        Kind::ReviewReminder => {
            if is(order, "reviewRequestStatus", "sent") {
                time(order, "reviewRequestedAt")
            } else {
                None
            }
        }
        Kind::ReviewRequest | Kind::AbandonedCart => None,
    }
}

/// The kinds an order change may schedule (the review request has its own queue).
pub const ORDER_KINDS: [Kind; 6] = [
    Kind::OrderConfirmation,
    Kind::PaymentReminder,
    Kind::ReadyForPickup,
    Kind::PickupReminder,
    Kind::SatisfactionCheck,
    Kind::ReviewReminder,
];

fn customer(item: &Item) -> Result<(PhoneNumber, Option<String>), Unplannable> {
    let phone = string(item, "customerPhone").ok_or(Unplannable::NoCustomerPhone)?;
    let phone = PhoneNumber::parse(&phone).map_err(|_| Unplannable::InvalidCustomerPhone)?;
    let name = string(item, "customerName").filter(|n| !n.trim().is_empty());
    Ok((phone, name))
}

/// What an order's change schedules. `old` is `None` for a new order; `changed_at` is the
/// record's time, used where the writer left a time out.
pub fn plan_order(
    old: Option<&Item>,
    new: &Item,
    changed_at: DateTime<Utc>,
    kinds: &KindsConfig,
    quiet: &QuietHours,
) -> Result<Vec<Step>, Unplannable> {
    let Some(order_id) = string(new, "orderId") else {
        return Ok(Vec::new());
    };
    let id = |kind| MessageId {
        kind,
        subject_id: order_id.clone(),
    };
    if !live(new) {
        if old.is_some_and(|old| !live(old)) {
            return Ok(Vec::new());
        }
        let reason = if is(new, "status", "cancelled") {
            "cancelled"
        } else {
            "refunded"
        };
        return Ok(ORDER_KINDS
            .iter()
            .filter(|kind| kinds.enabled(**kind).is_some())
            .map(|kind| Step::Drop { id: id(*kind), reason })
            .collect());
    }
    let mut steps = Vec::new();
    let mut contact = None;
    for kind in ORDER_KINDS {
        let Some(settings) = kinds.enabled(kind) else { continue };
        let Some(since) = order_trigger(kind, new, changed_at) else {
            continue;
        };
        if old.is_some_and(|old| order_trigger(kind, old, changed_at).is_some()) {
            continue;
        }
        let (customer_phone, customer_name) = match &contact {
            Some(contact) => Clone::clone(contact),
            None => contact.insert(customer(new)?).clone(),
        };
        let due_at = quiet.next_send_time(
            kind,
            since + TimeDelta::from_std(settings.delay).unwrap_or(TimeDelta::MAX),
        );
        steps.push(Step::Schedule(Scheduled {
            id: id(kind),
            customer_phone,
            customer_name,
            due_at,
            send_before: due_at + send_within(kind),
        }));
    }
    Ok(steps)
}

/// What a cart's change schedules: an abandoned-cart reminder once the cart has been idle
/// for the kind's delay, before it expires; postponed when the cart is touched again
/// (`updatedAt`), dropped when it becomes an order (`orderId` set on the cart).
pub fn plan_cart(
    old: Option<&Item>,
    new: &Item,
    changed_at: DateTime<Utc>,
    kinds: &KindsConfig,
    quiet: &QuietHours,
) -> Result<Vec<Step>, Unplannable> {
    let Some(cart_id) = string(new, "cartId") else {
        return Ok(Vec::new());
    };
    let Some(settings) = kinds.enabled(Kind::AbandonedCart) else {
        return Ok(Vec::new());
    };
    let id = MessageId {
        kind: Kind::AbandonedCart,
        subject_id: cart_id,
    };
    if new.contains_key("orderId") {
        return Ok(if old.is_some_and(|old| old.contains_key("orderId")) {
            Vec::new()
        } else {
            vec![Step::Drop {
                id,
                reason: "converted",
            }]
        });
    }
    if !new.contains_key("customerPhone") {
        return Ok(Vec::new());
    }
    let last_touched = |cart: &Item| time(cart, "updatedAt").or_else(|| time(cart, "createdAt"));
    let touched = last_touched(new).unwrap_or(changed_at);
    let due_at = quiet.next_send_time(
        Kind::AbandonedCart,
        touched + TimeDelta::from_std(settings.delay).unwrap_or(TimeDelta::MAX),
    );
    let expires_at = number::<i64>(new, "expiresAt").and_then(|epoch| DateTime::from_timestamp(epoch, 0));
    let send_before = expires_at.map_or(due_at + SEND_WITHIN, |expiry| expiry.min(due_at + SEND_WITHIN));
    if due_at >= send_before {
        // Idle long enough only after it expires: no reminder.
        return Ok(Vec::new());
    }
    let was_waiting = old.is_some_and(|old| old.contains_key("customerPhone") && !old.contains_key("orderId"));
    if was_waiting && old.and_then(last_touched) == Some(touched) {
        return Ok(Vec::new());
    }
    let (customer_phone, customer_name) = customer(new)?;
    let scheduled = Scheduled {
        id,
        customer_phone,
        customer_name,
        due_at,
        send_before,
    };
    Ok(vec![if was_waiting {
        Step::Postpone(scheduled)
    } else {
        Step::Schedule(scheduled)
    }])
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::store::dynamo::{n, s};

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), s(*v))).collect()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn never() -> QuietHours {
        QuietHours::never(jiff::tz::TimeZone::UTC)
    }

    const NEW_ORDER: &[(&str, &str)] = &[
        ("orderId", "o-1"),
        ("customerPhone", "+33612345678"),
        ("customerName", "Ana Lima"),
        ("status", "pending"),
        ("paymentStatus", "pending"),
        ("createdAt", "2026-12-01T10:00:00Z"),
    ];

    fn scheduled(steps: &[Step]) -> Vec<(Kind, DateTime<Utc>)> {
        steps
            .iter()
            .filter_map(|step| match step {
                Step::Schedule(s) => Some((s.id.kind, s.due_at)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_unpaid_order_gets_its_confirmation_now_and_a_payment_reminder_a_day_later() {
        let steps = plan_order(
            None,
            &item(NEW_ORDER),
            at("2026-12-01T10:00:01Z"),
            &KindsConfig::defaults(),
            &never(),
        )
        .unwrap();
        assert_eq!(
            scheduled(&steps),
            vec![
                (Kind::OrderConfirmation, at("2026-12-01T10:00:00Z")),
                (Kind::PaymentReminder, at("2026-12-02T10:00:00Z")),
            ]
        );
    }

    #[test]
    fn a_record_that_changes_nothing_the_trigger_sees_schedules_nothing() {
        let order = item(NEW_ORDER);
        let mut with_derived = order.clone();
        with_derived.insert("someIndexKey".into(), s("07"));
        let steps = plan_order(
            Some(&order),
            &with_derived,
            at("2026-12-01T10:00:02Z"),
            &KindsConfig::defaults(),
            &never(),
        );
        assert_eq!(steps, Ok(Vec::new()));
    }

    #[test]
    fn ready_for_pickup_counts_from_ready_at_and_the_reminder_follows_48_hours_later() {
        let old = item(NEW_ORDER);
        let mut ready = old.clone();
        ready.insert("status".into(), s("ready_pickup"));
        ready.insert("paymentStatus".into(), s("paid"));
        ready.insert("readyAt".into(), s("2026-12-01T15:00:00+01:00"));
        let steps = plan_order(
            Some(&old),
            &ready,
            at("2026-12-01T14:00:05Z"),
            &KindsConfig::defaults(),
            &never(),
        )
        .unwrap();
        assert_eq!(
            scheduled(&steps),
            vec![
                (Kind::ReadyForPickup, at("2026-12-01T14:00:00Z")),
                (Kind::PickupReminder, at("2026-12-03T14:00:00Z")),
            ]
        );
    }

    #[test]
    fn a_sent_review_request_schedules_its_reminder_and_satisfaction_check_only_when_enabled() {
        let mut completed = item(NEW_ORDER);
        completed.insert("status".into(), s("completed"));
        completed.insert("paymentStatus".into(), s("paid"));
        completed.insert("completedAt".into(), s("2026-12-02T09:00:00Z"));
        let mut requested = completed.clone();
        requested.insert("reviewRequestStatus".into(), s("sent"));
        requested.insert("reviewRequestedAt".into(), s("2026-12-09T10:00:00Z"));
        let steps = plan_order(
            Some(&completed),
            &requested,
            at("2026-12-09T10:00:01Z"),
            &KindsConfig::defaults(),
            &never(),
        );
        assert_eq!(
            scheduled(&steps.unwrap()),
            vec![(Kind::ReviewReminder, at("2026-12-16T10:00:00Z"))]
        );
        let with_check = KindsConfig::defaults().with(Kind::SatisfactionCheck, |s| s.enabled = true);
        let steps = plan_order(
            Some(&item(NEW_ORDER)),
            &completed,
            at("2026-12-02T09:00:01Z"),
            &with_check,
            &never(),
        );
        assert_eq!(
            scheduled(&steps.unwrap()),
            vec![(Kind::SatisfactionCheck, at("2026-12-03T09:00:00Z"))]
        );
    }

    #[test]
    fn a_cancelled_or_refunded_order_drops_every_waiting_message_once() {
        let old = item(NEW_ORDER);
        let mut cancelled = old.clone();
        cancelled.insert("status".into(), s("cancelled"));
        let steps = plan_order(
            Some(&old),
            &cancelled,
            at("2026-12-01T11:00:00Z"),
            &KindsConfig::defaults(),
            &never(),
        )
        .unwrap();
        assert!(steps.iter().all(|step| matches!(
            step,
            Step::Drop {
                reason: "cancelled",
                ..
            }
        )));
        assert_eq!(steps.len(), 5, "every enabled order kind");
        assert_eq!(
            plan_order(
                Some(&cancelled),
                &cancelled,
                at("2026-12-01T11:00:01Z"),
                &KindsConfig::defaults(),
                &never(),
            ),
            Ok(Vec::new())
        );
        let mut refunded = old.clone();
        refunded.insert("paymentStatus".into(), s("refunded"));
        let steps = plan_order(
            Some(&old),
            &refunded,
            at("2026-12-01T11:00:00Z"),
            &KindsConfig::defaults(),
            &never(),
        )
        .unwrap();
        assert!(matches!(steps[0], Step::Drop { reason: "refunded", .. }));
    }

    #[test]
    fn an_order_without_a_usable_phone_says_why() {
        let mut no_phone = item(NEW_ORDER);
        no_phone.remove("customerPhone");
        assert_eq!(
            plan_order(
                None,
                &no_phone,
                at("2026-12-01T10:00:00Z"),
                &KindsConfig::defaults(),
                &never()
            ),
            Err(Unplannable::NoCustomerPhone)
        );
        no_phone.insert("customerPhone".into(), s("0612"));
        assert_eq!(
            plan_order(
                None,
                &no_phone,
                at("2026-12-01T10:00:00Z"),
                &KindsConfig::defaults(),
                &never()
            ),
            Err(Unplannable::InvalidCustomerPhone)
        );
    }

    fn cart(pairs: &[(&str, &str)], expires_at: i64) -> Item {
        let mut cart = item(pairs);
        cart.insert("expiresAt".into(), n(expires_at));
        cart
    }

    #[test]
    fn an_idle_cart_gets_one_reminder_an_hour_later_postponed_when_touched_and_dropped_when_ordered() {
        let expiry = at("2026-12-02T10:00:00Z").timestamp();
        let new = cart(
            &[
                ("cartId", "c-1"),
                ("customerPhone", "+33612345678"),
                ("createdAt", "2026-12-01T10:00:00Z"),
            ],
            expiry,
        );
        let kinds = KindsConfig::defaults();
        let steps = plan_cart(None, &new, at("2026-12-01T10:00:01Z"), &kinds, &never()).unwrap();
        assert_eq!(
            scheduled(&steps),
            vec![(Kind::AbandonedCart, at("2026-12-01T11:00:00Z"))]
        );

        let mut touched = new.clone();
        touched.insert("updatedAt".into(), s("2026-12-01T10:30:00Z"));
        let steps = plan_cart(Some(&new), &touched, at("2026-12-01T10:30:01Z"), &kinds, &never()).unwrap();
        assert!(matches!(&steps[..], [Step::Postpone(s)] if s.due_at == at("2026-12-01T11:30:00Z")));

        let mut ordered = touched.clone();
        ordered.insert("orderId".into(), s("o-1"));
        let steps = plan_cart(Some(&touched), &ordered, at("2026-12-01T10:40:00Z"), &kinds, &never()).unwrap();
        assert!(matches!(
            &steps[..],
            [Step::Drop {
                reason: "converted",
                ..
            }]
        ));
        assert_eq!(
            plan_cart(Some(&ordered), &ordered, at("2026-12-01T10:41:00Z"), &kinds, &never()),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_cart_that_expires_before_it_is_idle_long_enough_or_has_no_phone_gets_nothing() {
        let kinds = KindsConfig::defaults();
        let soon = cart(
            &[
                ("cartId", "c-1"),
                ("customerPhone", "+33612345678"),
                ("createdAt", "2026-12-01T10:00:00Z"),
            ],
            at("2026-12-01T10:30:00Z").timestamp(),
        );
        assert_eq!(
            plan_cart(None, &soon, at("2026-12-01T10:00:01Z"), &kinds, &never()),
            Ok(Vec::new())
        );
        let anonymous = cart(
            &[("cartId", "c-2"), ("createdAt", "2026-12-01T10:00:00Z")],
            i64::from(u32::MAX),
        );
        assert_eq!(
            plan_cart(None, &anonymous, at("2026-12-01T10:00:01Z"), &kinds, &never()),
            Ok(Vec::new())
        );
        let mut numeric = anonymous.clone();
        numeric.insert("customerPhone".into(), AttributeValue::N("33612345678".into()));
        assert_eq!(
            plan_cart(None, &numeric, at("2026-12-01T10:00:01Z"), &kinds, &never()),
            Err(Unplannable::NoCustomerPhone)
        );
    }
}
