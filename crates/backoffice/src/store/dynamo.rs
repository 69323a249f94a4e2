//! What every DynamoDB adapter shares: the attribute-map helpers, the time format of
//! every stored time, and how an SDK error becomes a [`StoreError`].

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use super::StoreError;

/// The longest order or cart id the back office takes (bytes): with a message kind before
/// it, still within a DynamoDB key (2048 bytes).
pub const MAX_ID_BYTES: usize = 1024;

/// A DynamoDB item as the SDK gives it.
pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute, if the item has one by that name.
pub fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    }
}

/// A number attribute read as `T`, if the item has one by that name that `T` can hold.
pub fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// RFC 3339 in UTC, whole seconds: the format of every time in the tables, so that
/// strings compare as times.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The item an `UpdateItem` sent with `ReturnValuesOnConditionCheckFailure::AllOld` was
/// refused on: `None` for any other error, or when the item does not exist.
pub fn refused_update_item<R>(
    error: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> Option<&Item> {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    match error.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item.as_ref().filter(|item| !item.is_empty()),
        _ => None,
    }
}

/// Whether a conditional write was refused by its condition, whatever the operation.
pub fn is_condition_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// The codes of a request DynamoDB refused before doing anything: throttling.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// Other codes worth a later try; the request may have been done.
const OTHER_RETRYABLE_CODES: &[&str] = &["InternalServerError", "ServiceUnavailable", "LimitExceededException"];

/// Whether DynamoDB throttled the request, and so did nothing: safe to send again even
/// when the request is not idempotent.
pub fn was_throttled<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// A token that tells one claim from every other, written with the claim.
pub fn claim_token() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Sends a conditional `UpdateItem` that writes `claim` in `attribute`: `true` written, or
/// refused by this very claim (the SDK sent it again after an answer it did not get, a
/// timeout or a 5xx, and the first attempt had been written); `false` held by another;
/// any other error as a [`StoreError`].
pub async fn send_claim(
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    table: &str,
    attribute: &str,
    claim: &str,
) -> Result<bool, StoreError> {
    let result = update
        .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_condition_failure(&error) => {
            Ok(refused_update_item(&error).and_then(|item| item.get(attribute)) == Some(&s(claim)))
        }
        Err(error) => Err(store_error("UpdateItem", table, error)),
    }
}

/// A conditional write's result: `true` written, `false` refused by its condition (nothing
/// to do), any other error as a [`StoreError`].
pub fn written<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    operation: &'static str,
    table: &str,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_condition_failure(&error) => Ok(false),
        Err(error) => Err(store_error(operation, table, error)),
    }
}

/// One PartiQL statement of a `BatchExecuteStatement` on `table`, with its parameters;
/// `old_on_failure`: a failed condition returns the item as it is.
pub fn batch_statement(
    table: &str,
    statement: &str,
    parameters: Vec<AttributeValue>,
    old_on_failure: bool,
) -> Result<aws_sdk_dynamodb::types::BatchStatementRequest, StoreError> {
    let mut request = aws_sdk_dynamodb::types::BatchStatementRequest::builder()
        .statement(statement)
        .set_parameters(Some(parameters));
    if old_on_failure {
        request = request.return_values_on_condition_check_failure(
            aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
        );
    }
    request.build().map_err(|e| StoreError {
        operation: "BatchExecuteStatement",
        table: table.to_owned(),
        message: format!("a statement cannot be built: {e}"),
        retryable: false,
    })
}

/// Runs `statements` (built by [`batch_statement`]) on `table` in one
/// `BatchExecuteStatement`: one response each, in order.
pub async fn execute_batch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    statements: Vec<aws_sdk_dynamodb::types::BatchStatementRequest>,
) -> Result<Vec<aws_sdk_dynamodb::types::BatchStatementResponse>, StoreError> {
    let output = client
        .batch_execute_statement()
        .set_statements(Some(statements))
        .send()
        .await
        .map_err(|e| store_error("BatchExecuteStatement", table, e))?;
    Ok(output.responses.unwrap_or_default())
}

/// Whether `table` holds an item whose key `key` is `value` (a consistent read of the key only).
pub async fn item_exists(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .key(key, s(value))
        .projection_expression("#key")
        .expression_attribute_names("#key", key)
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("GetItem", table, e))?;
    Ok(output.item.is_some_and(|item| !item.is_empty()))
}

/// Turns an SDK error (after the SDK's own retries) into a [`StoreError`] that says
/// whether trying again later may help.
pub fn store_error<E, R>(operation: &'static str, table: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .is_some_and(|code| THROTTLING_CODES.contains(&code) || OTHER_RETRYABLE_CODES.contains(&code)),
        _ => false,
    };
    StoreError {
        operation,
        table: table.to_owned(),
        message: DisplayErrorContext(&error).to_string(),
        retryable,
    }
}
