//! What both integration-test binaries share.

use backoffice::runtime::config::env_of;
use backoffice::twilio::{TwilioClient, TwilioConfig};

/// The Twilio account of every test (a well-formed SID; no real account).
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// A Twilio client of the test account talking to `base_url` (a stand-in), with
/// `settings` on top: the sender (`TWILIO_WHATSAPP_FROM` or
/// `TWILIO_MESSAGING_SERVICE_SID`), limits, timeouts.
pub fn twilio_client(base_url: &str, auth_token: &str, settings: &[(&str, &str)]) -> TwilioClient {
    let mut env = env_of(&[
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", auth_token),
        ("TWILIO_API_BASE_URL", base_url),
    ]);
    env.extend(env_of(settings));
    TwilioClient::new(TwilioConfig::from_env(&env).expect("test Twilio settings")).expect("a Twilio client")
}
