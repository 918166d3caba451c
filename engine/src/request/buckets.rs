//! Token buckets (GCRA on one stored arrival time) in this process, keyed
//! by string: the rate limits' local store, the admin API's own limit and
//! MCP's session-creation rate use them.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Tokens left after this request.
    pub remaining: u64,
    /// Until the bucket is full again (allowed) or the next token (refused).
    pub wait: Duration,
}

/// GCRA on one stored arrival time (`tat`, microseconds). Returns the
/// decision and the new `tat` to store when allowed.
pub(crate) fn gcra(
    tat: Option<u64>,
    now: u64,
    interval: u64,
    burst: u64,
) -> (Decision, Option<u64>) {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(burst * interval);
    if now < allow_at {
        return (
            Decision {
                allowed: false,
                remaining: 0,
                wait: Duration::from_micros(allow_at - now),
            },
            None,
        );
    }
    let remaining = (now + burst * interval - new_tat) / interval;
    (
        Decision {
            allowed: true,
            remaining,
            wait: Duration::from_micros(new_tat - now),
        },
        Some(new_tat),
    )
}

/// GCRA buckets in this process, keyed by string.
pub struct LocalBuckets {
    buckets: moka::future::Cache<String, Arc<std::sync::Mutex<u64>>>,
    epoch: Instant,
}

impl Default for LocalBuckets {
    fn default() -> Self {
        LocalBuckets {
            // Idle buckets are full buckets: forgetting them after an hour
            // without use changes nothing but memory.
            buckets: moka::future::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            epoch: Instant::now(),
        }
    }
}

impl LocalBuckets {
    /// Spends one token of `key`'s bucket (`interval_us` between tokens,
    /// `burst` at most).
    pub async fn take(&self, key: &str, interval_us: u64, burst: u64) -> Decision {
        let now = self.epoch.elapsed().as_micros() as u64;
        let cell = self
            .buckets
            .get_with(key.to_string(), async {
                Arc::new(std::sync::Mutex::new(u64::MAX))
            })
            .await;
        let mut tat = cell.lock().unwrap_or_else(|p| p.into_inner());
        let stored = (*tat != u64::MAX).then_some(*tat);
        let (decision, new_tat) = gcra(stored, now, interval_us, burst);
        if let Some(t) = new_tat {
            *tat = t;
        }
        decision
    }
}

/// Whole seconds, rounded up (a client told 0 would retry at once).
pub fn seconds(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_passes_its_burst_then_one_token_per_interval() {
        let (interval, burst) = (1_000_000, 3); // one per second, bursts of three
        let mut tat = None;
        let mut now = 0;
        for expected_remaining in [2, 1, 0] {
            let (d, t) = gcra(tat, now, interval, burst);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = t;
        }
        let (d, t) = gcra(tat, now, interval, burst);
        assert!(!d.allowed);
        assert_eq!(d.wait, Duration::from_secs(1));
        assert_eq!(t, None);
        // A second later, one more.
        now += 1_000_000;
        let (d, t) = gcra(tat, now, interval, burst);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        tat = t;
        // Long idle: full again, never more than the burst.
        now += 100_000_000;
        let (d, _) = gcra(tat, now, interval, burst);
        assert_eq!(d.remaining, 2);
    }
}
