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
//!
//! When Redis does not answer, each group does what its `on_redis_error`
//! says: spend from an in-process bucket (`local`, the default), refuse
//! (`deny`, 503) or pass (`allow`). The outage is logged once when it
//! begins and once when Redis answers again; meanwhile Redis is asked again
//! at most once per [`PROBE_INTERVAL`], so an outage does not add a timeout
//! to every request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use super::AppState;
use crate::config::RedisConfig;
use crate::identity::Caller;
use crate::request::buckets::{Decision, LocalBuckets, seconds};
use crate::request::client::ClientIps;
use crate::request::error::ApiError;
use crate::request::id::RequestId;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// The authenticated subject; anonymous callers by their IP.
    Principal,
    /// The client IP, whoever the caller is.
    Ip,
}

/// What a group does while its Redis store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Spend from an in-process bucket, per engine, until Redis answers.
    #[default]
    Local,
    /// Refuse with 503: the limit cannot be checked.
    Deny,
    /// Let the request through unlimited.
    Allow,
}

/// `[[rate_limits]]`: token buckets per principal or client IP, per group
/// of paths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RateLimits(pub Vec<RateLimitGroup>);

impl crate::config::Section for RateLimits {
    const KEY: &'static str = "rate_limits";

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let invalid = |m: &str| crate::config::invalid("rate_limits", m);
        let mut names = std::collections::BTreeSet::new();
        for group in &self.0 {
            group.validate().map_err(|m| invalid(&m))?;
            if !names.insert(group.name.as_str()) {
                return Err(invalid(&format!("two groups are named '{}'", group.name)));
            }
        }
        Ok(())
    }
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
    /// What to do while Redis (`redis.url`) does not answer; unused
    /// without Redis.
    #[serde(default)]
    pub on_redis_error: OnRedisError,
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

/// While Redis is down, it is asked again at most this often (one request
/// probes; the others go straight to their group's fallback).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the Redis store is in an outage, and when to ask it again.
/// Transitions are atomic swaps, so concurrent requests log an outage's
/// start and end once each.
struct Outage {
    down: AtomicBool,
    /// Microseconds since `epoch` before which nobody asks Redis (while down).
    next_probe_us: AtomicU64,
    epoch: Instant,
}

impl Outage {
    fn new() -> Self {
        Outage {
            down: AtomicBool::new(false),
            next_probe_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Whether this request should ask Redis: always when it is up; while
    /// it is down, one request per probe interval.
    fn should_ask(&self, now_us: u64) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let due = self.next_probe_us.load(Ordering::Acquire);
        now_us >= due
            && self
                .next_probe_us
                .compare_exchange(
                    due,
                    now_us + PROBE_INTERVAL.as_micros() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Redis failed; true when this starts an outage.
    fn failed(&self, now_us: u64) -> bool {
        self.next_probe_us.store(
            now_us + PROBE_INTERVAL.as_micros() as u64,
            Ordering::Release,
        );
        !self.down.swap(true, Ordering::AcqRel)
    }

    /// Redis answered; true when this ends an outage.
    fn answered(&self) -> bool {
        self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel)
    }
}

enum Store {
    Local(LocalBuckets),
    Redis {
        conn: ConnectionManager,
        script: redis::Script,
        /// The buckets of `on_redis_error = "local"` groups during an outage.
        fallback: LocalBuckets,
        outage: Outage,
        /// The longest one call may take, reconnecting included: past it
        /// the call counts as failed.
        deadline: Duration,
    },
}

/// What spending a token came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spent {
    Decided(Decision),
    /// Redis did not answer and the group lets requests pass.
    Unlimited,
    /// Redis did not answer and the group refuses.
    Unavailable,
}

pub struct RateLimiter {
    groups: Vec<RateLimitGroup>,
    store: Store,
    /// Where the client IP comes from.
    client_ips: ClientIps,
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
                    .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)))
                    // Reconnecting is retried on the next probe anyway;
                    // a long retry ladder would only hold the probe up.
                    .set_number_of_retries(1);
                let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(|e| format!("redis: {e}"))?;
                Store::Redis {
                    conn,
                    script: redis::Script::new(GCRA_SCRIPT),
                    fallback: LocalBuckets::default(),
                    outage: Outage::new(),
                    deadline: Duration::from_millis(
                        config.connect_timeout_ms + config.response_timeout_ms,
                    ),
                }
            }
            None => Store::Local(LocalBuckets::default()),
        };
        Ok(RateLimiter {
            groups,
            store,
            client_ips: ClientIps::new(client_ip_header)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    async fn take(&self, group: &RateLimitGroup, key: &str) -> Spent {
        let interval = group.interval_us();
        let burst = u64::from(group.burst());
        let (conn, script, fallback, outage, deadline) = match &self.store {
            Store::Local(buckets) => {
                return Spent::Decided(buckets.take(key, interval, burst).await);
            }
            Store::Redis {
                conn,
                script,
                fallback,
                outage,
                deadline,
            } => (conn, script, fallback, outage, *deadline),
        };
        if outage.should_ask(outage.now_us()) {
            let mut conn = conn.clone();
            let mut invocation = script.key(format!("kiln:ratelimit:{key}"));
            invocation.arg(interval).arg(burst);
            let call = invocation.invoke_async::<(i64, i64, i64)>(&mut conn);
            let answer = match tokio::time::timeout(deadline, call).await {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
            };
            match answer {
                Ok((allowed, remaining, wait)) => {
                    if outage.answered() {
                        tracing::warn!(
                            "rate limit store recovered: Redis answers again; shared buckets are \
                             in use again"
                        );
                    }
                    return Spent::Decided(Decision {
                        allowed: allowed == 1,
                        remaining: remaining.max(0) as u64,
                        wait: Duration::from_micros(wait.max(0) as u64),
                    });
                }
                Err(e) => {
                    if outage.failed(outage.now_us()) {
                        tracing::error!(
                            error = %e,
                            "rate limit store outage began: Redis does not answer; each \
                             [[rate_limits]] group does what its on_redis_error says (local: an \
                             in-process bucket; deny: 503; allow: unlimited) until it answers again"
                        );
                    }
                }
            }
        }
        match group.on_redis_error {
            OnRedisError::Local => Spent::Decided(fallback.take(key, interval, burst).await),
            OnRedisError::Deny => Spent::Unavailable,
            OnRedisError::Allow => Spent::Unlimited,
        }
    }

    /// The client's IP (`http.client_ip_header`, else the socket's peer).
    pub fn client_ip(&self, request: &Request) -> String {
        self.client_ips.ip(request)
    }

    /// Where client IPs come from, for the front doors' own bounds.
    pub fn client_ips(&self) -> &ClientIps {
        &self.client_ips
    }
}

pub(crate) static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub(crate) static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Takes from every group the request's path falls in and runs `next`, or
/// answers 429 (503 when a group's store cannot be asked) without calling
/// it; the tightest group's `RateLimit-*` headers go on the response.
pub async fn around<F>(
    app: &AppState,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let limiter = &app.rate_limiter;
    if limiter.is_empty() {
        return next(request).await;
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
            Spent::Decided(d) => d,
            Spent::Unlimited => continue,
            Spent::Unavailable => {
                let request_id = RequestId::of(request.extensions()).to_string();
                // 503, not 429: the client did not exceed anything; the
                // engine cannot check, and says so as a server-side fault
                // a client retries later.
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate_limit_unavailable",
                    format!(
                        "the '{}' rate limit cannot be checked: its store (Redis) does not \
                         answer and the group refuses requests then (on_redis_error = \"deny\"); \
                         retry shortly",
                        group.name
                    ),
                )
                .with_header(
                    header::RETRY_AFTER,
                    HeaderValue::from(seconds(PROBE_INTERVAL)),
                )
                .with_request_id(&request_id)
                .into_response();
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
        return next(request).await;
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
        next(request).await
    } else {
        let request_id = RequestId::of(request.extensions()).to_string();
        tracing::info!(group = %group.name, request_id, "rate limited");
        ApiError::rate_limited(
            format!(
                "too many requests: the '{}' limit allows {} per {} s (bursts of {}); retry in {} s",
                group.name,
                group.requests,
                group.window_s,
                group.burst(),
                seconds(decision.wait)
            ),
            decision.wait,
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

    #[test]
    fn on_redis_error_defaults_to_local_and_names_its_choices() {
        let g: RateLimitGroup =
            toml::from_str("name = \"a\"\nper = \"ip\"\nrequests = 1\nwindow_s = 1").unwrap();
        assert_eq!(g.on_redis_error, OnRedisError::Local);
        for (text, want) in [
            ("allow", OnRedisError::Allow),
            ("deny", OnRedisError::Deny),
            ("local", OnRedisError::Local),
        ] {
            let g: RateLimitGroup = toml::from_str(&format!(
                "name = \"a\"\nper = \"ip\"\nrequests = 1\nwindow_s = 1\non_redis_error = \"{text}\""
            ))
            .unwrap();
            assert_eq!(g.on_redis_error, want);
        }
        let bad = toml::from_str::<RateLimitGroup>(
            "name = \"a\"\nper = \"ip\"\nrequests = 1\nwindow_s = 1\non_redis_error = \"pass\"",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn an_outage_starts_and_ends_once_and_redis_is_probed_once_per_interval() {
        let o = Outage::new();
        let step = PROBE_INTERVAL.as_micros() as u64;
        // Up: every request asks.
        assert!(o.should_ask(0) && o.should_ask(0));
        assert!(!o.answered(), "no outage to end");
        // The first failure starts the outage; the next ones do not again.
        assert!(o.failed(10));
        assert!(!o.failed(11));
        // Down: nobody asks until the probe is due, then exactly one.
        assert!(!o.should_ask(12));
        assert!(!o.should_ask(10 + step / 2));
        assert!(o.should_ask(11 + step));
        assert!(!o.should_ask(11 + step));
        // The probe fails: still the same outage, next probe an interval on.
        assert!(!o.failed(11 + step));
        assert!(!o.should_ask(12 + step));
        assert!(o.should_ask(11 + 2 * step));
        // It answers: the outage ends once, and everyone asks again.
        assert!(o.answered());
        assert!(!o.answered());
        assert!(o.should_ask(12 + 2 * step) && o.should_ask(12 + 2 * step));
        // A new failure is a new outage.
        assert!(o.failed(20 + 2 * step));
    }

    fn group(on_redis_error: &str) -> RateLimitGroup {
        toml::from_str(&format!(
            "name = \"g\"\nper = \"ip\"\nrequests = 1\nwindow_s = 60\nburst = 2\non_redis_error = \"{on_redis_error}\""
        ))
        .unwrap()
    }

    /// A Redis nobody listens on: port 1 on loopback refuses at once.
    fn unreachable_redis(groups: Vec<RateLimitGroup>) -> RateLimiter {
        let config = RedisConfig::default();
        RateLimiter::new(groups, Some((&config, "redis://127.0.0.1:1")), None).unwrap()
    }

    #[tokio::test]
    async fn without_redis_each_group_does_what_on_redis_error_says() {
        let (local, deny, allow) = (group("local"), group("deny"), group("allow"));
        let limiter = unreachable_redis(vec![local.clone(), deny.clone(), allow.clone()]);
        // local: the budget of two still holds, in process.
        let mut local_seen = Vec::new();
        for _ in 0..3 {
            match limiter.take(&local, "g:ip:1").await {
                Spent::Decided(d) => local_seen.push(d.allowed),
                other => panic!("local fell back to {other:?}"),
            }
        }
        assert_eq!(local_seen, vec![true, true, false]);
        // deny: refused; allow: unlimited, however many.
        assert_eq!(limiter.take(&deny, "g:ip:2").await, Spent::Unavailable);
        for _ in 0..5 {
            assert_eq!(limiter.take(&allow, "g:ip:3").await, Spent::Unlimited);
        }
    }
}
