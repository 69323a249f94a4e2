//! What the tests, the local stack and the benchmark share to play the world around the
//! functions: the in-memory stores, an environment made of pairs, a Twilio client for a
//! stand-in, a webhook request signed as Twilio signs it, and the test account.
//!
//! Compiled for the crate's own unit tests and, with the `fakes` feature, for the
//! integration tests and the tools; never into a function.

pub use crate::jobs::clean_expired_carts::memory::InMemoryCarts;
pub use crate::jobs::record_review_reply::memory::{MemoryReplies, RecordingAlerts};
pub use crate::jobs::record_review_reply::signed_twilio_post;
pub use crate::jobs::request_reviews::memory::{InMemoryOrders, StoredOrder};
pub use crate::runtime::clock::ManualClock;
pub use crate::runtime::config::env_of;
use crate::twilio::{TwilioClient, TwilioConfig};

/// The Twilio account of every test (a well-formed SID; no real account).
pub const TEST_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// A Twilio client of the test account talking to `base_url` (a stand-in), with
/// `settings` on top: the sender (`TWILIO_WHATSAPP_FROM` or
/// `TWILIO_MESSAGING_SERVICE_SID`), limits, timeouts.
///
/// # Panics
///
/// If `settings` are not valid Twilio settings: a test's own mistake.
pub fn twilio_client(base_url: &str, auth_token: &str, settings: &[(&str, &str)]) -> TwilioClient {
    let mut env = env_of(&[
        ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", auth_token),
        ("TWILIO_API_BASE_URL", base_url),
    ]);
    env.extend(env_of(settings));
    TwilioClient::new(TwilioConfig::from_env(&env).expect("test Twilio settings")).expect("a Twilio client")
}

/// A well-formed message SID standing for `label` (`"SM001"`): the label itself if it is
/// one, else `SM` and 32 hexadecimal digits drawn from it, the same for the same label.
pub fn message_sid(label: &str) -> String {
    use sha1::Digest;
    if crate::twilio::is_message_sid(label) {
        return label.to_owned();
    }
    let digest = sha1::Sha1::digest(label.as_bytes());
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("SM{hex}")
}
