//! One logical request to Slack: retries on 429, 5xx and timeouts, with `Retry-After` honoured
//! and every wait checked against the pass's time budget.

use std::time::Duration;

use crate::env::{Clock, HttpResponse, Transport, TransportError};
use crate::slack_error::{parse_retry_after, SlackError};

/// The end of a pass's time, in the clock's monotonic time.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Duration,
}

impl Deadline {
    pub fn after(clock: &dyn Clock, budget: Duration) -> Deadline {
        Deadline {
            at: clock.monotonic().saturating_add(budget),
        }
    }

    pub fn remaining(&self, clock: &dyn Clock) -> Duration {
        self.at.saturating_sub(clock.monotonic())
    }
}

/// Less than this left, and no new request starts: its answer could not be delivered and
/// checkpointed in time.
pub const MIN_REQUEST_BUDGET: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Used when a 429 carries no usable `Retry-After`.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// Why a request did not produce a usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// Slack said no, or kept failing after every retry.
    Slack(SlackError),
    /// No answer at all after every retry.
    Transport(TransportError),
    /// The time budget ran out, or a wait would outlast it. Not an error: the next pass resumes.
    Budget(String),
}

/// Counters a stream report shows, and Slack's clock as its last answer gave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    pub requests: u32,
    pub retries: u32,
    pub rate_limited: u32,
    /// The `Date` of the last answer that had one, error answers included.
    pub slack_clock: Option<SlackClock>,
}

/// Slack's clock against ours: the `Date` header of an answer and our wall clock when it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlackClock {
    pub date: i64,
    pub local: i64,
}

impl SlackClock {
    /// Slack's time minus ours, in seconds (negative: our clock is ahead).
    pub fn offset(&self) -> i64 {
        self.date.saturating_sub(self.local)
    }
}

/// Slack's "now" minus the lag: our clock, or Slack's when its last answer showed ours ahead.
/// A `Date` header has whole seconds and arrives after it was written, so an offset of -1 is
/// what clocks in step show; only the part beyond that counts (the lag, at least 2 s, covers it).
/// Never later than our own clock: a Slack clock ahead of ours changes nothing.
pub fn settled(now: i64, clock_offset: Option<i64>, lag: i64) -> i64 {
    let ahead = clock_offset.unwrap_or(0).saturating_add(1).min(0);
    now.saturating_add(ahead).saturating_sub(lag)
}

/// Keeps requests to one Slack method under its rate tier: a token bucket that allows a short
/// burst, then one request every `60 / per_minute` seconds.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    interval: Duration,
    capacity: f64,
    tokens: f64,
    last: Option<Duration>,
}

impl Pacer {
    /// `None` when `per_minute` is 0 (no pacing).
    pub fn per_minute(per_minute: u32) -> Option<Pacer> {
        (per_minute > 0).then(|| {
            // Slack welcomes "sporadic bursts": allow a sixth of a minute's allowance at once.
            let capacity = f64::from((per_minute / 6).max(1));
            Pacer {
                interval: Duration::from_secs(60) / per_minute,
                capacity,
                tokens: capacity,
                last: None,
            }
        })
    }

    /// How long to wait before the next request, taking its token.
    fn take(&mut self, now: Duration) -> Duration {
        if let Some(last) = self.last {
            let refill = (now.saturating_sub(last)).as_secs_f64() / self.interval.as_secs_f64();
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            let wait = self.interval.mul_f64(1.0 - self.tokens);
            self.tokens = 0.0;
            // The wait is spent before the request, so the clock at send time has no debt.
            self.last = Some(now.saturating_add(wait));
            wait
        }
    }
}

/// Sends GETs with retries. `ok` decides whether a response is a success (audit: HTTP 200;
/// Web API: HTTP 200 with `ok:true`, checked by the caller's parser).
pub struct Fetcher<'a> {
    pub transport: &'a mut dyn Transport,
    pub clock: &'a dyn Clock,
    pub deadline: Deadline,
    pub request_timeout: Duration,
    pub stats: FetchStats,
    pub log: &'a dyn Fn(&str),
    /// Pacing for the method this fetcher calls; `None` sends at once.
    pub pacer: Option<Pacer>,
}

impl Fetcher<'_> {
    /// GET `url` until a 2xx answer comes back, a non-retryable error, or the budget ends.
    pub fn get(&mut self, url: &str, token: &str) -> Result<HttpResponse, FetchError> {
        let mut backoff = BACKOFF_START;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = self.deadline.remaining(self.clock);
            if remaining < MIN_REQUEST_BUDGET {
                return Err(FetchError::Budget(
                    "the pass's time budget (max_run_seconds) ran out".into(),
                ));
            }
            if let Some(p) = self.pacer.as_mut() {
                let wait = p.take(self.clock.monotonic());
                if !wait.is_zero() {
                    if wait.saturating_add(MIN_REQUEST_BUDGET) > remaining {
                        return Err(FetchError::Budget(format!(
                            "pacing under Slack's rate limit needs a {:.1} s wait, more than the pass has left; the next pass resumes",
                            wait.as_secs_f64()
                        )));
                    }
                    self.clock.sleep(wait);
                }
            }
            let remaining = self.deadline.remaining(self.clock);
            let timeout = self
                .request_timeout
                .min(remaining.saturating_sub(MIN_REQUEST_BUDGET / 2));
            self.stats.requests += 1;
            let answer = self.transport.get(url, token, timeout);
            if let Some(date) = answer.as_ref().ok().and_then(HttpResponse::date_unix) {
                self.stats.slack_clock = Some(SlackClock {
                    date,
                    local: self.clock.now_unix(),
                });
            }
            let failure = match answer {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => {
                    // A Retry-After date is read against the answer's own Date (Slack's clock).
                    let now = resp.date_unix().unwrap_or_else(|| self.clock.now_unix());
                    let retry_after = resp
                        .retry_after
                        .as_deref()
                        .and_then(|v| parse_retry_after(v, now));
                    let e = SlackError::from_response(resp.status, retry_after, &resp.body);
                    if !e.is_retryable() {
                        return Err(FetchError::Slack(e));
                    }
                    Failure::Slack(e)
                }
                // A body over the cap will not shrink on a retry.
                Err(e @ TransportError::TooLarge { .. }) => return Err(FetchError::Transport(e)),
                Err(e) => Failure::Transport(e),
            };
            let wait = match &failure {
                Failure::Slack(SlackError::RateLimited { retry_after }) => {
                    self.stats.rate_limited += 1;
                    retry_after
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_RATE_LIMIT_WAIT)
                }
                _ => {
                    let w = backoff;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    w
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(failure.into_error());
            }
            let remaining = self.deadline.remaining(self.clock);
            // Saturating: the wait can come from a header (capped, but never trusted to be).
            if wait.saturating_add(MIN_REQUEST_BUDGET) > remaining {
                let what = match &failure {
                    Failure::Slack(e @ SlackError::RateLimited { .. }) => e.to_string(),
                    Failure::Slack(e) => e.to_string(),
                    Failure::Transport(e) => e.to_string(),
                };
                return Err(FetchError::Budget(format!(
                    "{what}; waiting {} s would outlast the pass's time budget, so the pass stopped here and the next one resumes",
                    wait.as_secs()
                )));
            }
            self.stats.retries += 1;
            (self.log)(&format!(
                "retrying in {:.1} s after: {}",
                wait.as_secs_f64(),
                failure.describe()
            ));
            self.clock.sleep(wait);
        }
    }
}

enum Failure {
    Slack(SlackError),
    Transport(TransportError),
}

impl Failure {
    fn into_error(self) -> FetchError {
        match self {
            Failure::Slack(e) => FetchError::Slack(e),
            Failure::Transport(e) => FetchError::Transport(e),
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Slack(e) => e.to_string(),
            Failure::Transport(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ScriptedTransport, TestClock};

    fn fetcher<'a>(t: &'a mut ScriptedTransport, c: &'a TestClock, budget: u64) -> Fetcher<'a> {
        Fetcher {
            transport: t,
            clock: c,
            deadline: Deadline::after(c, Duration::from_secs(budget)),
            request_timeout: Duration::from_secs(10),
            stats: FetchStats::default(),
            log: &|_| {},
            pacer: None,
        }
    }

    #[test]
    fn pacer_allows_a_burst_then_spaces_requests() {
        let mut p = Pacer::per_minute(60).unwrap();
        let t = Duration::from_secs(100);
        // 60/min: a burst of 10, then one a second.
        for _ in 0..10 {
            assert_eq!(p.take(t), Duration::ZERO);
        }
        assert_eq!(p.take(t), Duration::from_secs(1));
        assert_eq!(p.take(t + Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(
            p.take(t + Duration::from_secs(30)),
            Duration::ZERO,
            "refilled while idle"
        );
        assert!(Pacer::per_minute(0).is_none());
    }

    #[test]
    fn pacing_waits_count_against_the_budget() {
        let ok = || {
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: b"{}".to_vec(),
            })
        };
        let mut t = ScriptedTransport::new((0..10).map(|_| ok()).collect());
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 10);
        f.pacer = Pacer::per_minute(6);
        assert!(f.get("u", "t").is_ok());
        // 6/min = one every 10 s: the second request would wait past the 10 s budget.
        assert!(matches!(f.get("u", "t"), Err(FetchError::Budget(m)) if m.contains("pacing")));
    }

    #[test]
    fn honours_retry_after_then_succeeds() {
        let mut t = ScriptedTransport::new(vec![
            Ok(HttpResponse {
                status: 429,
                retry_after: Some("3".into()),
                date: None,
                body: vec![],
            }),
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: b"{}".to_vec(),
            }),
        ]);
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 25);
        assert_eq!(f.get("u", "t").unwrap().status, 200);
        assert_eq!(c.slept(), Duration::from_secs(3));
        assert_eq!(
            f.stats,
            FetchStats {
                requests: 2,
                retries: 1,
                rate_limited: 1,
                slack_clock: None,
            }
        );
    }

    #[test]
    fn stops_cleanly_when_wait_outlasts_budget() {
        let mut t = ScriptedTransport::new(vec![Ok(HttpResponse {
            status: 429,
            retry_after: Some("3600".into()),
            date: None,
            body: vec![],
        })]);
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 25);
        assert!(matches!(f.get("u", "t"), Err(FetchError::Budget(m)) if m.contains("3600")));
        assert_eq!(c.slept(), Duration::ZERO);
    }

    #[test]
    fn an_absurd_retry_after_ends_the_pass_cleanly() {
        // u64::MAX seconds once overflowed `wait + MIN_REQUEST_BUDGET` and trapped the component.
        for value in ["18446744073709551615", "99999999999999999999999999"] {
            let mut t = ScriptedTransport::new(vec![Ok(HttpResponse {
                status: 429,
                retry_after: Some(value.into()),
                date: None,
                body: vec![],
            })]);
            let c = TestClock::new(1000);
            let mut f = fetcher(&mut t, &c, 25);
            let e = f.get("u", "t").unwrap_err();
            assert!(
                matches!(&e, FetchError::Budget(m) if m.contains("86400 s would outlast")),
                "{e:?}"
            );
            assert_eq!(c.slept(), Duration::ZERO);
        }
    }

    #[test]
    fn a_retry_after_date_is_read_against_the_answers_date() {
        // Slack's clock (Date) is 1000 s behind ours; the date form still means "in 3 s".
        let mut t = ScriptedTransport::new(vec![
            Ok(HttpResponse {
                status: 429,
                retry_after: Some("Sun, 06 Nov 1994 08:49:40 GMT".into()),
                date: Some("Sun, 06 Nov 1994 08:49:37 GMT".into()),
                body: vec![],
            }),
            Ok(HttpResponse {
                status: 200,
                ..Default::default()
            }),
        ]);
        let c = TestClock::new(784_111_777 + 1000);
        let mut f = fetcher(&mut t, &c, 25);
        assert_eq!(f.get("u", "t").unwrap().status, 200);
        assert_eq!(c.slept(), Duration::from_secs(3));
    }

    #[test]
    fn backs_off_on_5xx_and_timeouts_then_gives_up() {
        let script = (0..10)
            .map(|i| {
                if i % 2 == 0 {
                    Err(TransportError::Timeout)
                } else {
                    Ok(HttpResponse {
                        status: 503,
                        ..Default::default()
                    })
                }
            })
            .collect();
        let mut t = ScriptedTransport::new(script);
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 600);
        let e = f.get("u", "t").unwrap_err();
        assert!(
            matches!(e, FetchError::Slack(SlackError::Server { status: 503, .. })),
            "{e:?}"
        );
        assert_eq!(f.stats.requests, MAX_ATTEMPTS);
        // 0.5 + 1 + 2 + 4 + 8
        assert_eq!(c.slept(), Duration::from_millis(15_500));
    }

    #[test]
    fn api_errors_are_not_retried() {
        let mut t = ScriptedTransport::new(vec![Ok(HttpResponse {
            status: 401,
            retry_after: None,
            date: None,
            body: b"{\"ok\":false,\"error\":\"invalid_authentication\"}".to_vec(),
        })]);
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 25);
        assert!(matches!(
            f.get("u", "t"),
            Err(FetchError::Slack(SlackError::Api { .. }))
        ));
        assert_eq!(f.stats.requests, 1);
    }

    #[test]
    fn no_request_starts_without_budget() {
        let mut t = ScriptedTransport::new(vec![]);
        let c = TestClock::new(1000);
        let mut f = fetcher(&mut t, &c, 1);
        assert!(matches!(f.get("u", "t"), Err(FetchError::Budget(_))));
        assert_eq!(f.stats.requests, 0);
    }
}
