//! The admin API's own limits, checked before any credential: a token
//! bucket per client IP (`[admin.rate_limit]`), and a throttle on failed
//! admin authentications (`[admin.auth_failures]`) so guessing tokens is
//! slow. Both live in this process: the admin API keeps working, and keeps
//! its limits, whatever Redis does.
//!
//! Failures are also what the audit log hears about, bounded: one row per
//! failure up to `max` per IP per window (after that the IP is throttled,
//! so few more can happen), one summary row when the throttle starts, and
//! at most [`ENGINE_ROWS_PER_WINDOW`] failure rows per window engine-wide,
//! however many addresses an attacker has.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{AdminAuthFailures, AdminRateLimit};
use crate::request::buckets::{Decision, LocalBuckets};

/// Failure rows per failure window across all client IPs; past it one
/// summary row says how many went unrecorded from then on.
pub const ENGINE_ROWS_PER_WINDOW: u32 = 1000;

/// Failures counted in a fixed window that starts at the first one.
#[derive(Debug)]
struct Failures {
    started: Instant,
    count: u32,
}

/// What one more failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// Below the limit: audit it.
    Row { count: u32 },
    /// This one reaches the limit: audit it, and say the throttle starts.
    Limit { count: u32, retry: Duration },
    /// Past the limit (requests that raced the throttle): count only.
    Silent { count: u32 },
}

impl Noted {
    /// Failures from this client in the window so far.
    pub fn count(&self) -> u32 {
        match *self {
            Noted::Row { count } | Noted::Limit { count, .. } | Noted::Silent { count } => count,
        }
    }
}

impl Failures {
    fn new(now: Instant) -> Self {
        Failures {
            started: now,
            count: 0,
        }
    }

    /// Starts a new window once the old one is over.
    fn roll(&mut self, now: Instant, window: Duration) {
        if now.saturating_duration_since(self.started) >= window {
            self.started = now;
            self.count = 0;
        }
    }

    fn left(&self, now: Instant, window: Duration) -> Duration {
        window.saturating_sub(now.saturating_duration_since(self.started))
    }

    /// How long the client must wait, when it has used up its failures.
    fn blocked(&mut self, now: Instant, window: Duration, max: u32) -> Option<Duration> {
        self.roll(now, window);
        (self.count >= max).then(|| self.left(now, window))
    }

    fn note(&mut self, now: Instant, window: Duration, max: u32) -> Noted {
        self.roll(now, window);
        self.count = self.count.saturating_add(1);
        match self.count {
            c if c < max => Noted::Row { count: c },
            c if c == max => Noted::Limit {
                count: c,
                retry: self.left(now, window),
            },
            c => Noted::Silent { count: c },
        }
    }
}

pub struct AdminGuard {
    buckets: LocalBuckets,
    limit: AdminRateLimit,
    failures: moka::future::Cache<String, Arc<Mutex<Failures>>>,
    /// Failure rows written engine-wide in the current window.
    engine_rows: Mutex<Failures>,
    max_failures: u32,
    failure_window: Duration,
}

impl AdminGuard {
    pub fn new(limit: &AdminRateLimit, failures: &AdminAuthFailures) -> Self {
        let failure_window = Duration::from_secs(u64::from(failures.window_s));
        AdminGuard {
            buckets: LocalBuckets::default(),
            limit: limit.clone(),
            // A client idle for a whole window has nothing left to count.
            failures: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(failure_window)
                .build(),
            engine_rows: Mutex::new(Failures::new(Instant::now())),
            max_failures: failures.max,
            failure_window,
        }
    }

    pub fn limit(&self) -> &AdminRateLimit {
        &self.limit
    }

    pub fn failure_window(&self) -> Duration {
        self.failure_window
    }

    /// Spends one of `ip`'s admin requests.
    pub async fn take(&self, ip: &str) -> Decision {
        let interval =
            (u64::from(self.limit.window_s) * 1_000_000 / u64::from(self.limit.requests)).max(1);
        self.buckets
            .take(ip, interval, u64::from(self.limit.burst))
            .await
    }

    async fn window_of(&self, ip: &str) -> Arc<Mutex<Failures>> {
        self.failures
            .get_with(ip.to_string(), async {
                Arc::new(Mutex::new(Failures::new(Instant::now())))
            })
            .await
    }

    /// How long `ip` must wait when it has failed too often.
    pub async fn blocked(&self, ip: &str) -> Option<Duration> {
        let cell = self.failures.get(ip).await?;
        let mut failures = cell.lock().unwrap_or_else(|p| p.into_inner());
        failures.blocked(Instant::now(), self.failure_window, self.max_failures)
    }

    /// Counts one failed admin authentication from `ip`. `Silent` also
    /// when the engine-wide row budget of this window is spent; `engine_full`
    /// is true for the one failure that spends it.
    pub async fn failed(&self, ip: &str) -> (Noted, bool) {
        let cell = self.window_of(ip).await;
        let noted = {
            let mut failures = cell.lock().unwrap_or_else(|p| p.into_inner());
            failures.note(Instant::now(), self.failure_window, self.max_failures)
        };
        if let Noted::Silent { .. } = noted {
            return (noted, false);
        }
        let mut engine = self.engine_rows.lock().unwrap_or_else(|p| p.into_inner());
        match engine.note(Instant::now(), self.failure_window, ENGINE_ROWS_PER_WINDOW) {
            Noted::Row { .. } => (noted, false),
            Noted::Limit { .. } => (noted, true),
            Noted::Silent { .. } => (
                Noted::Silent {
                    count: noted.count(),
                },
                false,
            ),
        }
    }
}

/// Names the credential an admin request tried, for the audit log and
/// never the secret: an API key by its public id (`kk_3f9a1c2b`), else
/// `jwt`, `admin-token` (any other bearer) or `none`.
pub fn tried_credential(headers: &axum::http::HeaderMap) -> String {
    use axum::http::header::AUTHORIZATION;
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(key) = api_key {
        return key_id(key.trim());
    }
    let Some(value) = bearer else {
        return "none".into();
    };
    let Some(token) = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return "other-scheme".into();
    };
    if token.starts_with(crate::identity::api_keys::PREFIX) {
        key_id(token)
    } else if token.split('.').count() == 3 {
        "jwt".into()
    } else {
        "admin-token".into()
    }
}

/// The public id of something shaped like an API key: `kk_` and the 8 hex
/// digits before the secret; anything else is only "malformed".
fn key_id(key: &str) -> String {
    let prefix = crate::identity::api_keys::PREFIX;
    let id = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('_').next())
        .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    match id {
        Some(id) => format!("{prefix}{id}"),
        None => "api-key(malformed)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_throttle_at_the_limit_until_the_window_ends() {
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut f = Failures::new(t0);
        assert_eq!(f.blocked(t0, window, 3), None);
        assert_eq!(f.note(t0, window, 3), Noted::Row { count: 1 });
        assert_eq!(f.note(t0, window, 3), Noted::Row { count: 2 });
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            f.note(at, window, 3),
            Noted::Limit {
                count: 3,
                retry: Duration::from_secs(50)
            }
        );
        assert_eq!(f.blocked(at, window, 3), Some(Duration::from_secs(50)));
        assert_eq!(f.note(at, window, 3), Noted::Silent { count: 4 });
        // The window counts from the first failure, not the last.
        let later = t0 + Duration::from_secs(59);
        assert_eq!(f.blocked(later, window, 3), Some(Duration::from_secs(1)));
        let over = t0 + window;
        assert_eq!(f.blocked(over, window, 3), None);
        assert_eq!(f.note(over, window, 3), Noted::Row { count: 1 });
    }

    #[tokio::test]
    async fn the_engine_wide_row_budget_caps_failure_rows_across_addresses() {
        let guard = AdminGuard::new(
            &AdminRateLimit::default(),
            &AdminAuthFailures {
                max: 1000,
                window_s: 60,
            },
        );
        let mut rows = 0;
        let mut full = 0;
        for i in 0..(ENGINE_ROWS_PER_WINDOW + 50) {
            let (noted, spent) = guard.failed(&format!("10.0.{}.{}", i / 256, i % 256)).await;
            if !matches!(noted, Noted::Silent { .. }) {
                rows += 1;
            }
            full += u32::from(spent);
        }
        assert_eq!((rows, full), (ENGINE_ROWS_PER_WINDOW, 1));
    }

    #[test]
    fn the_tried_credential_is_named_without_its_secret() {
        let with = |name: &str, value: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            tried_credential(&h)
        };
        assert_eq!(tried_credential(&axum::http::HeaderMap::new()), "none");
        assert_eq!(
            with("authorization", "Bearer kk_3f9a1c2b_SECRETSECRET"),
            "kk_3f9a1c2b"
        );
        assert_eq!(with("x-api-key", "kk_3f9a1c2b_SECRET"), "kk_3f9a1c2b");
        assert_eq!(
            with("authorization", "Bearer kk_SECRETSECRET"),
            "api-key(malformed)"
        );
        assert_eq!(with("authorization", "Bearer eyJa.eyJb.sig"), "jwt");
        assert_eq!(
            with("authorization", "Bearer guessed-admin-token"),
            "admin-token"
        );
        assert_eq!(with("authorization", "Basic dXNlcjpwdw=="), "other-scheme");
    }
}
