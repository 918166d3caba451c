//! Rate limits: token buckets per principal or per client IP, one set per
//! `[[rate_limits]]` group of paths. Buckets live in process by default and
//! in Redis when `redis.url` is set, so several engines share one budget.
//!
//! The bucket is kept as GCRA (the "theoretical arrival time" form of a
//! token bucket): one number per key, updated atomically — in a mutex in
//! process, in a Lua script in Redis, on Redis's clock so engines with
//! skewed clocks agree. A bucket holds `burst` tokens and refills
//! `requests` every `window_s`.
//!
//! A refused request gets 429 with `Retry-After`; every limited response
//! carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
//! (seconds), from the group closest to its limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::request_id::RequestId;
use crate::config::RedisConfig;
use crate::identity::Caller;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// The authenticated subject; anonymous callers by their IP.
    Principal,
    /// The client IP, whoever the caller is.
    Ip,
}

/// One `[[rate_limits]]` group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitGroup {
    /// Names the group in keys, logs and `RateLimit-Policy`.
    pub name: String,
    /// Path patterns (`/graphql`, `/notes*`); every path when absent.
    #[serde(default)]
    pub paths: Vec<String>,
    pub per: Per,
    /// Tokens added per window.
    pub requests: u32,
    pub window_s: u32,
    /// The most a bucket holds: how big a burst passes at once (default
    /// `requests`).
    pub burst: Option<u32>,
}

impl RateLimitGroup {
    pub fn validate(&self) -> Result<(), String> {
        let at = format!("rate_limits '{}'", self.name);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(format!(
                "{at}: the name must be 1-64 characters of letters, digits, '_', '-', '.'"
            ));
        }
        if self.requests == 0 || self.window_s == 0 || self.burst == Some(0) {
            return Err(format!(
                "{at}: requests, window_s and burst must be at least 1"
            ));
        }
        for p in &self.paths {
            crate::identity::access::check_path_pattern(p).map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(())
    }

    fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests)
    }

    /// Time between two tokens, in microseconds.
    fn interval_us(&self) -> u64 {
        (u64::from(self.window_s) * 1_000_000 / u64::from(self.requests)).max(1)
    }

    fn applies_to(&self, path: &str) -> bool {
        self.paths.is_empty()
            || self.paths.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
    }
}

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
fn gcra(tat: Option<u64>, now: u64, interval: u64, burst: u64) -> (Decision, Option<u64>) {
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

/// The same algorithm in Redis, on Redis's clock. Keys expire once full.
const GCRA_SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor((now + burst * interval - new_tat) / interval), new_tat - now}
";

enum Store {
    Local {
        buckets: moka::future::Cache<String, Arc<std::sync::Mutex<u64>>>,
        epoch: Instant,
    },
    Redis {
        conn: ConnectionManager,
        script: redis::Script,
    },
}

pub struct RateLimiter {
    groups: Vec<RateLimitGroup>,
    store: Store,
    /// Where the client IP comes from, when not the socket's peer.
    client_ip_header: Option<HeaderName>,
}

impl RateLimiter {
    pub fn new(
        groups: Vec<RateLimitGroup>,
        redis: Option<(&RedisConfig, &str)>,
        client_ip_header: Option<&str>,
    ) -> Result<RateLimiter, String> {
        let store = match redis {
            Some((config, url)) => {
                let client =
                    redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
                    .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)));
                let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(|e| format!("redis: {e}"))?;
                Store::Redis {
                    conn,
                    script: redis::Script::new(GCRA_SCRIPT),
                }
            }
            None => Store::Local {
                // Idle buckets are full buckets: forgetting them after an
                // hour without use changes nothing but memory.
                buckets: moka::future::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
                epoch: Instant::now(),
            },
        };
        let client_ip_header = client_ip_header
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("http.client_ip_header {h:?} is not a header name"))
            })
            .transpose()?;
        Ok(RateLimiter {
            groups,
            store,
            client_ip_header,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    async fn take(&self, group: &RateLimitGroup, key: &str) -> Result<Decision, String> {
        let interval = group.interval_us();
        let burst = u64::from(group.burst());
        match &self.store {
            Store::Local { buckets, epoch } => {
                let now = epoch.elapsed().as_micros() as u64;
                let cell = buckets
                    .get_with(key.to_string(), async {
                        Arc::new(std::sync::Mutex::new(u64::MAX))
                    })
                    .await;
                let mut tat = cell.lock().unwrap_or_else(|p| p.into_inner());
                let stored = (*tat != u64::MAX).then_some(*tat);
                let (decision, new_tat) = gcra(stored, now, interval, burst);
                if let Some(t) = new_tat {
                    *tat = t;
                }
                Ok(decision)
            }
            Store::Redis { conn, script } => {
                let mut conn = conn.clone();
                let (allowed, remaining, wait): (i64, i64, i64) = script
                    .key(format!("kiln:ratelimit:{key}"))
                    .arg(interval)
                    .arg(burst)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Decision {
                    allowed: allowed == 1,
                    remaining: remaining.max(0) as u64,
                    wait: Duration::from_micros(wait.max(0) as u64),
                })
            }
        }
    }

    /// The client's IP: from `http.client_ip_header` when configured and
    /// present, else the socket's peer.
    pub fn client_ip(&self, request: &Request) -> String {
        if let Some(name) = &self.client_ip_header
            && let Some(first) = request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return first.to_string();
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Whole seconds, rounded up (a client told 0 would retry at once).
fn seconds(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

pub async fn layer(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let limiter = &app.rate_limiter;
    if limiter.is_empty() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    let ip = limiter.client_ip(&request);
    // The group closest to its limit speaks for the response.
    let mut tightest: Option<(&RateLimitGroup, Decision)> = None;
    for group in limiter.groups.iter().filter(|g| g.applies_to(&path)) {
        let who = match (group.per, caller.principal()) {
            (Per::Principal, Some(p)) => format!("p:{}", p.subject),
            _ => format!("ip:{ip}"),
        };
        let decision = match limiter.take(group, &format!("{}:{who}", group.name)).await {
            Ok(d) => d,
            Err(e) => {
                // A limiter that cannot be asked does not stop traffic;
                // the outage is logged (rate limits protect, they do not
                // authorize).
                tracing::error!(group = %group.name, error = %e, "rate limit store unavailable; request let through");
                continue;
            }
        };
        let tighter = match &tightest {
            None => true,
            Some((_, d)) => !decision.allowed || (d.allowed && decision.remaining < d.remaining),
        };
        if tighter {
            tightest = Some((group, decision));
        }
        if !decision.allowed {
            break;
        }
    }
    let Some((group, decision)) = tightest else {
        return next.run(request).await;
    };
    let headers = [
        (LIMIT.clone(), group.burst().to_string()),
        (REMAINING.clone(), decision.remaining.to_string()),
        (RESET.clone(), seconds(decision.wait).to_string()),
        (
            POLICY.clone(),
            format!("{};w={}", group.requests, group.window_s),
        ),
    ];
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        tracing::info!(group = %group.name, request_id, "rate limited");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests: the '{}' limit allows {} per {} s (bursts of {}); retry in {} s",
                group.name,
                group.requests,
                group.window_s,
                group.burst(),
                seconds(decision.wait)
            ),
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(seconds(decision.wait)),
        )
        .with_request_id(&request_id)
        .into_response()
    };
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
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

    #[test]
    fn groups_match_their_paths() {
        let g: RateLimitGroup = toml::from_str(
            "name = \"api\"\npaths = [\"/graphql\", \"/notes*\"]\nper = \"ip\"\nrequests = 10\nwindow_s = 1",
        )
        .unwrap();
        assert!(g.validate().is_ok());
        assert!(g.applies_to("/graphql") && g.applies_to("/notes/1"));
        assert!(!g.applies_to("/graphql/ws") && !g.applies_to("/hello"));
        assert_eq!(g.interval_us(), 100_000);
        let bad: RateLimitGroup =
            toml::from_str("name = \"a b\"\nper = \"ip\"\nrequests = 1\nwindow_s = 1").unwrap();
        assert!(bad.validate().unwrap_err().contains("name"));
    }
}
