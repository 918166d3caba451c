//! Giving freed heap back to the system. glibc's malloc keeps memory it
//! has handed out mapped after it is freed, above all when many small
//! allocations of different lifetimes interleave: 10,000 MCP sessions take
//! ~520 MiB, and without a trim the engine still holds all of it after
//! every session has expired (measured with `bench/memory.sh`, see
//! docs/performance.md). So whatever releases many allocations at once says
//! so ([`note_released`]), and a background task trims the heap once enough
//! has been released ([`trim_after_releases`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Things released since the last trim (sessions, streams).
static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// Released things that make a trim worth its cost (it walks the free
/// lists: a few milliseconds on a heap of hundreds of megabytes).
const TRIM_AFTER: usize = 256;

/// How often the background task looks.
const EVERY: Duration = Duration::from_secs(5);

/// Counts one released session or stream.
pub fn note_released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Hands freed heap back to the kernel now (glibc only; elsewhere the
/// allocator decides). Blocking for milliseconds: call it off the async
/// workers.
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it is
    // thread-safe and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims the heap on a blocking thread whenever at least [`TRIM_AFTER`]
/// sessions or streams were released since the last trim.
pub async fn trim_after_releases() {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let released = RELEASED.load(Ordering::Relaxed);
        if released < TRIM_AFTER {
            continue;
        }
        RELEASED.fetch_sub(released, Ordering::Relaxed);
        let started = std::time::Instant::now();
        if tokio::task::spawn_blocking(release_freed_heap)
            .await
            .is_ok()
        {
            tracing::debug!(
                released,
                took_ms = started.elapsed().as_millis() as u64,
                "gave freed heap back to the system"
            );
        }
    }
}
