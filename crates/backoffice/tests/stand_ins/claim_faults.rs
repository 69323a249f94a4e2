//! DynamoDB answers to a transaction of claims that the emulators do not give: a
//! cancellation without reasons, and one claim throttled while the others were fine.

use std::sync::Arc;

use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use backoffice::domain::phone::PhoneNumber;
use backoffice::messages::engine::{Claim, ClaimOutcome, DueMessage, MessageId, Outbox};
use backoffice::messages::kind::{Kind, KindsConfig};
use backoffice::messages::outbox::{DynamoOutbox, OutboxTables};
use backoffice::runtime::clock::ManualClock;
use chrono::{TimeDelta, Utc};

fn outbox(client: aws_sdk_dynamodb::Client) -> DynamoOutbox {
    let tables = OutboxTables {
        messages: "messages".into(),
        orders: "orders".into(),
        carts: "carts".into(),
        reviews: "reviews".into(),
        consent: "consent".into(),
    };
    let kinds = KindsConfig::defaults().with(Kind::OrderConfirmation, |settings| settings.enabled = true);
    DynamoOutbox::new(client, tables, kinds, Arc::new(ManualClock::new(Utc::now())))
}

/// Order confirmations to three customers: three actions each (message, order, customer).
fn three_confirmations() -> Vec<DueMessage> {
    (1..=3)
        .map(|i| DueMessage {
            id: MessageId {
                kind: Kind::OrderConfirmation,
                subject_id: format!("o-{i}"),
            },
            customer_phone: PhoneNumber::parse(&format!("+3361234560{i}")).unwrap(),
            customer_name: None,
            due_at: Utc::now(),
            send_before: None,
            since: Utc::now() - TimeDelta::minutes(1),
        })
        .collect()
}

fn claim() -> Claim {
    Claim {
        claim_id: "run".into(),
        claimed_at: Utc::now(),
    }
}

fn cancelled(codes: Option<&[&str]>) -> TransactWriteItemsError {
    let reasons = codes.map(|codes| {
        codes
            .iter()
            .map(|code| CancellationReason::builder().code(*code).build())
            .collect()
    });
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .message("Transaction cancelled")
            .set_cancellation_reasons(reasons)
            .build(),
    )
}

#[tokio::test]
async fn a_transaction_cancelled_without_reasons_is_tried_again_one_claim_at_a_time() {
    let together = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|input| input.transact_items().len() > 3)
        .then_error(|| cancelled(None));
    let alone = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|input| input.transact_items().len() == 3)
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&together, &alone]);

    let answers = outbox(client)
        .claim_all(
            &three_confirmations(),
            &claim(),
            backoffice::runtime::job::Deadline::unbounded(),
        )
        .await;

    let answers: Vec<ClaimOutcome> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, vec![ClaimOutcome::Claimed; 3]);
    assert_eq!((together.num_calls(), alone.num_calls()), (1, 3));
}

#[tokio::test]
async fn a_throttled_claim_fails_alone_and_the_others_are_claimed_without_it() {
    // The second claim's message item was throttled; nothing else failed.
    let together = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|input| input.transact_items().len() == 9)
        .then_error(|| {
            cancelled(Some(&[
                "None",
                "None",
                "None",
                "ThrottlingError",
                "None",
                "None",
                "None",
                "None",
                "None",
            ]))
        });
    let without_it = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|input| input.transact_items().len() == 6)
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&together, &without_it]);

    let answers = outbox(client)
        .claim_all(
            &three_confirmations(),
            &claim(),
            backoffice::runtime::job::Deadline::unbounded(),
        )
        .await;

    assert_eq!(answers[0].as_ref().unwrap(), &ClaimOutcome::Claimed);
    let throttled = answers[1].as_ref().unwrap_err();
    assert!(throttled.retryable, "{throttled}");
    assert_eq!(answers[2].as_ref().unwrap(), &ClaimOutcome::Claimed);
    assert_eq!((together.num_calls(), without_it.num_calls()), (1, 1));
}
