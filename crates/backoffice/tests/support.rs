//! What both integration-test binaries share.

/// The Twilio account of every test (a well-formed SID; no real account).
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
