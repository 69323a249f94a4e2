//! Every outgoing message of an order's or a cart's life: the kinds and their settings,
//! what each subject's changes schedule, and the one engine that sends them.

pub mod caps;
pub mod consent;
pub mod delivery;
pub mod eligibility;
pub mod engine;
pub mod kind;
pub mod outbox;
pub mod plan;
pub mod quiet;
pub mod reconcile;
pub mod run;
pub mod sender;
