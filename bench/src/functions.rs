//! The function binaries on the Runtime API stand-in: the time from exec to the first poll
//! (init), a cold and a warm invocation of one process, and the webhook's peak RSS under an
//! unauthenticated many-parameter flood.

use std::path::Path;
use std::time::{Duration, Instant};

use backoffice::jobs::record_review_reply::{SignatureValidator, signed_twilio_post};
use backoffice::twilio::AuthToken;
use bench::results::{Float, Invocations, Webhook};
use bench::{Failure, peak_rss_kib_of};
use devstack::twilio_standin::{LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, LOCAL_TEMPLATE_SID, LOCAL_WHATSAPP_FROM};
use serde_json::{Value, json};

use crate::runtime_api::{Call, RuntimeApi};

/// How long a started function may take to poll, and an invocation to answer.
const POLL_WITHIN: Duration = Duration::from_secs(10);
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The environment Lambda gives a function, against the emulator at `endpoint`.
pub fn function_env(endpoint: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_REGION", "eu-west-3".into()),
        ("AWS_DEFAULT_REGION", "eu-west-3".into()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_SESSION_TOKEN", "local".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.into()),
        ("CARTS_TABLE", "bench-b-carts".into()),
        ("ORDERS_TABLE", "bench-r-orders".into()),
        ("REVIEWS_TABLE", "bench-r-reviews".into()),
        ("MESSAGES_TABLE", "bench-l-messages".into()),
        ("CONSENT_TABLE", "bench-l-consent".into()),
        ("STATS_TABLE", "bench-rp-large-stats".into()),
        ("QUIET_HOURS_START", "00:00".into()),
        ("QUIET_HOURS_END", "00:00".into()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.into()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.into()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.into()),
        ("TWILIO_API_BASE_URL", "http://127.0.0.1:9".into()),
        ("REVIEW_TEMPLATE_SID", LOCAL_TEMPLATE_SID.into()),
        ("REPLY_WEBHOOK_URL", REPLY_URL.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Ok(home) = std::env::var("HOME") {
        env.push(("HOME".into(), home));
    }
    env
}

pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// From exec to the first `GET /runtime/invocation/next`, `starts` times, in ms.
pub async fn time_to_first_poll(binary: &Path, env: &[(String, String)], starts: usize) -> Result<Vec<f64>, Failure> {
    let mut api = RuntimeApi::start().await?;
    let mut samples = Vec::with_capacity(starts);
    for _ in 0..starts {
        let spawned_at = Instant::now();
        let mut function = api.spawn(binary, env)?;
        let first = api
            .recv(POLL_WITHIN, || {
                format!("{} never polled the Runtime API", binary.display())
            })
            .await?;
        if first.call != Call::Next {
            return Err(format!("unexpected first request {first}").into());
        }
        samples.push(first.at.duration_since(spawned_at).as_secs_f64() * 1000.0);
        function.kill().await?;
        drop(first);
    }
    Ok(samples)
}

/// Two invocations in a row of one process (dry runs, so they change nothing): the first
/// pays for the clients' lazy set-up and first connection, the second is warm. Their
/// difference is what a warm-up call during init could move out of the first invocation.
pub async fn cold_and_warm_invocations(
    binary: &Path,
    env: &[(String, String)],
    name: &str,
) -> Result<Invocations, Failure> {
    let mut api = RuntimeApi::start().await?;
    let (payload, payload_summary) = invocation_payload(name);
    let runs = 5;
    let mut per_process = Vec::new();
    for _ in 0..runs {
        let mut function = api.spawn(binary, env)?;
        let mut durations = Vec::new();
        for invocation in 0..2 {
            let next = api.recv(POLL_WITHIN, || format!("{name} did not poll")).await?;
            if next.call != Call::Next {
                return Err(format!("{name}: unexpected {next}").into());
            }
            let request_id = format!("bench-{invocation}");
            let sent_at = Instant::now();
            next.send_event(&request_id, &payload);
            let answer = api.recv(ANSWER_WITHIN, || format!("{name} did not answer")).await?;
            if !answer.is_response_to(&request_id) {
                return Err(format!("{name}: invocation failed: {answer}").into());
            }
            durations.push(answer.at.duration_since(sent_at).as_secs_f64() * 1000.0);
            answer.accept();
        }
        per_process.push(durations);
        function.kill().await?;
        // Drop the pending `/next` of the killed process.
        api.drain(Duration::from_millis(50)).await;
    }
    let first: Vec<f64> = per_process.iter().map(|d| d[0]).collect();
    let second: Vec<f64> = per_process.iter().map(|d| d[1]).collect();
    Ok(Invocations {
        payload: payload_summary,
        first_invocation_median_ms: Float(median(&first)),
        second_invocation_median_ms: Float(median(&second)),
        processes: runs,
    })
}

/// The flood body: `a&a&…`, tiny parameters that cost the most once decoded.
const FLOOD_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Peak RSS of one record-review-reply process after a signed reply, then after 3 MB
/// many-parameter bodies without a signature and with a well-formed wrong one. What the
/// floods add over the signed reply is the event itself (the runtime's copy of the JSON
/// and the body string), nothing per parameter.
pub async fn webhook_flood_rss(binary: &Path, env: &[(String, String)]) -> Result<Webhook, Failure> {
    let mut api = RuntimeApi::start().await?;
    let mut function = api.spawn(binary, env)?;
    let pid = function.id().ok_or("record-review-reply exited")?;
    let (signed, _) = invocation_payload("record-review-reply");
    let flood = |signature: Option<&str>| {
        let mut event = signed.clone();
        event["body"] = json!("a&".repeat(FLOOD_BODY_BYTES / 2));
        match signature {
            Some(signature) => event["headers"]["x-twilio-signature"] = json!(signature),
            None => {
                event["headers"].as_object_mut().map(|h| h.remove("x-twilio-signature"));
            }
        }
        event
    };
    let mut peaks_kib = Vec::new();
    for (invocation, event) in [signed.clone(), flood(None), flood(Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="))]
        .iter()
        .enumerate()
    {
        let next = api
            .recv(POLL_WITHIN, || "record-review-reply did not poll".into())
            .await?;
        let request_id = format!("flood-{invocation}");
        next.send_event(&request_id, event);
        let answer = api
            .recv(ANSWER_WITHIN, || "record-review-reply did not answer".into())
            .await?;
        if !answer.is_response_to(&request_id) {
            return Err(format!("webhook flood: invocation failed: {answer}").into());
        }
        peaks_kib.push(peak_rss_kib_of(pid));
        answer.accept();
    }
    function.kill().await?;
    let extra_kib = peaks_kib[2].saturating_sub(peaks_kib[0]);
    Ok(Webhook {
        flood_body_bytes: FLOOD_BODY_BYTES,
        flood_params: FLOOD_BODY_BYTES / 2,
        peak_rss_kib_signed_reply: peaks_kib[0],
        peak_rss_kib_after_floods: peaks_kib[2],
        flood_extra_rss_kib: extra_kib,
        flood_extra_rss_per_body_byte: Float((extra_kib * 1024) as f64 / FLOOD_BODY_BYTES as f64),
    })
}

/// The webhook URL the reply's signature is computed for (`REPLY_WEBHOOK_URL`).
const REPLY_URL: &str = "https://bench.lambda-url.eu-west-3.on.aws/";

/// What `cold_and_warm_invocations` sends each function, and how the results name it. The
/// scheduled jobs get a dry run, which changes nothing. The webhook gets a reply signed as
/// Twilio signs it, from a number with no pending review request: one DynamoDB query,
/// nothing written, answered 200.
fn invocation_payload(name: &str) -> (Value, Value) {
    if name != "record-review-reply" {
        let dry_run = json!({"dryRun": true});
        return (dry_run.clone(), dry_run);
    }
    let params: Vec<(String, String)> = [
        ("AccountSid", LOCAL_ACCOUNT_SID.to_owned()),
        ("Body", "5".to_owned()),
        ("From", "whatsapp:+33699999999".to_owned()),
        ("MessageSid", format!("SM{}", "0".repeat(32))),
        ("NumMedia", "0".to_owned()),
        ("To", format!("whatsapp:{LOCAL_WHATSAPP_FROM}")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let validator = SignatureValidator::new(AuthToken::new(LOCAL_AUTH_TOKEN));
    let request = signed_twilio_post(&validator, REPLY_URL, &params).expect("REPLY_URL is a URL");
    let event = serde_json::to_value(request).expect("a Function URL event serialises");
    let summary = json!("signed Twilio webhook POST, Body=5, from a number with no pending review request");
    (event, summary)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use backoffice::jobs::record_review_reply::{FunctionUrlRequest, ReplyConfig, ReplyDeps};
    use backoffice::runtime::clock::SystemClock;
    use backoffice::runtime::config::EnvSource;
    use backoffice::testing::{MemoryReplies, RecordingAlerts};

    use super::*;

    /// The webhook's invocation in the benchmark must be one the function accepts (signed
    /// for the URL it checks), or the benchmark would time a 403.
    #[tokio::test]
    async fn the_reply_invocation_passes_the_functions_signature_check() {
        let env: HashMap<String, String> = function_env("http://127.0.0.1:1").into_iter().collect();
        let request: FunctionUrlRequest =
            serde_json::from_value(invocation_payload("record-review-reply").0).expect("a Function URL event");
        let token = env.var("TWILIO_AUTH_TOKEN").expect("the Twilio token is set");
        let deps = ReplyDeps {
            store: MemoryReplies::default(),
            alerts: RecordingAlerts::default(),
            validator: SignatureValidator::new(AuthToken::new(token)),
            clock: Arc::new(SystemClock),
            config: ReplyConfig::from_env(&env).expect("the benchmark's environment is a valid reply config"),
            forwarder: None,
        };
        let response = backoffice::jobs::record_review_reply::respond(&deps, &request)
            .await
            .expect("answered");
        assert_eq!(response.status_code, 200, "{}", response.body);
    }

    #[test]
    fn the_scheduled_jobs_are_invoked_as_dry_runs() {
        for name in ["clean-expired-carts", "request-reviews"] {
            assert_eq!(invocation_payload(name).0, json!({"dryRun": true}));
        }
    }
}
