//! The Twilio client against Prism serving Twilio's own OpenAPI description
//! (`shared/contracts/twilio/twilio_api_v2010.json`, beside the workspace). Prism validates
//! each request against the spec and answers 422 when it breaks the contract, so a 2xx here
//! means Twilio would accept the request's shape.
//!
//! Prism is found this way:
//! 1. `TWILIO_CONTRACT_URL` (e.g. `http://127.0.0.1:4010`, from `scripts/prism.sh`), or
//! 2. `prism` on `PATH`: started once for this test binary on a free port, and stopped when
//!    the binary exits (a supervising shell kills it when our end of its stdin closes), or
//! 3. neither: every test fails, saying how to start Prism.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use backoffice::domain::phone::PhoneNumber;
use backoffice::twilio::{MessageContent, SendError, SentMessage, TwilioClient};

use backoffice::testing::{TEST_ACCOUNT_SID, twilio_client};
const TEMPLATE_SID: &str = "HX0123456789abcdef0123456789abcdef";
const MESSAGING_SERVICE_SID: &str = "MG0123456789abcdef0123456789abcdef";
/// Prism loads the whole 2010 API description before it listens; slow on a busy machine.
const PRISM_START_TIMEOUT: Duration = Duration::from_secs(120);

struct Prism {
    base_url: String,
    /// Kept so its stdin stays open for as long as this process lives.
    _supervisor: Option<Mutex<Child>>,
}

static PRISM: OnceLock<Result<Prism, String>> = OnceLock::new();

fn prism_url() -> &'static str {
    match PRISM.get_or_init(find_or_start_prism) {
        Ok(prism) => &prism.base_url,
        Err(why) => panic!("{why}"),
    }
}

fn spec_path() -> PathBuf {
    // The workspace root is two levels above this crate; shared/ sits beside the root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contracts/twilio/twilio_api_v2010.json")
}

fn how_to_start_prism() -> String {
    "start Prism with `scripts/prism.sh` (port 4010; it installs the pinned @stoplight/prism-cli into .tools/ \
     if needed) and run the test with TWILIO_CONTRACT_URL=http://127.0.0.1:4010, or `source scripts/tools-env.sh` \
     so that `prism` is on PATH and the test \
     starts it itself"
        .to_owned()
}

fn find_or_start_prism() -> Result<Prism, String> {
    if let Some(url) = std::env::var("TWILIO_CONTRACT_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        return Ok(Prism {
            base_url: url.trim().trim_end_matches('/').to_owned(),
            _supervisor: None,
        });
    }
    let spec = spec_path();
    if !spec.is_file() {
        return Err(format!("Twilio's OpenAPI description is missing at {}", spec.display()));
    }
    let prism = find_on_path("prism").ok_or_else(|| {
        format!(
            "TWILIO_CONTRACT_URL is unset and `prism` is not on PATH: {}",
            how_to_start_prism()
        )
    })?;
    let port = free_port()?;
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prism-twilio-contract.log");
    // The shell runs Prism in the background and kills it once its stdin reaches EOF, which
    // happens when this test process exits however it exits (success, failure or abort).
    let mut supervisor = Command::new("bash")
        .arg("-c")
        .arg(r#""$1" mock --errors -h 127.0.0.1 -p "$2" "$3" >"$4" 2>&1 & prism_pid=$!; cat >/dev/null; kill "$prism_pid""#)
        .arg("prism-supervisor")
        .arg(&prism)
        .arg(port.to_string())
        .arg(&spec)
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("could not start Prism: {error}; {}", how_to_start_prism()))?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if started.elapsed() > PRISM_START_TIMEOUT {
            return Err(format!(
                "Prism did not listen on {address} within {PRISM_START_TIMEOUT:?}; see {}",
                log.display()
            ));
        }
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(format!(
                "Prism exited ({status}) before listening; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Prism {
        base_url: format!("http://{address}"),
        _supervisor: Some(Mutex::new(supervisor)),
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))
}

fn client_with_sender(sender: (&str, &str)) -> TwilioClient {
    client_with_settings(&[sender])
}

fn client_with_settings(settings: &[(&str, &str)]) -> TwilioClient {
    twilio_client(prism_url(), "contract-test-token", settings)
}

fn customer() -> PhoneNumber {
    PhoneNumber::parse("+33612345678").unwrap()
}

fn review_template(content_sid: &str) -> MessageContent {
    MessageContent::Template {
        content_sid: content_sid.into(),
        variables: BTreeMap::from([("1".into(), "Ana".into()), ("2".into(), "A-1001".into())]),
    }
}

fn assert_is_a_message(sent: &SentMessage) {
    assert!(
        sent.sid.starts_with("SM") && sent.sid.len() == 34,
        "not a Message SID: {sent:?}"
    );
    assert!(!sent.status.is_empty(), "{sent:?}");
}

#[tokio::test]
async fn a_template_send_from_a_whatsapp_number_meets_the_contract() {
    let client = client_with_sender(("TWILIO_WHATSAPP_FROM", "+14155550100"));

    let sent = client
        .send_whatsapp(&customer(), &review_template(TEMPLATE_SID))
        .await
        .unwrap();

    assert_is_a_message(&sent);
}

#[tokio::test]
async fn a_send_through_a_messaging_service_meets_the_contract() {
    let client = client_with_sender(("TWILIO_MESSAGING_SERVICE_SID", MESSAGING_SERVICE_SID));

    let sent = client
        .send_whatsapp(&customer(), &review_template(TEMPLATE_SID))
        .await
        .unwrap();

    assert_is_a_message(&sent);
}

#[tokio::test]
async fn a_plain_body_send_meets_the_contract() {
    let client = client_with_sender(("TWILIO_WHATSAPP_FROM", "+14155550100"));

    let sent = client
        .send_whatsapp(&customer(), &MessageContent::Body("How was order A-1001?".into()))
        .await
        .unwrap();

    assert_is_a_message(&sent);
}

#[tokio::test]
async fn a_tracked_send_with_status_callback_and_validity_meets_the_contract() {
    let client = client_with_settings(&[
        ("TWILIO_WHATSAPP_FROM", "+14155550100"),
        ("STATUS_CALLBACK_URL", "https://hooks.example/twilio"),
    ]);

    let sent = client
        .send_tracked(
            &customer(),
            &review_template(TEMPLATE_SID),
            Some("payment_reminder#A-1001"),
            &backoffice::twilio::RetryPolicy::default(),
        )
        .await
        .unwrap();

    assert_is_a_message(&sent);
}

/// Reconciliation's question: the list of messages to one recipient since a day. Prism
/// checks the request; it cannot answer it in `--errors` mode, because the spec's own example
/// page has relative `*_uri` values that fail the spec's `format: uri` (a 500 whose
/// violations all sit in the response). So the test requires no violation in the request,
/// and proves Prism would report one with a page size over Twilio's maximum.
#[tokio::test]
async fn the_messages_list_by_recipient_and_send_date_meets_the_contract() {
    let client = client_with_sender(("TWILIO_WHATSAPP_FROM", "+14155550100"));
    let url = client.messages_list_url(&customer(), "2026-12-03T09:00:00Z".parse().unwrap());
    assert!(url.contains("DateSent%3E=2026-12-03"), "{url}");

    let violations = |url: String| async move {
        backoffice::https::install_crypto_provider();
        let response = reqwest::Client::new()
            .get(&url)
            .basic_auth(TEST_ACCOUNT_SID, Some("contract-test-token"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let in_request: Vec<String> = body["validation"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["location"][0] != "response")
            .map(|v| v["message"].to_string())
            .collect();
        (status, in_request)
    };
    let (status, in_request) = violations(url.clone()).await;
    assert_ne!(status, 422, "{in_request:?}");
    assert!(in_request.is_empty(), "{in_request:?}");

    let (status, in_request) = violations(url.replace("PageSize=100", "PageSize=5000")).await;
    assert_eq!(status, 422);
    assert_eq!(in_request.len(), 1, "{in_request:?}");
}

/// Proves the stand-in checks the contract: without this, a Prism that accepted anything
/// would make the tests above pass for any request.
#[tokio::test]
async fn prism_rejects_a_request_without_to() {
    let url = format!("{}/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json", prism_url());

    backoffice::https::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(&url)
        .basic_auth(TEST_ACCOUNT_SID, Some("contract-test-token"))
        .form(&[("From", "whatsapp:+14155550100"), ("Body", "no recipient")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("'To'"), "{body}");
}

#[tokio::test]
async fn a_contract_violation_comes_back_as_a_permanent_error() {
    let client = client_with_sender(("TWILIO_WHATSAPP_FROM", "+14155550100"));

    let err = client
        .send_whatsapp(&customer(), &review_template("HX-not-a-content-sid"))
        .await
        .unwrap_err();

    assert!(matches!(err, SendError::Permanent { status: 422, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.may_have_been_delivered());
}
