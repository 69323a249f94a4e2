//! What started a run: an EventBridge rule, EventBridge Scheduler, or a person with
//! `aws lambda invoke`. Every job reads its payload through [`RunRequest::from_payload`],
//! so all of them accept the same three shapes and refuse the same mistakes.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::domain::phone::{mask_phone_numbers, masked_excerpt};
use crate::runtime::config::json_kind;

/// How far a manual `now` may stray from the real clock (clock skew between a laptop and
/// AWS) and still be taken as "now".
const MANUAL_CLOCK_TOLERANCE: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerSource {
    /// An EventBridge rule's "Scheduled Event" envelope.
    EventBridgeRule,
    /// EventBridge Scheduler with the `{"scheduler": {...}}` input that template.yaml sets.
    Scheduler,
    /// A person or script: `{}`, `{"dryRun": true}`, `{"now": "...", "dryRun": true}` or
    /// `{"now": "<past>", "backfill": true}`.
    Manual,
}

/// One run's parameters, whatever shape the payload had.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub source: TriggerSource,
    /// When the scheduler meant the run to happen (absent for manual runs).
    pub scheduled_time: Option<DateTime<Utc>>,
    /// A manual run's stand-in for the current time, for choosing what is due. Never
    /// later than the real clock unless the run is a dry run, never earlier unless it is
    /// a dry run or a backfill. What a run stores (claims, send times) is always stamped
    /// with the real clock.
    pub now_override: Option<DateTime<Utc>>,
    /// Count what would be done, change nothing.
    pub dry_run: bool,
    /// The operator's stated intent to act for real as of a past `now` (a missed day).
    pub backfill: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("payload must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("EventBridge envelope: {0}")]
    BadEnvelope(String),
    #[error("EventBridge event is a {detail_type:?} from {event_source:?}, not a \"Scheduled Event\"")]
    NotScheduled { detail_type: String, event_source: String },
    #[error("scheduler payload: {0}")]
    BadSchedulerPayload(String),
    #[error("payload is not JSON this function can read: {0}")]
    NotJson(String),
    #[error("payload names `{0}` twice; JSON keeps only one of them, so what the run would do is a guess")]
    DuplicateField(String),
    #[error(
        "manual payload: {0} (accepted: {{\"now\": \"<RFC 3339 time>\", \"dryRun\": true|false, \"backfill\": true|false}})"
    )]
    BadManualPayload(String),
    #[error("erasure payload: {0} (accepted: {{\"phone\": \"+<country code and number>\", \"dryRun\": true|false}})")]
    BadErasureRequest(String),
    #[error("manual payload: `{0}` is null; leave the field out, or give it a value")]
    NullField(String),
    #[error("manual payload: `backfill` needs a `now` in the past, the day to run as")]
    BackfillWithoutNow,
    #[error(
        "manual payload: `now` ({now}) is earlier than the real clock ({real_now}); add \"dryRun\": \
         true to preview that moment, or \"backfill\": true to act for real as of it (what is \
         stored is stamped with the real time, and nothing too old by today's clock is sent)"
    )]
    NowInPast {
        now: DateTime<Utc>,
        real_now: DateTime<Utc>,
    },
    #[error(
        "manual payload: `now` ({now}) is later than the real clock ({real_now}); a clock in \
         the future would act on items that are not due yet. Add \"dryRun\": true to preview."
    )]
    NowInFuture {
        now: DateTime<Utc>,
        real_now: DateTime<Utc>,
    },
    #[error("manual payload: `now` ({now}) is outside the calendar of the shop's time zone: {reason}")]
    NowOutOfCalendar { now: DateTime<Utc>, reason: String },
}

/// A parse error of a payload, as it may be logged: serde quotes the value it refused,
/// which may be a customer's phone number.
pub fn quoted(error: &serde_json::Error) -> String {
    mask_phone_numbers(&error.to_string())
}

/// Text taken from a payload (a field's name, a value) as an error may quote it: phone
/// numbers masked, and no longer than a log line needs.
fn shown(text: &str) -> String {
    shortened(text, 100)
}

fn shortened(text: &str, max_chars: usize) -> String {
    let mut shown = masked_excerpt(text, max_chars);
    if text.chars().nth(max_chars).is_some() {
        shown.push('…');
    }
    shown
}

/// Reads a payload as `T`; a refusal names the field it is about (`` `dryRun`: invalid
/// type: string "yes", expected a boolean ``), quoted as [`quoted`] does.
pub fn read_as<T: serde::de::DeserializeOwned>(payload: &Value) -> Result<T, String> {
    // serde quotes the value it refused whole: a megabyte string would fill the log line.
    const MAX_REASON_CHARS: usize = 300;
    serde_path_to_error::deserialize(payload).map_err(|error| {
        let path = error.path().to_string();
        let reason = shortened(&error.inner().to_string(), MAX_REASON_CHARS);
        if path == "." {
            reason
        } else {
            // A field's name may be a phone number too (`{"+336…": 1}`).
            format!("`{}`: {reason}", shown(&path))
        }
    })
}

/// What an EventBridge rule's envelope holds (`replay-name` on a replay from an archive).
/// Anything else was written by hand, and would be silently ignored: run options such as
/// `dryRun` belong in a manual payload, not in a copied envelope.
const ENVELOPE_FIELDS: [&str; 10] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "replay-name",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerPayload {
    scheduler: SchedulerContext,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Fields are accepted so that a typo elsewhere is still refused.
struct SchedulerContext {
    scheduled_time: DateTime<Utc>,
    #[serde(default)]
    schedule_arn: Option<String>,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    attempt_number: Option<Value>,
}

const MANUAL_FIELDS: [&str; 3] = ["now", "dryRun", "backfill"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManualPayload {
    #[serde(default)]
    now: Option<DateTime<Utc>>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    backfill: bool,
}

/// A job's payload as Lambda hands it over, kept as raw JSON text so that the runtime
/// never refuses it before the job sees it: a payload the job cannot read (nested deeper
/// than serde_json's 128 levels, a number out of range such as `1e400`) is refused by
/// [`JobPayload::parse`] as an [`PayloadError::NotJson`], like any other bad payload.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct JobPayload(Box<serde_json::value::RawValue>);

impl JobPayload {
    pub fn parse(&self) -> Result<Value, PayloadError> {
        let text = self.0.get();
        serde_json::from_str::<UniqueFields>(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                let message = e.to_string();
                let name = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(name, _)| name);
                PayloadError::DuplicateField(shown(name))
            }
            _ => PayloadError::NotJson(quoted(&e)),
        })?;
        serde_json::from_str(text).map_err(|e| PayloadError::NotJson(quoted(&e)))
    }
}

/// A JSON document in which no object names a field twice. serde_json keeps the last of
/// two equal keys, so `{"dryRun": true, "dryRun": false}` would act for real.
struct UniqueFields;

impl<'de> Deserialize<'de> for UniqueFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueFieldsVisitor)
    }
}

struct UniqueFieldsVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueFieldsVisitor {
    type Value = UniqueFields;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueFields, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<UniqueFields>()?;
            if let Some(name) = seen.replace(name) {
                // The error's text is the field's name alone; `parse` quotes it.
                return Err(serde::de::Error::custom(name));
            }
        }
        Ok(UniqueFields)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueFields, A::Error> {
        while seq.next_element::<UniqueFields>()?.is_some() {}
        Ok(UniqueFields)
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
    fn visit_unit<E>(self) -> Result<UniqueFields, E> {
        Ok(UniqueFields)
    }
}

impl RunRequest {
    /// Reads a Lambda payload. `real_now` is the real clock, used only to refuse a manual
    /// `now` in the future.
    pub fn from_payload(payload: &Value, real_now: DateTime<Utc>) -> Result<Self, PayloadError> {
        let object = match payload {
            // `aws lambda invoke` without --payload sends nothing, which arrives as null.
            Value::Null => return Ok(Self::manual(None, false)),
            Value::Object(object) => object,
            other => return Err(PayloadError::NotAnObject(json_kind(other))),
        };

        if object.contains_key("detail-type") {
            if let Some(name) = object.keys().find(|name| !ENVELOPE_FIELDS.contains(&name.as_str())) {
                return Err(PayloadError::BadEnvelope(format!(
                    "unknown field `{}`; an envelope carries no run options: invoke with a manual payload \
                     such as {{\"dryRun\": true}} instead",
                    shown(name)
                )));
            }
            let event: EventBridgeEvent = read_as(payload).map_err(PayloadError::BadEnvelope)?;
            if event.detail_type != "Scheduled Event" || event.source != "aws.events" {
                return Err(PayloadError::NotScheduled {
                    detail_type: shown(&event.detail_type),
                    event_source: shown(&event.source),
                });
            }
            return Ok(Self {
                source: TriggerSource::EventBridgeRule,
                scheduled_time: event.time,
                now_override: None,
                dry_run: false,
                backfill: false,
            });
        }

        if object.contains_key("scheduler") {
            let scheduler: SchedulerPayload = read_as(payload).map_err(PayloadError::BadSchedulerPayload)?;
            return Ok(Self {
                source: TriggerSource::Scheduler,
                scheduled_time: Some(scheduler.scheduler.scheduled_time),
                now_override: None,
                dry_run: false,
                backfill: false,
            });
        }

        // serde reads `null` as "absent" for an optional field: a `"now": null` left by
        // a script would silently run for real.
        // An unknown field, null or not, is refused below as unknown.
        if let Some(name) = MANUAL_FIELDS
            .into_iter()
            .find(|name| object.get(*name).is_some_and(Value::is_null))
        {
            return Err(PayloadError::NullField(shown(name)));
        }
        let manual: ManualPayload = read_as(payload).map_err(PayloadError::BadManualPayload)?;
        match manual.now {
            None if manual.backfill => return Err(PayloadError::BackfillWithoutNow),
            Some(now) if now > real_now + MANUAL_CLOCK_TOLERANCE && !manual.dry_run => {
                return Err(PayloadError::NowInFuture { now, real_now });
            }
            Some(now) if now < real_now - MANUAL_CLOCK_TOLERANCE && !manual.dry_run && !manual.backfill => {
                return Err(PayloadError::NowInPast { now, real_now });
            }
            _ => {}
        }
        Ok(Self {
            backfill: manual.backfill,
            ..Self::manual(manual.now, manual.dry_run)
        })
    }

    fn manual(now_override: Option<DateTime<Utc>>, dry_run: bool) -> Self {
        Self {
            source: TriggerSource::Manual,
            scheduled_time: None,
            now_override,
            dry_run,
            backfill: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn real_now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn parse(payload: Value) -> Result<RunRequest, PayloadError> {
        RunRequest::from_payload(&payload, real_now())
    }

    #[test]
    fn reads_the_eventbridge_scheduled_event_envelope() {
        let request = parse(json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-24T09:00:00Z",
            "region": "eu-west-3",
            "resources": ["arn:aws:events:eu-west-3:123456789012:rule/hourly"],
            "detail": {}
        }))
        .unwrap();
        assert_eq!(request.source, TriggerSource::EventBridgeRule);
        assert_eq!(request.scheduled_time, Some("2026-11-24T09:00:00Z".parse().unwrap()));
        assert!(!request.dry_run);
        assert_eq!(request.now_override, None);
    }

    #[test]
    fn refuses_run_options_slipped_into_an_envelope() {
        let err = parse(json!({
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "2026-11-24T09:00:00Z",
            "detail": {},
            "dryRun": true
        }))
        .unwrap_err();
        assert!(
            matches!(&err, PayloadError::BadEnvelope(reason) if reason.contains("`dryRun`")),
            "{err}"
        );
        let replayed = parse(json!({
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "2026-11-24T09:00:00Z",
            "detail": {},
            "replay-name": "missed-night"
        }));
        assert!(replayed.is_ok(), "an archive replay's envelope: {replayed:?}");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_refused_by_its_name() {
        for (payload, field) in [
            (json!({"dryRun": "yes"}), "`dryRun`"),
            (json!({"now": "tomorrow", "dryRun": true}), "`now`"),
            (json!({"backfill": 1}), "`backfill`"),
            (json!({"scheduler": {"scheduledTime": 12}}), "`scheduler.scheduledTime`"),
        ] {
            let err = parse(payload.clone()).unwrap_err().to_string();
            assert!(err.contains(field), "{payload}: {err}");
        }
    }

    #[test]
    fn refuses_eventbridge_events_that_are_not_schedules() {
        let err = parse(json!({
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "detail": {}
        }))
        .unwrap_err();
        assert!(matches!(err, PayloadError::NotScheduled { .. }), "{err}");
    }

    #[test]
    fn reads_the_scheduler_payload() {
        let request = parse(json!({"scheduler": {
            "scheduleArn": "arn:aws:scheduler:eu-west-3:123456789012:schedule/default/hourly",
            "scheduledTime": "2026-11-24T09:00:00Z",
            "executionId": "d5f1",
            "attemptNumber": "1"
        }}))
        .unwrap();
        assert_eq!(request.source, TriggerSource::Scheduler);
        assert_eq!(request.scheduled_time, Some("2026-11-24T09:00:00Z".parse().unwrap()));
    }

    #[test]
    fn reads_manual_payloads() {
        let empty = parse(json!({})).unwrap();
        assert_eq!(empty, RunRequest::manual(None, false));
        assert_eq!(parse(Value::Null).unwrap(), RunRequest::manual(None, false));

        let dry = parse(json!({"now": "2026-11-24T08:00:00+01:00", "dryRun": true})).unwrap();
        assert_eq!(dry.now_override, Some("2026-11-24T07:00:00Z".parse().unwrap()));
        assert!(dry.dry_run);
    }

    #[test]
    fn refuses_a_misspelt_field_by_name() {
        let err = parse(json!({"dryrun": true})).unwrap_err().to_string();
        assert!(err.contains("unknown field `dryrun`"), "{err}");
        assert!(err.contains("dryRun"), "{err}");
    }

    #[test]
    fn a_phone_number_quoted_by_a_refusal_is_masked() {
        for payload in [
            json!({"now": "+33612345678"}),
            json!({"+33612345678": true}),
            json!({"now": 33612345678_u64}),
        ] {
            let err = parse(payload).unwrap_err().to_string();
            assert!(err.starts_with("manual payload:"), "{err}");
            assert!(!err.contains("12345678"), "{err}");
        }
        let long = "x".repeat(10_000);
        for payload in [
            json!({"+33612345678": null}),
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}, "+33612345678": 1}),
            json!({"detail-type": "+33612345678", "source": "aws.events", "detail": {}}),
            json!({"detail-type": "Scheduled Event", "source": "+33612345678", "detail": {}}),
            json!({"detail-type": long, "source": long, "detail": {}}),
        ] {
            let err = parse(payload).unwrap_err().to_string();
            assert!(!err.contains("12345678"), "{err}");
            assert!(err.len() < 500, "a quoted field is cut short: {} bytes", err.len());
        }
    }

    #[test]
    fn refuses_a_now_that_is_not_rfc3339() {
        let err = parse(json!({"now": "yesterday"})).unwrap_err().to_string();
        assert!(err.starts_with("manual payload:"), "{err}");
    }

    #[test]
    fn refuses_a_future_now_unless_dry_run() {
        let future = json!({"now": "2026-11-30T10:00:00Z"});
        assert!(matches!(parse(future).unwrap_err(), PayloadError::NowInFuture { .. }));
        let preview = parse(json!({"now": "2026-11-30T10:00:00Z", "dryRun": true})).unwrap();
        assert!(preview.dry_run);
    }

    #[test]
    fn refuses_payloads_that_are_not_objects() {
        assert_eq!(parse(json!([1])).unwrap_err(), PayloadError::NotAnObject("an array"));
        assert_eq!(parse(json!("run")).unwrap_err(), PayloadError::NotAnObject("a string"));
    }

    #[test]
    fn refuses_a_past_now_unless_dry_run_or_backfill() {
        let past = json!({"now": "2026-10-25T10:00:00Z"});
        assert!(matches!(parse(past).unwrap_err(), PayloadError::NowInPast { .. }));
        let preview = parse(json!({"now": "2026-10-25T10:00:00Z", "dryRun": true})).unwrap();
        assert!(preview.dry_run && !preview.backfill);
        let backfill = parse(json!({"now": "2026-10-25T10:00:00Z", "backfill": true})).unwrap();
        assert!(backfill.backfill && !backfill.dry_run);
        assert_eq!(backfill.now_override, Some("2026-10-25T10:00:00Z".parse().unwrap()));
        // Within the clock tolerance, a `now` is just "now".
        assert!(parse(json!({"now": "2026-11-24T09:59:30Z"})).is_ok());
    }

    #[test]
    fn a_backfill_needs_a_now_and_never_runs_ahead() {
        assert_eq!(
            parse(json!({"backfill": true})).unwrap_err(),
            PayloadError::BackfillWithoutNow
        );
        let future = json!({"now": "2026-11-30T10:00:00Z", "backfill": true});
        assert!(matches!(parse(future).unwrap_err(), PayloadError::NowInFuture { .. }));
    }

    #[test]
    fn refuses_a_null_field_by_name() {
        for (payload, name) in [
            (json!({"now": null}), "now"),
            (json!({"dryRun": null}), "dryRun"),
            (json!({"dryRun": true, "backfill": null}), "backfill"),
        ] {
            let error = parse(payload).unwrap_err();
            assert_eq!(error, PayloadError::NullField(name.into()));
            assert!(error.to_string().contains(&format!("`{name}` is null")), "{error}");
        }
    }

    #[test]
    fn a_field_named_twice_is_refused_by_name_at_any_depth() {
        for (text, name) in [
            (r#"{"dryRun": true, "dryRun": false}"#, "dryRun"),
            (
                r#"{"phone": "+33611111111", "dryRun": true, "phone": "+33622222222"}"#,
                "phone",
            ),
            (
                r#"{"scheduler": {"scheduledTime": "2026-11-24T10:00:00Z", "scheduledTime": "2026-11-25T10:00:00Z"}}"#,
                "scheduledTime",
            ),
            (r#"[{"a": 1}, {"b": [{"c": 1, "c": 2}]}]"#, "c"),
        ] {
            let payload: JobPayload = serde_json::from_str(text).expect("read as raw JSON");
            let error = payload.parse().unwrap_err();
            assert!(
                matches!(&error, PayloadError::DuplicateField(field) if field == name),
                "{text}: {error}"
            );
            assert!(error.to_string().contains(&format!("`{name}")), "{error}");
        }
        // The same name in two objects is no repetition.
        let fine: JobPayload = serde_json::from_str(r#"{"a": {"now": 1}, "b": {"now": 2}, "now": 3}"#).unwrap();
        assert!(fine.parse().is_ok());
    }

    #[test]
    fn a_refused_value_is_quoted_short() {
        let huge = "y".repeat(1_000_000);
        for payload in [
            json!({"dryRun": huge}),
            json!({ huge.clone(): true }),
            json!({"now": huge}),
        ] {
            let error = parse(payload).unwrap_err().to_string();
            assert!(error.starts_with("manual payload:"), "{}", &error[..200]);
            assert!(error.len() < 1_000, "{} bytes", error.len());
        }
    }

    #[test]
    fn an_unknown_field_is_refused_as_unknown_even_when_null() {
        let error = parse(json!({"dryrun": null})).unwrap_err().to_string();
        assert!(error.contains("unknown field `dryrun`"), "{error}");
    }

    #[test]
    fn a_payload_serde_json_cannot_hold_is_refused_not_lost() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for text in [deep.as_str(), r#"{"now": 1e400}"#, "1e400"] {
            let payload: JobPayload = serde_json::from_str(text).expect("read as raw JSON");
            let error = payload.parse().unwrap_err();
            assert!(matches!(error, PayloadError::NotJson(_)), "{text}: {error}");
        }
        let fine: JobPayload = serde_json::from_str(r#"{"dryRun": true}"#).unwrap();
        assert_eq!(fine.parse().unwrap(), json!({"dryRun": true}));
    }
}
