//! A function that cannot start says why, to whoever invoked it.
//!
//! Settings are read and clients built once, before the runtime loop. When that fails (a
//! variable missing or malformed, the Twilio secret unreadable), returning from `main`
//! alone leaves the invoker without an answer: Lambda reports a bare exit, and a local
//! emulator waits for a response that never comes. So the error goes first to the
//! Runtime API's `/runtime/init/error`, with an error type that says a retry will not
//! help and the message that names the variable; `main` then exits with it.

use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{Client, build_request};
use serde::Serialize;

/// The `errorType` of a function that could not start.
pub const INIT_ERROR_TYPE: &str = "NonRetryable.InitError";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitError<'a> {
    error_type: &'a str,
    error_message: String,
}

/// The start of every function's `main`: installs the log subscriber, then builds the
/// function's dependencies (settings, clients); if that fails, the error is reported as
/// [`fail`] does and handed back for `main` to return.
pub async fn start<Deps, E: std::fmt::Display>(deps: impl Future<Output = Result<Deps, E>>) -> Result<Deps, E> {
    crate::runtime::logging::init();
    match deps.await {
        Ok(deps) => Ok(deps),
        Err(error) => Err(fail(error).await),
    }
}

/// Logs `error`, reports it to the Runtime API (when there is one: not in tests or
/// tools), and hands it back for `main` to return.
pub async fn fail<E: std::fmt::Display>(error: E) -> E {
    tracing::error!(%error, "the function could not start");
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
        && let Err(report) = report(&error.to_string()).await
    {
        tracing::error!(error = %report, "could not report the start-up error to the Runtime API");
    }
    error
}

async fn report(message: &str) -> Result<(), lambda_runtime_api_client::BoxError> {
    let client = Client::builder().build()?;
    let body = serde_json::to_string(&InitError {
        error_type: INIT_ERROR_TYPE,
        error_message: message.to_owned(),
    })?;
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", INIT_ERROR_TYPE)
        .header("content-type", "application/json")
        .body(Body::from(body))?;
    let response = client.call(request).await?;
    if !response.status().is_success() {
        return Err(format!("/runtime/init/error answered {}", response.status()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outside_lambda_the_error_is_only_logged_and_handed_back() {
        // No AWS_LAMBDA_RUNTIME_API in the test process: nothing to report to.
        assert!(std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none());
        let error = fail("environment variable CARTS_TABLE must be set").await;
        assert_eq!(error, "environment variable CARTS_TABLE must be set");
    }

    #[test]
    fn the_report_is_the_runtime_apis_error_document() {
        let body = serde_json::to_value(InitError {
            error_type: INIT_ERROR_TYPE,
            error_message: "environment variable CARTS_TABLE must be set".into(),
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "errorType": "NonRetryable.InitError",
                "errorMessage": "environment variable CARTS_TABLE must be set",
            })
        );
    }
}
