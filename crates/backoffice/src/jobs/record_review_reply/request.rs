//! The webhook's HTTP side: the Lambda Function URL event (payload format 2.0) and its
//! answer, and the limits a request must meet before any work proportional to its body.
//!
//! The Function URL is public, so every request is read as hostile until its signature
//! checks out. What an unauthenticated request can cost is bounded here: its body is
//! refused above [`MAX_BODY_BYTES`] or [`MAX_PARAMS`] before it is decoded into
//! parameters, so the handler's memory stays a small constant whatever arrives.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::signature::{SIGNATURE_HEADER, SignatureValidator};
use super::twiml;

/// The largest form body accepted, once base64-decoded. A WhatsApp message is at most
/// 4,096 characters; percent-encoded UTF-8 takes at most 12 bytes per character, so
/// the longest real `Body` is about 48 KiB and every other parameter Twilio sends fits
/// in the rest.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most form parameters accepted. Twilio's incoming-message webhook sends about 20
/// to 40 (message, sender, profile, referral, location, and `MediaUrlN` /
/// `MediaContentTypeN` for up to 10 media).
pub const MAX_PARAMS: usize = 128;

/// Why a body was refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    TooLarge,
    TooManyParams,
    NotBase64,
}

impl BodyRefusal {
    pub fn status(self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::TooManyParams | Self::NotBase64 => 400,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "body too large",
            Self::TooManyParams => "too many parameters",
            Self::NotBase64 => "body is not valid base64",
        }
    }
}

/// Lambda sends `null` for absent parts (`rawQueryString` without a query, `body` without
/// a body): read as the default, like a missing field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The Lambda Function URL event (payload format 2.0), only the fields this function
/// reads: unknown fields are ignored, missing or null ones default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub raw_path: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub raw_query_string: String,
    /// Lowercase names; repeated headers are joined with commas.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_base64_encoded: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub request_context: Option<RequestContext>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    #[serde(default, deserialize_with = "null_as_default")]
    pub domain_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub http: Option<HttpContext>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HttpContext {
    #[serde(default, deserialize_with = "null_as_default")]
    pub method: Option<String>,
}

impl FunctionUrlRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn method(&self) -> Option<&str> {
        self.request_context.as_ref()?.http.as_ref()?.method.as_deref()
    }

    /// The Function URL this request came through: `https://` + the domain Lambda routed
    /// it by (`requestContext.domainName`) + path + `?query`. Never the `Host` header,
    /// which the caller writes: a signature made for another URL must not be re-aimed here.
    pub fn function_url(&self) -> Option<String> {
        let domain = self
            .request_context
            .as_ref()?
            .domain_name
            .as_deref()
            .filter(|domain| !domain.is_empty())?;
        let path = if self.raw_path.is_empty() { "/" } else { &self.raw_path };
        let mut url = format!("https://{domain}{path}");
        if !self.raw_query_string.is_empty() {
            url.push('?');
            url.push_str(&self.raw_query_string);
        }
        Some(url)
    }

    /// The body as bytes (Function URLs base64-encode bodies they consider binary),
    /// refused if it exceeds the limits. Costs no more than [`MAX_BODY_BYTES`] whatever
    /// the size of the body that arrived.
    pub fn bounded_body(&self) -> Result<Cow<'_, [u8]>, BodyRefusal> {
        let body = self.body.as_deref().unwrap_or_default();
        let bytes = if self.is_base64_encoded {
            let body = body.trim();
            if body.len() > MAX_BODY_BYTES.div_ceil(3) * 4 {
                return Err(BodyRefusal::TooLarge);
            }
            Cow::Owned(BASE64.decode(body).map_err(|_| BodyRefusal::NotBase64)?)
        } else {
            Cow::Borrowed(body.as_bytes())
        };
        if bytes.len() > MAX_BODY_BYTES {
            return Err(BodyRefusal::TooLarge);
        }
        let params = bytes.iter().filter(|&&byte| byte == b'&').count() + 1;
        if params > MAX_PARAMS {
            return Err(BodyRefusal::TooManyParams);
        }
        Ok(bytes)
    }
}

/// Twilio's POST of `params` to `url` as the Function URL delivers it to the function,
/// signed with `validator`'s auth token: for the tools and tests that play Twilio.
/// `None` when `url` is not an absolute URL with a host.
pub fn signed_twilio_post(
    validator: &SignatureValidator,
    url: &str,
    params: &[(String, String)],
) -> Option<FunctionUrlRequest> {
    let parsed = url::Url::parse(url).ok()?;
    let host = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str()?),
        None => parsed.host_str()?.to_owned(),
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Some(FunctionUrlRequest {
        raw_path: parsed.path().to_owned(),
        raw_query_string: parsed.query().unwrap_or_default().to_owned(),
        headers: BTreeMap::from([
            ("host".to_owned(), host.clone()),
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            (SIGNATURE_HEADER.to_owned(), validator.sign(url, params)),
        ]),
        body: Some(body),
        is_base64_encoded: false,
        request_context: Some(RequestContext {
            domain_name: Some(host),
            http: Some(HttpContext {
                method: Some("POST".to_owned()),
            }),
        }),
    })
}

/// The form parameters, in the order received (Twilio sorts them itself when signing).
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The Function URL answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlResponse {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub is_base64_encoded: bool,
    /// Always empty; present because some clients of the format (cargo lambda's
    /// emulator) refuse a response without it.
    pub cookies: Vec<String>,
}

impl FunctionUrlResponse {
    fn new(status_code: u16, content_type: &str, body: String) -> Self {
        Self {
            status_code,
            headers: BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]),
            body,
            is_base64_encoded: false,
            cookies: Vec::new(),
        }
    }

    pub fn twiml(body: String) -> Self {
        Self::new(200, twiml::TWIML_CONTENT_TYPE, body)
    }

    /// The shop's own handler's answer, passed back to Twilio.
    pub fn forwarded(status_code: u16, content_type: &str, body: String) -> Self {
        Self::new(status_code, content_type, body)
    }

    pub fn text(status_code: u16, body: &str) -> Self {
        Self::new(status_code, "text/plain; charset=utf-8", body.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: String, base64: bool) -> FunctionUrlRequest {
        FunctionUrlRequest {
            body: Some(body),
            is_base64_encoded: base64,
            ..FunctionUrlRequest::default()
        }
    }

    #[test]
    fn a_body_within_the_limits_is_read_as_is() {
        let body = "From=whatsapp%3A%2B33612345678&Body=5".to_owned();
        assert_eq!(request(body.clone(), false).bounded_body().unwrap(), body.as_bytes());
        let encoded = request(BASE64.encode(&body), true);
        assert_eq!(encoded.bounded_body().unwrap(), body.as_bytes());
    }

    #[test]
    fn a_body_at_the_limits_passes_and_one_byte_or_parameter_more_does_not() {
        let at_size = "a".repeat(MAX_BODY_BYTES);
        assert!(request(at_size.clone(), false).bounded_body().is_ok());
        assert_eq!(
            request(at_size + "a", false).bounded_body().unwrap_err(),
            BodyRefusal::TooLarge
        );
        let at_count = vec!["a=1"; MAX_PARAMS].join("&");
        assert!(request(at_count.clone(), false).bounded_body().is_ok());
        assert_eq!(
            request(at_count + "&a=1", false).bounded_body().unwrap_err(),
            BodyRefusal::TooManyParams
        );
    }

    #[test]
    fn a_base64_body_is_measured_before_it_is_decoded() {
        let huge = request("QUFB".repeat(1_000_000), true);
        assert_eq!(huge.bounded_body().unwrap_err(), BodyRefusal::TooLarge);
        let garbage = request("not base64 at all!".into(), true);
        assert_eq!(garbage.bounded_body().unwrap_err(), BodyRefusal::NotBase64);
        let many = request(BASE64.encode("a&".repeat(1_000)), true);
        assert_eq!(many.bounded_body().unwrap_err(), BodyRefusal::TooManyParams);
    }

    #[test]
    fn the_function_url_comes_from_the_routed_domain_never_the_host_header() {
        let request: FunctionUrlRequest = serde_json::from_value(serde_json::json!({
            "rawPath": "/hook",
            "rawQueryString": "a=1",
            "headers": {"host": "attacker.example"},
            "requestContext": {"domainName": "abc.lambda-url.eu-west-3.on.aws"},
        }))
        .unwrap();
        assert_eq!(
            request.function_url().as_deref(),
            Some("https://abc.lambda-url.eu-west-3.on.aws/hook?a=1")
        );
        let hostless: FunctionUrlRequest =
            serde_json::from_value(serde_json::json!({"headers": {"host": "attacker.example"}})).unwrap();
        assert_eq!(hostless.function_url(), None);
    }

    #[test]
    fn a_signed_post_passes_the_functions_own_check() {
        let validator = SignatureValidator::new(crate::twilio::AuthToken::new("token"));
        let params = vec![
            ("Body".to_owned(), "5 parfait".to_owned()),
            ("From".to_owned(), "whatsapp:+33612345678".to_owned()),
        ];
        let url = "https://abc.lambda-url.eu-west-3.on.aws/hook?v=1";
        let request = signed_twilio_post(&validator, url, &params).unwrap();
        assert_eq!(request.function_url().as_deref(), Some(url));
        let signature = super::super::signature::decode_header(request.header(SIGNATURE_HEADER)).unwrap();
        let body = request.bounded_body().unwrap();
        assert_eq!(validator.verify_decoded(url, &form_params(&body), &signature), Ok(()));
        assert!(signed_twilio_post(&validator, "not a url", &params).is_none());
    }
}
