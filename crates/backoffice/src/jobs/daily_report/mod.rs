//! `daily-report`: every morning at `ReportHour` shop time, the previous shop day's
//! figures ([`crate::report`]) go to the owner: an e-mail through SNS and/or a WhatsApp
//! template to the admin number. The figures come from that day's counters, one
//! `GetItem` whatever the size of the tables, and are emitted as metrics, so the
//! dashboard's "Daily report" row shows the same numbers.
//!
//! Each channel is claimed on the day's item before it is sent and marked once sent, so
//! a duplicate schedule delivery or a retry sends the report once per channel; a channel
//! that failed is given back and retried by Lambda's retry, the others are not resent.
//! A manual run takes the usual payload: `{"now": "<a time on the day after>", "dryRun": true}`
//! previews that day, `"backfill": true` sends it.

mod config;
mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

pub use config::ReportConfig;

use crate::report::DailyReport;
use crate::report::counters::DailyCounters;
use crate::runtime::clock::Clock;
use crate::runtime::job::{Deadline, JobError, begin_run, read_payload};
use crate::runtime::trigger::{JobPayload, TriggerSource};
use crate::twilio::{MessageContent, TwilioClient, sanitize_template_variable};

pub const FUNCTION_NAME: &str = "daily-report";

/// [`ReportDeps::channel_time`] with the default timeouts: the claim's write (15 s at
/// most), a send bounded by the SDK's 15 s operation timeout (Twilio's 10 s is shorter),
/// then the write that marks it.
pub const DEFAULT_CHANNEL_TIME: Duration = Duration::from_secs(45);

/// Delivers the report on the owner's channels. SNS and Twilio in production; a
/// recording fake in tests.
pub trait ReportSender: Send + Sync {
    /// The channels configured, by name (`email`, `whatsapp`).
    fn channels(&self) -> Vec<&'static str>;

    fn deliver(
        &self,
        channel: &'static str,
        report: &DailyReport,
        config: &ReportConfig,
    ) -> impl Future<Output = Result<(), DeliveryFailure>> + Send;
}

/// Why a report did not go out on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub reason: String,
    /// The request may have reached the channel (a timeout, a gateway error): the report
    /// is not sent again, so the owner never gets it twice.
    pub may_have_been_delivered: bool,
}

impl DeliveryFailure {
    /// A failure the channel answered: nothing went out.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            may_have_been_delivered: false,
        }
    }
}

/// The owner's channels: an SNS topic (e-mail) and a WhatsApp template.
pub struct OwnerChannels {
    pub sns: Option<(aws_sdk_sns::Client, String)>,
    pub whatsapp: Option<TwilioClient>,
}

impl ReportSender for OwnerChannels {
    fn channels(&self) -> Vec<&'static str> {
        let mut channels = Vec::new();
        if self.sns.is_some() {
            channels.push("email");
        }
        if self.whatsapp.is_some() {
            channels.push("whatsapp");
        }
        channels
    }

    async fn deliver(
        &self,
        channel: &'static str,
        report: &DailyReport,
        config: &ReportConfig,
    ) -> Result<(), DeliveryFailure> {
        match (channel, &self.sns, &self.whatsapp, &config.whatsapp) {
            ("email", Some((client, topic)), _, _) => crate::aws::publish(
                client,
                topic,
                &format!("Daily report {}", report.day),
                &report.render(config.locale, &config.currency),
            )
            .await
            .map_err(|error| DeliveryFailure {
                may_have_been_delivered: crate::aws::may_have_published(&error),
                reason: aws_sdk_sns::error::DisplayErrorContext(&error).to_string(),
            }),
            ("whatsapp", _, Some(twilio), Some((to, template_sid))) => {
                let content = MessageContent::Template {
                    content_sid: template_sid.clone(),
                    variables: BTreeMap::from([
                        ("1".to_owned(), report.day.clone()),
                        (
                            "2".to_owned(),
                            sanitize_template_variable(&report.summary_line(config.locale, &config.currency), "-"),
                        ),
                    ]),
                };
                twilio
                    .send_whatsapp(to, &content)
                    .await
                    .map(|_| ())
                    .map_err(|error| DeliveryFailure {
                        may_have_been_delivered: error.may_have_been_delivered(),
                        reason: error.to_string(),
                    })
            }
            _ => Err(DeliveryFailure::refused(format!("channel {channel} is not configured"))),
        }
    }
}

pub struct ReportDeps<S> {
    pub counters: DailyCounters,
    pub sender: S,
    pub clock: Arc<dyn Clock>,
    pub config: ReportConfig,
    /// The longest one channel can take: the claim's write, its send's timeout, then the
    /// write that marks it. A channel is claimed only while this much of the invocation is
    /// left, so a run cut off by its timeout never leaves a claim it had no time to use
    /// (the claim would keep Lambda's retries off that channel).
    pub channel_time: Duration,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResponse {
    pub success: bool,
    pub day: String,
    pub dry_run: bool,
    pub source: TriggerSource,
    /// Channels the report went out on in this run.
    pub sent: Vec<&'static str>,
    /// Channels not sent in this run, and why (`already_sent`, `claimed_elsewhere`).
    pub skipped: BTreeMap<&'static str, &'static str>,
    /// Channels that failed, with the error; given back for a retry.
    pub failed: BTreeMap<&'static str, String>,
    pub report: DailyReport,
    pub timestamp: DateTime<Utc>,
}

pub async fn handle<S: ReportSender>(
    deps: &ReportDeps<S>,
    event: LambdaEvent<JobPayload>,
) -> Result<ReportResponse, JobError> {
    let payload = read_payload(FUNCTION_NAME, &event.payload)?;
    run_until(
        deps,
        &payload,
        Deadline::from_context(&event.context, deps.channel_time),
    )
    .await
}

/// The shop day before `now`'s, `YYYY-MM-DD`.
pub fn day_before(now: DateTime<Utc>, timezone: &jiff::tz::TimeZone) -> String {
    let today = jiff::Timestamp::from_second(now.timestamp())
        .map(|ts| ts.to_zoned_datetime(timezone.clone()).date())
        .unwrap_or_default();
    today
        .yesterday()
        .map(|day| day.to_string())
        .unwrap_or_else(|_| today.to_string())
}

/// A run with all the time it needs (tools, tests).
pub async fn run<S: ReportSender>(deps: &ReportDeps<S>, payload: &Value) -> Result<ReportResponse, JobError> {
    run_until(deps, payload, Deadline::unbounded()).await
}

/// A run that claims no channel once `deadline` is reached.
pub async fn run_until<S: ReportSender>(
    deps: &ReportDeps<S>,
    payload: &Value,
    deadline: Deadline,
) -> Result<ReportResponse, JobError> {
    let (request, as_of) = begin_run(FUNCTION_NAME, payload, &deps.clock)?;
    // The day before the one the scheduler meant: a run retried or delayed past midnight
    // still reports the day it was scheduled for, not the one that just started.
    let reference = match request.scheduled_time {
        Some(at) if request.now_override.is_none() && at <= deps.clock.now() => at,
        _ => as_of.now(),
    };
    let day = day_before(reference, &deps.config.timezone);
    let stored = deps.counters.day(&day).await?;
    let report = DailyReport::from_day(&stored);
    let mut response = ReportResponse {
        success: true,
        day: day.clone(),
        dry_run: request.dry_run,
        source: request.source,
        sent: Vec::new(),
        skipped: BTreeMap::new(),
        failed: BTreeMap::new(),
        report,
        timestamp: deps.clock.now(),
    };
    if !request.dry_run {
        for channel in deps.sender.channels() {
            if stored.reported.contains_key(channel) {
                response.skipped.insert(channel, "already_sent");
                continue;
            }
            if deadline.reached() {
                let reason = format!(
                    "not claimed: less than {} s left before the invocation's timeout; Lambda's retry sends it",
                    deps.channel_time.as_secs()
                );
                response.failed.insert(channel, reason);
                continue;
            }
            if !deps.counters.claim_report(&day, channel, deps.clock.now()).await? {
                response.skipped.insert(channel, "claimed_elsewhere");
                continue;
            }
            match deps.sender.deliver(channel, &response.report, &deps.config).await {
                Ok(()) => {
                    deps.counters
                        .settle_report(&day, channel, Some(deps.clock.now()))
                        .await?;
                    response.sent.push(channel);
                }
                Err(failure) if failure.may_have_been_delivered => {
                    // Kept as sent: a second report is worse than one the owner looks up.
                    deps.counters
                        .settle_report(&day, channel, Some(deps.clock.now()))
                        .await?;
                    let reason = format!("{} (may have been delivered: not sent again)", failure.reason);
                    response.failed.insert(channel, reason);
                }
                Err(failure) => {
                    deps.counters.settle_report(&day, channel, None).await?;
                    response.failed.insert(channel, failure.reason);
                }
            }
        }
    }
    response.success = response.failed.is_empty();
    tracing::info!(
        function = FUNCTION_NAME,
        day = %response.day,
        dry_run = response.dry_run,
        sent = ?response.sent,
        skipped = ?response.skipped,
        failed = ?response.failed,
        report = %serde_json::to_string(&response.report).unwrap_or_default(),
        "report summary"
    );
    if !request.dry_run {
        crate::runtime::metrics::emit(&metrics::metrics(&response.report));
    }
    if !response.failed.is_empty() {
        return Err(JobError::ItemsFailed {
            failed: response.failed.len() as u64,
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_about_the_shop_day_before() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        // 08:00 in Paris on 3 December.
        assert_eq!(
            day_before("2026-12-03T07:00:00Z".parse().unwrap(), &paris),
            "2026-12-02"
        );
        // 00:30 on 29 March (the spring DST day) is still the 29th in Paris.
        assert_eq!(
            day_before("2026-03-28T23:30:00Z".parse().unwrap(), &paris),
            "2026-03-28"
        );
        // 08:00 on 1 January.
        assert_eq!(
            day_before("2027-01-01T07:00:00Z".parse().unwrap(), &paris),
            "2026-12-31"
        );
    }
}
