//! Accepting and keeping connections, within bounds: the engine's own
//! accept loop on hyper, so that a flood of connections that never finish
//! a request cannot take the file descriptors, and with them every other
//! client and the health check.
//!
//! - **Header read timeout** (`http.header_read_timeout_ms`): hyper's, for
//!   HTTP/1.1 heads, re-armed after every response (so also the keep-alive
//!   idle limit); for a connection that never sends a first request (or
//!   half an HTTP/2 preface, which hyper's protocol sniffing does not time)
//!   the watcher below applies the same limit.
//! - **Idle timeout** (`http.idle_timeout_ms`): a connection without a
//!   request in flight for that long is closed (HTTP/2 has no other).
//! - **Connection limit** (`http.max_connections`): at the limit the
//!   connection idle the longest is closed to make room — a slow-header
//!   flood is idle by definition, a client with a request in flight is
//!   never cut — and when every connection is busy the newcomer gets 503.
//!   Running out of file descriptors (`EMFILE`) is met the same way. One
//!   warning when the limit is first met, one line when it is over.
//!
//! Upgraded connections (WebSockets) leave hyper but stay counted, and the
//! shutdown drain waits for them too ([`Connections::all_closed`]).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Front;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The bounds, from `[http]`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_streams_per_connection: u32,
    /// HTTP/2's header list limit, in line with `http.max_header_bytes`.
    pub max_header_bytes: u32,
}

impl ConnectionLimits {
    pub fn from_config(http: &super::config::HttpConfig, open_files: Option<u64>) -> Self {
        ConnectionLimits {
            max_connections: http
                .max_connections
                .unwrap_or_else(|| default_max_connections(open_files)),
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            max_streams_per_connection: http.max_streams_per_connection,
            max_header_bytes: u32::try_from(http.max_header_bytes.0).unwrap_or(u32::MAX),
        }
    }
}

/// Three quarters of the open-file limit (the rest is for the database,
/// plugin files, outbound calls and Redis), at most 10,000.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    let files = open_files.unwrap_or(1024);
    usize::try_from(files / 4 * 3)
        .unwrap_or(usize::MAX)
        .clamp(16, 10_000)
}

/// One accepted connection, as the limit and the watchers see it.
struct Conn {
    accepted: Instant,
    /// Requests whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// Milliseconds since `accepted` when the last request ended.
    last_active_ms: AtomicU64,
    /// Whether any request started.
    used: AtomicBool,
    /// Told to close: the connection is needed for a newcomer.
    evict: Notify,
}

impl Conn {
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.accepted + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)))
    }
}

/// Every open connection, counted, upgraded ones included.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    /// Woken when `open` drops to zero.
    none: Notify,
    next_id: AtomicU64,
    /// Connections hyper still serves (not upgraded), by accept order.
    served: Mutex<BTreeMap<u64, Arc<Conn>>>,
    /// Whether the limit is being met now (for one log line per burst).
    saturated: AtomicBool,
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl Connections {
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub async fn all_closed(&self) {
        loop {
            let notified = self.none.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a drop in between still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the connection idle the longest to close; false when every
    /// connection has a request in flight.
    fn evict_one(&self) -> bool {
        let victim = self
            .served()
            .values()
            .filter_map(|c| c.idle_since().map(|since| (since, c.clone())))
            .min_by_key(|(since, _)| *since)
            .map(|(_, c)| c);
        match victim {
            Some(c) => {
                c.evict.notify_one();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn note_pressure(&self, limit: usize, why: &str) {
        if !self.saturated.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                connections = self.count(),
                limit,
                "{why}: closing the longest-idle connections for new ones, \
                 answering 503 when none is idle (http.max_connections)"
            );
        }
    }

    fn note_relief(&self, limit: usize) {
        if self.count() < limit / 10 * 9 && self.saturated.swap(false, Ordering::Relaxed) {
            tracing::info!(
                connections = self.count(),
                evicted = self.evicted.swap(0, Ordering::Relaxed),
                refused = self.refused.swap(0, Ordering::Relaxed),
                "connections are back under the limit"
            );
        }
    }
}

/// Serves `router` on `listener` until `stopping` is cancelled; then stops
/// accepting and asks every connection to finish what it is doing.
/// Returns once the listener is closed; [`Connections::all_closed`] says
/// when the connections are.
pub async fn serve(
    listener: TcpListener,
    router: Front,
    limits: ConnectionLimits,
    connections: Arc<Connections>,
    stopping: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(limits.max_header_bytes.saturating_add(4096))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_errors
                    .handle(&e, &connections, limits.max_connections)
                    .await;
                continue;
            }
        };
        // Streamed responses (MCP and GraphQL event streams) go out in
        // several writes; with Nagle's algorithm each small write after the
        // first waits for the client's delayed ACK, about 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let open = connections.open.fetch_add(1, Ordering::Relaxed) + 1;
        let io = CountedIo {
            io: stream,
            connections: connections.clone(),
        };
        if open > limits.max_connections {
            connections.note_pressure(limits.max_connections, "the connection limit is reached");
            if !connections.evict_one() {
                connections.refused.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse(io));
                continue;
            }
        } else {
            connections.note_relief(limits.max_connections);
        }
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            used: AtomicBool::new(false),
            evict: Notify::new(),
        });
        connections.served().insert(id, conn.clone());
        tokio::spawn(serve_one(
            builder.clone(),
            io,
            addr,
            router.clone(),
            conn,
            id,
            connections.clone(),
            limits.clone(),
            stopping.clone(),
        ));
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_one(
    builder: Arc<Builder<TokioExecutor>>,
    io: CountedIo,
    addr: SocketAddr,
    router: Front,
    conn: Arc<Conn>,
    id: u64,
    connections: Arc<Connections>,
    limits: ConnectionLimits,
    stopping: CancellationToken,
) {
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        let busy = Busy::start(tracked.clone());
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let response = router.oneshot(request.map(axum::body::Body::new)).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| TrackedBody { body, _busy: busy }),
            )
        }
    });
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut served = std::pin::pin!(served);
    let mut draining = false;
    loop {
        let deadline = idle_deadline(&conn, &limits);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = conn.evict.notified() => {
                // Only ever an idle connection: dropping it loses nothing.
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
            () = stopping.cancelled(), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
            () = sleep_until(deadline) => {
                // Worked out again: a request may have come and gone since
                // the deadline above, which then no longer holds.
                if idle_deadline(&conn, &limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%addr, "closing an idle connection");
                    break;
                }
            }
        }
    }
    connections.served().remove(&id);
}

/// When `conn` has been idle too long: the header read timeout before its
/// first request, the idle timeout after; none while a request is in flight.
fn idle_deadline(conn: &Conn, limits: &ConnectionLimits) -> Option<Instant> {
    let since = conn.idle_since()?;
    Some(if conn.used.load(Ordering::Relaxed) {
        since + limits.idle_timeout
    } else {
        since + limits.header_read_timeout
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        // Woken by the request's end instead: re-checked every second.
        None => tokio::time::sleep(Duration::from_secs(1)).await,
    }
}

/// A request in flight on its connection, until its response body is done.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Self {
        conn.used.store(true, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_active_ms.store(elapsed, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it
/// is sent (or dropped): a streaming response is a busy connection.
struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a connection beyond the limit when none can be closed.
async fn refuse(mut io: CountedIo) {
    let body = r#"{"error":{"code":"overloaded","message":"the engine has as many connections open as http.max_connections allows; try again shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

/// `accept` failures: out of file descriptors is pressure like the limit
/// (an idle connection is closed to free one); the rest are the peer's
/// business. Logged once per burst, never a pause of more than 10 ms.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_log: u64,
}

impl AcceptErrors {
    async fn handle(&mut self, e: &io::Error, connections: &Connections, limit: usize) {
        use io::ErrorKind::*;
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
        ) {
            return;
        }
        let out_of_files = matches!(
            e.raw_os_error(),
            Some(libc_codes::EMFILE | libc_codes::ENFILE)
        );
        if out_of_files {
            connections.note_pressure(limit, "out of file descriptors");
            connections.evict_one();
        }
        self.since_log += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                error = %e,
                failures = self.since_log,
                connections = connections.count(),
                "accepting connections fails"
            );
            self.last_logged = Some(Instant::now());
            self.since_log = 0;
        }
        // Whatever is wrong, the next accept may work: a connection closes,
        // an evicted one frees its descriptor.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The errno values for "too many open files", which std has no kind for.
mod libc_codes {
    pub const EMFILE: i32 = 24;
    pub const ENFILE: i32 = 23;
}

/// A connection that counts itself out when it is dropped.
struct CountedIo {
    io: TcpStream,
    connections: Arc<Connections>,
}

impl Drop for CountedIo {
    fn drop(&mut self) {
        if self.connections.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.connections.none.notify_waiters();
        }
    }
}

impl AsyncRead for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises the soft open-file limit to the hard one, so the connection
/// limit, not the kernel, decides; returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_follows_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(1 << 20)), 10_000);
        assert_eq!(default_max_connections(Some(8)), 16);
        assert_eq!(default_max_connections(None), 768);
    }

    fn conn(in_flight: usize, last_active_ms: u64) -> Arc<Conn> {
        Arc::new(Conn {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(in_flight),
            last_active_ms: AtomicU64::new(last_active_ms),
            used: AtomicBool::new(true),
            evict: Notify::new(),
        })
    }

    #[tokio::test]
    async fn eviction_takes_the_longest_idle_and_never_a_busy_connection() {
        let c = Connections::default();
        let busy = conn(1, 0);
        let recent = conn(0, 500);
        let oldest_idle = conn(0, 100);
        for (i, x) in [&busy, &recent, &oldest_idle].into_iter().enumerate() {
            c.served().insert(i as u64, x.clone());
        }
        assert!(c.evict_one());
        // notify_one stores a permit for the one it chose.
        let told = |x: &Arc<Conn>| {
            let n = x.evict.notified();
            let mut n = std::pin::pin!(n);
            n.as_mut().enable()
        };
        assert!(told(&oldest_idle));
        assert!(!told(&recent));
        assert!(!told(&busy));
        let c = Connections::default();
        c.served().insert(0, conn(2, 0));
        assert!(!c.evict_one(), "a busy connection is never cut");
    }
}
