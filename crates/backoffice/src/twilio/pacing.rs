//! How fast and how often we call Twilio: a shared rate limiter, and the backoff between
//! retries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Paces requests to at most `max_per_second`, spread evenly: the bucket holds a single
/// permit, so there is never a burst above the configured rate (with 80 per second, one
/// request every 12.5 ms). Clones share the same bucket, so every concurrent send of a
/// batch draws from it.
#[derive(Clone)]
pub struct SendRateLimiter {
    limiter: Arc<DefaultDirectRateLimiter>,
    max_per_second: NonZeroU32,
}

impl SendRateLimiter {
    pub fn per_second(max_per_second: NonZeroU32) -> Self {
        let quota = Quota::per_second(max_per_second).allow_burst(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(RateLimiter::direct(quota)),
            max_per_second,
        }
    }

    /// Waits until one more request may go out, and takes its permit.
    pub async fn until_ready(&self) {
        self.limiter.until_ready().await;
    }

    pub fn max_per_second(&self) -> NonZeroU32 {
        self.max_per_second
    }
}

impl std::fmt::Debug for SendRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRateLimiter")
            .field("max_per_second", &self.max_per_second)
            .finish()
    }
}

/// When to try again after a retryable failure (see `SendError::is_retryable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles for each later one.
    pub initial_backoff: Duration,
    /// Ceiling for the doubled backoff.
    pub max_backoff: Duration,
    /// Ceiling for a `Retry-After` Twilio asks for, so one answer cannot hold a Lambda
    /// invocation for minutes.
    pub max_retry_after: Duration,
    /// The send's deadline (the run's, or the end of its claim's send span): no attempt,
    /// the first included, starts that could end after it, and the failure comes back for
    /// the next run, so a send never outlives the invocation and leaves a message it sent
    /// unrecorded. `None`: no deadline.
    pub retry_before: Option<crate::runtime::job::Deadline>,
}

impl Default for RetryPolicy {
    /// 3 attempts, backoff 500 ms then 1 s (each jittered to between half and all of it),
    /// `Retry-After` honoured up to 30 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            retry_before: None,
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `failed_attempt` (1 for the first).
    ///
    /// Exponential backoff with "equal jitter" (a random point between half and all of the
    /// backoff), so concurrent sends that failed together do not retry together; but never
    /// shorter than the server's `Retry-After`, capped at `max_retry_after`.
    pub fn delay_before_retry(&self, failed_attempt: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(16);
        let backoff = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = backoff / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// The default policy, retrying only what can end before `deadline`.
    pub fn until(deadline: crate::runtime::job::Deadline) -> Self {
        Self {
            retry_before: Some(deadline),
            ..Self::default()
        }
    }

    /// Whether a retry after `delay`, lasting up to `attempt`, ends before the deadline.
    pub(super) fn leaves_time_for(&self, delay: Duration, attempt: Duration) -> bool {
        self.retry_before
            .is_none_or(|deadline| deadline.leaves(delay.saturating_add(attempt)))
    }

    pub(super) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(5),
            retry_before: None,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_ceiling() {
        let policy = policy();
        for _ in 0..200 {
            let first = policy.delay_before_retry(1, None);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            let second = policy.delay_before_retry(2, None);
            assert!(
                (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&second),
                "{second:?}"
            );
            let capped = policy.delay_before_retry(30, None);
            assert!(
                (Duration::from_millis(175)..=Duration::from_millis(350)).contains(&capped),
                "{capped:?}"
            );
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let policy = policy();
        let delays: std::collections::HashSet<Duration> = (0..50).map(|_| policy.delay_before_retry(3, None)).collect();
        assert!(delays.len() > 1, "{delays:?}");
    }

    #[test]
    fn honours_retry_after_up_to_its_cap() {
        let policy = policy();
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
        // A Retry-After shorter than the backoff does not shorten it.
        let delay = policy.delay_before_retry(1, Some(Duration::ZERO));
        assert!(delay >= Duration::from_millis(50), "{delay:?}");
    }

    #[test]
    fn zero_attempts_still_means_one() {
        let policy = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.attempts(), 1);
    }

    #[tokio::test]
    async fn the_limiter_spreads_requests_without_an_initial_burst() {
        let limiter = SendRateLimiter::per_second(NonZeroU32::new(50).unwrap());
        let started = Instant::now();
        for _ in 0..6 {
            limiter.until_ready().await;
        }
        // The first permit is immediate, the next five come 20 ms apart.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(95), "{elapsed:?}");
    }
}
