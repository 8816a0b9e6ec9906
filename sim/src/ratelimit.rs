//! Token buckets for Slack's tiers: Tier 2 per (method, workspace) for team.*,
//! Tier 3 org-wide for the audit API.

use std::collections::HashMap;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// Takes one token from the bucket `key`. On failure returns the whole seconds
    /// to wait (the `Retry-After` value, at least 1).
    pub(crate) fn take(&mut self, key: &str, per_minute: u32, burst: u32) -> Result<(), u64> {
        let now = Instant::now();
        let capacity = burst.max(1) as f64;
        let rate = per_minute.max(1) as f64 / 60.0;
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited() {
        let mut r = RateLimiter::default();
        for _ in 0..5 {
            assert!(r.take("k", 20, 5).is_ok());
        }
        let wait = r.take("k", 20, 5).unwrap_err();
        assert!((1..=3).contains(&wait), "{wait}");
        assert!(r.take("other", 20, 5).is_ok());
    }
}
