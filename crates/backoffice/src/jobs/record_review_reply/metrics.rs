//! The webhook's `reply summary` log line and its metrics.

use super::alerts::NEGATIVE_RATING_MAX;
use super::rating::RatingSource;
use super::{AlertStatus, FUNCTION_NAME, ReplyOutcome, ReplyResult};
use crate::messages::delivery::{Milestone, Recorded, StatusUpdate};
use crate::runtime::job::JobError;
use crate::runtime::metrics::{Metric, MetricDocument, Unit};

/// The fields of the `reply summary` log line and of the metrics.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) outcome: Option<ReplyOutcome>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) from: Option<String>,
    pub(crate) message_sid: Option<String>,
    pub(crate) result: Option<ReplyResult>,
    /// Answered by the shop's own handler.
    pub(crate) forwarded: bool,
    /// A status callback, and what recording it did.
    pub(crate) delivery: Option<(StatusUpdate, Recorded)>,
    pub(crate) duration_ms: u64,
}

impl Summary {
    pub(crate) fn log(&self, error: Option<&JobError>) {
        let outcome = self.outcome.map_or("error", ReplyOutcome::as_str);
        let result = self.result.as_ref();
        tracing::info!(
            function = FUNCTION_NAME,
            outcome,
            reason = self.reason,
            from = self.from.as_deref(),
            message_sid = self.message_sid.as_deref(),
            order_id = result.and_then(|r| r.order_id.as_deref()),
            rating = result.and_then(|r| r.rating),
            source = result.and_then(|r| r.source).map(RatingSource::as_str),
            alert = result.map(|r| <&str>::from(r.alert)),
            forwarded = self.forwarded,
            message_id = self.delivery.as_ref().map(|(update, _)| update.id.to_string()),
            delivery_status = self.delivery.as_ref().map(|(update, _)| update.status.as_str()),
            error_code = self.delivery.as_ref().and_then(|(update, _)| update.error_code),
            recorded = self.delivery.as_ref().map(|(_, recorded)| match recorded {
                Recorded::Advanced(_) => "advanced",
                Recorded::Stale => "stale",
                Recorded::NotOurs => "not_ours",
            }),
            duration_ms = self.duration_ms,
            error = error.map(|e| e.to_string()),
            "reply summary"
        );
    }

    pub(crate) fn metrics(&self) -> Vec<MetricDocument> {
        let count = |name, value: bool| Metric {
            name,
            unit: Unit::Count,
            value: u64::from(value),
        };
        let result = self.result.as_ref();
        let written = matches!(self.outcome, Some(ReplyOutcome::Recorded | ReplyOutcome::Corrected));
        let rating = result.and_then(|r| r.rating).filter(|_| written);
        let mut metrics = vec![
            count("ReviewsRecorded", written),
            count("NegativeReviews", rating.is_some_and(|r| r <= NEGATIVE_RATING_MAX)),
            count(
                "RejectedSignatures",
                self.outcome == Some(ReplyOutcome::RejectedSignature),
            ),
            count("RepliesNotARating", self.outcome == Some(ReplyOutcome::NotARating)),
            count("OptOuts", self.outcome == Some(ReplyOutcome::OptedOut)),
            count("OptIns", self.outcome == Some(ReplyOutcome::OptedIn)),
            count("RepliesForwarded", self.forwarded),
            count(
                "NegativeReviewAlertFailures",
                result.is_some_and(|r| r.alert == AlertStatus::Failed),
            ),
            Metric {
                name: "ReplyDuration",
                unit: Unit::Milliseconds,
                value: self.duration_ms,
            },
        ];
        // Only written reviews: the metric's Average statistic is the average rating.
        if let Some(rating) = rating {
            metrics.push(Metric {
                name: "ReviewRating",
                unit: Unit::Count,
                value: u64::from(rating),
            });
        }
        let mut documents = vec![MetricDocument {
            dimensions: vec![("Function", FUNCTION_NAME.to_owned())],
            metrics,
        }];
        documents.extend(self.delivery_metrics());
        documents
    }

    /// A status callback's milestones, once each: the totals (dimension `Function`, for
    /// the undelivered-rate alarm), per kind (`Function`, `Kind`), and failures per error
    /// code (`Function`, `ErrorCode`).
    fn delivery_metrics(&self) -> Vec<MetricDocument> {
        let Some((update, Recorded::Advanced(milestones))) = &self.delivery else {
            return Vec::new();
        };
        let count = |wanted: fn(&Milestone) -> bool| milestones.iter().filter(|m| wanted(m)).count() as u64;
        let figures = vec![
            Metric::count("MessagesDelivered", count(|m| *m == Milestone::Delivered)),
            Metric::count("MessagesRead", count(|m| *m == Milestone::Read)),
            Metric::count("MessagesUndelivered", count(|m| matches!(m, Milestone::Failed { .. }))),
        ];
        let function = || ("Function", FUNCTION_NAME.to_owned());
        let mut documents = vec![
            MetricDocument {
                dimensions: vec![function()],
                metrics: figures.clone(),
            },
            MetricDocument {
                dimensions: vec![function(), ("Kind", update.id.kind.as_str().to_owned())],
                metrics: figures,
            },
        ];
        for milestone in milestones {
            if let Milestone::Failed { error_code } = milestone {
                documents.push(MetricDocument {
                    dimensions: vec![
                        function(),
                        (
                            "ErrorCode",
                            error_code.map_or("none".to_owned(), |code| code.to_string()),
                        ),
                    ],
                    metrics: vec![Metric::count("MessagesUndelivered", 1)],
                });
            }
        }
        documents
    }
}
