//! Twilio's webhook signature (`X-Twilio-Signature`).
//!
//! Twilio signs each webhook request with the account's auth token: HMAC-SHA1 over the
//! full URL it requested (scheme, host, port, path and query, exactly as configured in
//! its console) followed by every POST parameter, sorted by name, as `name` + `value`
//! with no separators; the header carries the digest in base64.
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>
//!
//! Like Twilio's helper libraries (twilio/twilio-python `twilio/request_validator.py`,
//! twilio/twilio-node `lib/webhooks/webhooks.ts`), the URL is also tried with the
//! scheme's default port added (`:443`, `:80`) or removed, because Twilio's own signing
//! is not consistent about it. Unlike twilio-python, a *non-default* port is never
//! stripped: a request signed for another port is refused.
//!
//! The comparison is [`Mac::verify_slice`], which runs in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::twilio::AuthToken;

/// Header names arrive in lowercase from Lambda Function URLs.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Why a request was refused. Logged, never the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SignatureRejection {
    Missing,
    /// Not base64, or not 20 bytes once decoded.
    Malformed,
    /// A well-formed signature that matches none of the URL forms.
    Mismatch,
}

impl SignatureRejection {
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Checks webhook signatures with the account's auth token.
#[derive(Clone)]
pub struct SignatureValidator {
    token: AuthToken,
}

impl std::fmt::Debug for SignatureValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureValidator")
            .field("token", &self.token)
            .finish()
    }
}

/// The string Twilio signs: the URL, then each parameter as `name` + `value`, sorted by
/// name and, for a name that appears more than once, by value (every value is kept, as
/// twilio-python does).
pub fn signed_payload(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Byte order of UTF-8 is code point order, which is how the helper libraries sort.
    sorted.sort();
    let mut payload = String::with_capacity(url.len() + params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
    payload.push_str(url);
    for (name, value) in sorted {
        payload.push_str(name);
        payload.push_str(value);
    }
    payload
}

/// The URL without the `user:password@` it may carry, to be logged.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The URL as given, plus the same URL with the scheme's default port added when it has
/// none, or removed when it has exactly that one; each also without the credentials of a
/// password-protected URL, which the signature may leave out; and all of those again in
/// the URL's normal form (`https://Shop.example` as `https://shop.example/`), which is
/// how the status callback URLs this code gives Twilio are written.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = credential_and_port_variants(url);
    if let Ok(normal) = url::Url::parse(url).map(String::from)
        && normal != url
    {
        for variant in credential_and_port_variants(&normal) {
            if !variants.contains(&variant) {
                variants.push(variant);
            }
        }
    }
    variants
}

fn credential_and_port_variants(url: &str) -> Vec<String> {
    let bare = without_credentials(url);
    let mut variants = port_variants(url);
    if bare != url {
        variants.extend(port_variants(&bare));
    }
    variants
}

fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // `user:pass@host:port`: the port is after the last ':' that follows the host part.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_and_port = &authority[host_start..];
    // An IPv6 literal holds ':' of its own inside brackets.
    let port_separator = match host_and_port.rfind(']') {
        Some(bracket) => host_and_port[bracket..].find(':').map(|i| bracket + i),
        None => host_and_port.find(':'),
    };
    let prefix = &authority[..host_start];
    match port_separator {
        None => variants.push(format!("{scheme}://{prefix}{host_and_port}:{default_port}{tail}")),
        Some(colon) if &host_and_port[colon + 1..] == default_port => {
            variants.push(format!("{scheme}://{prefix}{}{tail}", &host_and_port[..colon]));
        }
        Some(_) => {}
    }
    variants
}

impl SignatureValidator {
    pub fn new(token: AuthToken) -> Self {
        Self { token }
    }

    fn mac(&self) -> Hmac<Sha1> {
        // HMAC takes a key of any length, so this cannot fail.
        <Hmac<Sha1> as KeyInit>::new_from_slice(self.token.expose().as_bytes()).expect("HMAC accepts any key length")
    }

    /// The signature Twilio would send for `url` and `params` (base64). For tests and
    /// tools that sign requests; the check itself never compares strings.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        let mut mac = self.mac();
        mac.update(signed_payload(url, params).as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// Whether `header` (the `X-Twilio-Signature` value, if any) signs `url` and `params`.
    pub fn verify(
        &self,
        url: &str,
        params: &[(String, String)],
        header: Option<&str>,
    ) -> Result<(), SignatureRejection> {
        self.verify_decoded(url, params, &decode_header(header)?)
    }

    /// Whether a signature read by [`decode_header`] signs `url` and `params`.
    pub fn verify_decoded(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: &Signature,
    ) -> Result<(), SignatureRejection> {
        let mut matched = false;
        // Every variant is checked, so the time taken does not say which one matched.
        for candidate in url_variants(url) {
            let mut mac = self.mac();
            mac.update(signed_payload(&candidate, params).as_bytes());
            matched |= mac.verify_slice(&signature.0).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureRejection::Mismatch)
        }
    }
}

/// An HMAC-SHA1 digest as the header carries it, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 20]);

/// Reads the `X-Twilio-Signature` header without looking at the request: a request
/// without a well-formed one is refused before its body is read.
pub fn decode_header(header: Option<&str>) -> Result<Signature, SignatureRejection> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureRejection::Missing)?;
    // 20 bytes are 28 base64 characters: anything longer is not worth decoding.
    if header.len() > 28 {
        return Err(SignatureRejection::Malformed);
    }
    let decoded = BASE64.decode(header).map_err(|_| SignatureRejection::Malformed)?;
    <[u8; 20]>::try_from(decoded.as_slice())
        .map(Signature)
        .map_err(|_| SignatureRejection::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    // Published test vectors: twilio/twilio-python, tests/unit/test_request_validator.py
    // (token "12345", this URL and these parameters, and the expected signatures).
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    /// The same request signed for the URL with `:443`.
    const EXPECTED_WITH_443: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    /// The `http://` URL signed with `:80`.
    const EXPECTED_HTTP_WITH_80: &str = "0ZXoZLH/DfblKGATFgpif+LLRf4=";
    /// The `http://` URL signed with `:1234`.
    const EXPECTED_HTTP_WITH_1234: &str = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=";
    /// Repeated `Digits` parameter (5678 then 1234).
    const EXPECTED_DUPLICATES: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";

    fn vector_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    fn validator() -> SignatureValidator {
        SignatureValidator::new(AuthToken::new(TOKEN))
    }

    #[test]
    fn computes_the_published_signatures() {
        let v = validator();
        assert_eq!(v.sign(URL, &vector_params()), EXPECTED);
        assert_eq!(
            v.sign("https://mycompany.com:443/myapp.php?foo=1&bar=2", &vector_params()),
            EXPECTED_WITH_443
        );
        assert_eq!(
            v.sign("http://mycompany.com:80/myapp.php?foo=1&bar=2", &vector_params()),
            EXPECTED_HTTP_WITH_80
        );
        assert_eq!(
            v.sign("http://mycompany.com:1234/myapp.php?foo=1&bar=2", &vector_params()),
            EXPECTED_HTTP_WITH_1234
        );
        let duplicates = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(v.sign(URL, &duplicates), EXPECTED_DUPLICATES);
    }

    #[test]
    fn accepts_the_published_signatures_whatever_the_parameter_order() {
        let v = validator();
        let mut reversed = vector_params();
        reversed.reverse();
        assert_eq!(v.verify(URL, &vector_params(), Some(EXPECTED)), Ok(()));
        assert_eq!(v.verify(URL, &reversed, Some(EXPECTED)), Ok(()));
        let duplicates = params(&[
            ("Digits", "1234"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Sid", "CA123"),
        ]);
        assert_eq!(v.verify(URL, &duplicates, Some(EXPECTED_DUPLICATES)), Ok(()));
    }

    #[test]
    fn accepts_the_default_port_added_or_removed() {
        let v = validator();
        // Signed with :443, configured without (twilio-python test_validation_adds_port_on_https).
        assert_eq!(v.verify(URL, &vector_params(), Some(EXPECTED_WITH_443)), Ok(()));
        // Signed without, configured with :443.
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(v.verify(with_port, &vector_params(), Some(EXPECTED)), Ok(()));
        // http and :80 (test_validation_adds_port_on_http).
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(v.verify(http, &vector_params(), Some(EXPECTED_HTTP_WITH_80)), Ok(()));
        // A non-default port as configured (test_validation_removes_port_on_http).
        let http_1234 = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(
            v.verify(http_1234, &vector_params(), Some(EXPECTED_HTTP_WITH_1234)),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_wrong_port() {
        let v = validator();
        // twilio-python strips any port (test_validation_removes_port_on_https); we do not:
        // a signature for the port-less URL does not sign a request to port 1234.
        let https_1234 = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(
            v.verify(https_1234, &vector_params(), Some(EXPECTED)),
            Err(SignatureRejection::Mismatch)
        );
        // Nor does :80 stand for https.
        let https_80 = "https://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert_eq!(
            v.verify(https_80, &vector_params(), Some(EXPECTED)),
            Err(SignatureRejection::Mismatch)
        );
    }

    #[test]
    fn refuses_a_wrong_url() {
        let v = validator();
        for url in [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://mycompany.com/myapp.php",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "https://evil.example/myapp.php?foo=1&bar=2",
            "https://mycompany.com/other.php?foo=1&bar=2",
        ] {
            assert_eq!(
                v.verify(url, &vector_params(), Some(EXPECTED)),
                Err(SignatureRejection::Mismatch),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_a_tampered_body() {
        let v = validator();
        let mut tampered = vector_params();
        tampered[1].1 = "9999".into();
        assert_eq!(
            v.verify(URL, &tampered, Some(EXPECTED)),
            Err(SignatureRejection::Mismatch)
        );
        let mut added = vector_params();
        added.push(("Body".into(), "1".into()));
        assert_eq!(v.verify(URL, &added, Some(EXPECTED)), Err(SignatureRejection::Mismatch));
        let removed = vector_params()[1..].to_vec();
        assert_eq!(
            v.verify(URL, &removed, Some(EXPECTED)),
            Err(SignatureRejection::Mismatch)
        );
    }

    #[test]
    fn refuses_another_token() {
        let other = SignatureValidator::new(AuthToken::new("54321"));
        assert_eq!(
            other.verify(URL, &vector_params(), Some(EXPECTED)),
            Err(SignatureRejection::Mismatch)
        );
    }

    #[test]
    fn refuses_a_missing_or_malformed_header() {
        let v = validator();
        assert_eq!(v.verify(URL, &vector_params(), None), Err(SignatureRejection::Missing));
        assert_eq!(
            v.verify(URL, &vector_params(), Some("  ")),
            Err(SignatureRejection::Missing)
        );
        assert_eq!(
            v.verify(URL, &vector_params(), Some("not base64!")),
            Err(SignatureRejection::Malformed)
        );
        // Valid base64 of the wrong length (a truncated signature).
        assert_eq!(
            v.verify(URL, &vector_params(), Some("RSOYDt4T1cUT")),
            Err(SignatureRejection::Malformed)
        );
        // A megabyte of header is refused by its length, not decoded.
        assert_eq!(
            decode_header(Some(&"A".repeat(1 << 20))),
            Err(SignatureRejection::Malformed)
        );
        assert!(decode_header(Some(&format!("  {EXPECTED} "))).is_ok());
    }

    #[test]
    fn url_variants_add_or_remove_only_the_default_port() {
        assert_eq!(
            url_variants("https://h.example/p?q=1"),
            ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]
        );
        assert_eq!(
            url_variants("https://h.example:443/p"),
            ["https://h.example:443/p", "https://h.example/p"]
        );
        assert_eq!(url_variants("https://h.example:8443/p"), ["https://h.example:8443/p"]);
        assert_eq!(
            url_variants("http://h.example"),
            [
                "http://h.example",
                "http://h.example:80",
                "http://h.example/",
                "http://h.example:80/"
            ]
        );
        assert!(
            url_variants("https://Shop.EXAMPLE?message=a%23b&end=1")
                .contains(&"https://shop.example/?message=a%23b&end=1".to_owned())
        );
        assert_eq!(
            url_variants("https://u:p@[::1]:443/x"),
            [
                "https://u:p@[::1]:443/x",
                "https://u:p@[::1]/x",
                "https://[::1]:443/x",
                "https://[::1]/x"
            ]
        );
        assert_eq!(
            without_credentials("https://u:p@h.example/p?a=b@c"),
            "https://h.example/p?a=b@c"
        );
        assert_eq!(without_credentials("https://h.example/p"), "https://h.example/p");
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }
}
