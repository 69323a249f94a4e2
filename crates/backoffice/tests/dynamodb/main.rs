//! The jobs and the webhook against a real DynamoDB API: the embedded dynoxide server by
//! default, the moto server with `AWS_ENDPOINT_URL_DYNAMODB` (and `DYNAMODB_EMULATOR=moto`),
//! or real AWS with `DYNAMODB_TARGET=aws`. Each test creates its own tables and deletes them.
//! `scripts/test.sh` runs this binary once on dynoxide and once on moto.

mod erasure;
mod messages;
mod replies;
mod reviews;
mod streams;
mod sweeper;

/// An RFC 3339 time written in a test.
pub fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("an RFC 3339 time")
}
