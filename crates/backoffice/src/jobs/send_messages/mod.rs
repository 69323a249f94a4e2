//! `send-messages`: every minute, every message of the Messages table whose time has come
//! (order confirmation, payment and pickup reminders, ready for pickup, satisfaction
//! check, review reminder, abandoned cart) goes out through the one message engine
//! ([`crate::messages::engine`]): claimed together with a check that its order or cart
//! still qualifies, sent once, settled, or parked for reconciliation when unsure.

mod config;
mod metrics;

use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::LambdaEvent;
use serde_json::Value;

use crate::messages::engine::{DispatchOptions, Messenger, Outbox, dispatch};
use crate::messages::run::{DispatchResponse, finish_dispatch};
use crate::runtime::clock::Clock;
use crate::runtime::job::{Deadline, JobError, begin_run, read_payload};
use crate::runtime::trigger::JobPayload;

pub use config::{OutboxTablesConfig, SendMessagesConfig};

pub const FUNCTION_NAME: &str = "send-messages";

/// The function's answer.
pub type SendMessagesResponse = DispatchResponse;

/// What `main.rs` builds once per cold start.
pub struct SendMessagesDeps<O, M> {
    pub outbox: O,
    pub messenger: M,
    pub clock: Arc<dyn Clock>,
    pub config: SendMessagesConfig,
}

pub async fn handle<O: Outbox, M: Messenger>(
    deps: &SendMessagesDeps<O, M>,
    event: LambdaEvent<JobPayload>,
) -> Result<SendMessagesResponse, JobError> {
    let deadline = Deadline::from_context(&event.context, deps.config.stop_margin);
    let payload = read_payload(FUNCTION_NAME, &event.payload)?;
    run(deps, &payload, deadline, &event.context.request_id).await
}

/// One run, for the handler and for local tools. `run_id` tags this run's claims.
pub async fn run<O: Outbox, M: Messenger>(
    deps: &SendMessagesDeps<O, M>,
    payload: &Value,
    deadline: Deadline,
    run_id: &str,
) -> Result<SendMessagesResponse, JobError> {
    let started = Instant::now();
    let (request, as_of) = begin_run(FUNCTION_NAME, payload, &deps.clock)?;
    let config = &deps.config;
    // Due as of the run's `now` (a manual catch-up may look ahead); claims, send times and
    // the too-late check use the real clock.
    let due_before = as_of.now();
    let options = DispatchOptions {
        due_before,
        too_old_before: None,
        page_size: config.page_size,
        concurrency: config.concurrency,
        dry_run: request.dry_run,
        claim_id: run_id.to_owned(),
        stale_claim_after: config.stale_claim_after,
        function: FUNCTION_NAME,
        quiet: config.quiet.clone(),
    };
    let outcome = dispatch(&deps.outbox, &deps.messenger, deps.clock.as_ref(), deadline, &options).await;
    finish_dispatch(
        FUNCTION_NAME,
        &request,
        outcome,
        due_before,
        deps.clock.now(),
        started,
        metrics::metrics,
    )
}
