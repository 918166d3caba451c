//! Compiling a component on a thread of its own, at the lowest CPU
//! priority. A cold compile of a JavaScript component takes seconds of CPU;
//! on the blocking pool at normal priority it took a full core from the
//! request path (hello route throughput halved while it ran on 2 cores,
//! docs/performance.md). At `nice 19` the scheduler gives requests the CPU
//! first and the compile what is left, so it only takes longer under load.
//!
//! A thread of its own because a thread's priority cannot be raised back
//! without privileges: a pool thread left at `nice 19` would slow every
//! later blocking task it runs. wasmtime's parallel compilation fans the
//! work out to rayon's global pool, whose threads [`low_priority_pool`]
//! starts at `nice 19` as well, so a compile still uses every idle core.

use tokio::sync::oneshot;

/// Runs `work` on a new low-priority thread and waits for its result.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("kiln-compile".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a compiler thread: {e}"))?;
    rx.await
        .map_err(|_| "the compiler thread ended without an answer (it panicked)".to_string())
}

/// Builds rayon's global pool (wasmtime's parallel compilation runs on
/// it) with its threads at `nice 19`. Call once, before the first compile;
/// a pool built already (by an embedder) is left as it is.
pub fn low_priority_pool() {
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("kiln-compile-{i}"))
        .start_handler(|_| lower_priority())
        .build_global();
    if built.is_err() {
        tracing::debug!("rayon's global pool exists already; compiling at its priority");
    }
}

/// This thread to `nice 19`. Best effort: where it fails the compile runs
/// at normal priority.
fn lower_priority() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's scheduling priority.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("cannot lower the compiler thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_and_a_panic_is_an_error() {
        assert_eq!(super::run(|| 6 * 7).await, Ok(42));
        let e = super::run(|| -> u8 { panic!("on purpose") })
            .await
            .unwrap_err();
        assert!(e.contains("panicked"), "{e}");
    }
}
