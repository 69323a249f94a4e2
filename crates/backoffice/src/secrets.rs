//! Twilio credentials from AWS Secrets Manager, read once at cold start, so the auth
//! token never sits in the function's environment, its configuration or a log line.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde_json::Value;

use crate::runtime::config::json_kind;
use crate::runtime::config::{ConfigError, EnvSource};
use crate::twilio::{AuthToken, TwilioConfig};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading secret {arn}: {message}")]
    Fetch { arn: String, message: String },
    #[error("secret {arn} must be JSON {{\"accountSid\": \"AC...\", \"authToken\": \"...\"}}: {reason}")]
    Shape { arn: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

struct TwilioSecret {
    account_sid: String,
    auth_token: String,
}

/// Reads the secret's JSON. Every error names a field or a position, never a value:
/// serde's own messages quote the value they could not read (`invalid type: string
/// "…"`), which for this secret is the token.
fn read_secret(text: &str) -> Result<TwilioSecret, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("it is not valid JSON (line {}, column {})", e.line(), e.column()))?;
    let Value::Object(fields) = value else {
        return Err(format!("it is JSON {}, not an object", json_kind(&value)));
    };
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Some(Value::String(_)) => Err(format!("`{name}` is empty")),
        Some(other) => Err(format!("`{name}` must be a string, not {}", json_kind(other))),
        None => Err(format!("`{name}` is missing")),
    };
    let account_sid = field("accountSid")?;
    // Checked here, not by the configuration, whose error quotes the value: a secret with
    // its two fields swapped holds the token in `accountSid`.
    if !crate::twilio::is_sid(&account_sid, "AC") {
        return Err("`accountSid` must be 'AC' followed by 32 hexadecimal digits (are the two fields swapped?)".into());
    }
    Ok(TwilioSecret {
        account_sid,
        auth_token: field("authToken")?,
    })
}

/// The environment with `TWILIO_ACCOUNT_SID` taken from the secret.
struct WithAccountSid<'a, E> {
    env: &'a E,
    account_sid: String,
}

impl<E: EnvSource> EnvSource for WithAccountSid<'_, E> {
    fn var(&self, name: &str) -> Option<String> {
        if name == "TWILIO_ACCOUNT_SID" {
            Some(self.account_sid.clone())
        } else {
            self.env.var(name)
        }
    }
}

/// The Twilio configuration: with `TWILIO_SECRET_ARN`, the account SID and auth token
/// come from that secret; without it (local runs), from `TWILIO_ACCOUNT_SID` and
/// `TWILIO_AUTH_TOKEN`. Every other setting comes from the environment.
pub async fn twilio_config(
    env: &impl EnvSource,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<TwilioConfig, SecretError> {
    let Some(arn) = env.var("TWILIO_SECRET_ARN") else {
        return Ok(TwilioConfig::from_env(env)?);
    };
    let output = secrets
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.clone(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    let text = output.secret_string().ok_or_else(|| SecretError::Shape {
        arn: arn.clone(),
        reason: "it has no SecretString".into(),
    })?;
    let secret = read_secret(text).map_err(|reason| SecretError::Shape {
        arn: arn.clone(),
        reason,
    })?;
    let env = WithAccountSid {
        env,
        account_sid: secret.account_sid,
    };
    Ok(TwilioConfig::from_env_with_auth_token(
        &env,
        AuthToken::new(secret.auth_token),
    )?)
}

#[cfg(test)]
mod tests {
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;
    use crate::runtime::config::env_of as env;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:shop/twilio-AbCdEf";
    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn secret_answering(text: &'static str) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .match_requests(|request| request.secret_id() == Some(ARN))
            .then_output(move || GetSecretValueOutput::builder().secret_string(text).build())
    }

    #[tokio::test]
    async fn reads_the_account_and_token_from_the_secret() {
        let rule = secret_answering(r#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"tok-123"}"#);
        let client = mock_client!(aws_sdk_secretsmanager, [&rule]);
        let env = env(&[("TWILIO_SECRET_ARN", ARN), ("TWILIO_WHATSAPP_FROM", "+33612345678")]);

        let config = twilio_config(&env, &client).await.unwrap();

        assert_eq!(config.account_sid, SID);
        assert_eq!(rule.num_calls(), 1);
        assert!(
            !format!("{config:?}").contains("tok-123"),
            "the token never shows in Debug"
        );
    }

    #[tokio::test]
    async fn a_secret_of_the_wrong_shape_is_refused_without_echoing_it() {
        let rule = secret_answering(r#"{"sid":"AC0123456789abcdef0123456789abcdef","token":"tok-123"}"#);
        let client = mock_client!(aws_sdk_secretsmanager, [&rule]);
        let env = env(&[("TWILIO_SECRET_ARN", ARN), ("TWILIO_WHATSAPP_FROM", "+33612345678")]);

        let error = twilio_config(&env, &client).await.unwrap_err().to_string();

        assert!(error.contains("accountSid"), "{error}");
        assert!(!error.contains("tok-123"), "{error}");
    }

    #[tokio::test]
    async fn without_a_secret_arn_the_local_environment_is_used() {
        let rule = secret_answering("{}");
        let client = mock_client!(aws_sdk_secretsmanager, [&rule]);
        let env = env(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "local-token"),
            ("TWILIO_MESSAGING_SERVICE_SID", "MG0123456789abcdef0123456789abcdef"),
        ]);

        let config = twilio_config(&env, &client).await.unwrap();

        assert_eq!(config.account_sid, SID);
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn no_malformed_secret_puts_its_token_in_the_error() {
        let token = "tok-secret-5f2a";
        for (text, expected) in [
            // The whole secret stored as a JSON string (double-encoded).
            (
                r#""{\"accountSid\":\"AC0123456789abcdef0123456789abcdef\",\"authToken\":\"tok-secret-5f2a\"}""#,
                "JSON a string, not an object",
            ),
            (
                r#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":["tok-secret-5f2a"]}"#,
                "`authToken` must be a string, not an array",
            ),
            (
                r#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":5}"#,
                "`authToken` must be a string, not a number",
            ),
            (
                r#"{"accountSid":"tok-secret-5f2a","authToken":"x"#,
                "not valid JSON (line 1",
            ),
            // The two fields swapped: the token where the account SID belongs.
            (
                r#"{"accountSid":"tok-secret-5f2a","authToken":"AC0123456789abcdef0123456789abcdef"}"#,
                "`accountSid` must be 'AC' followed by 32 hexadecimal digits",
            ),
            (
                r#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":" "}"#,
                "`authToken` is empty",
            ),
        ] {
            let text: &'static str = Box::leak(text.to_owned().into_boxed_str());
            let rule = secret_answering(text);
            let client = mock_client!(aws_sdk_secretsmanager, [&rule]);
            let env = env(&[("TWILIO_SECRET_ARN", ARN), ("TWILIO_WHATSAPP_FROM", "+33612345678")]);
            let error = twilio_config(&env, &client).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains(token), "{text}: {error}");
        }
    }
}
