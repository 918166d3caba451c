//! Per-plugin admission: at most `max_concurrency` calls run, at most
//! `queue_size` wait, and none waits longer than `queue_timeout`. Anything
//! beyond is refused at once, so a slow plugin costs bounded memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `queue_size` calls were already waiting.
    QueueFull,
    /// Waited `queue_timeout` without a slot.
    WaitTimeout,
    /// Every instance slot of the engine (`runtime.max_instances`) is in
    /// use by running calls.
    NoInstanceSlot { max_instances: u32 },
}

pub struct Gate {
    slots: Semaphore,
    waiting: AtomicU32,
    queue_size: u32,
    queue_timeout: Duration,
}

impl Gate {
    pub fn new(max_concurrency: u32, queue_size: u32, queue_timeout: Duration) -> Self {
        Gate {
            slots: Semaphore::new(max_concurrency as usize),
            waiting: AtomicU32::new(0),
            queue_size,
            queue_timeout,
        }
    }

    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_size {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::QueueFull);
        }
        let _leave = LeaveQueue(&self.waiting);
        match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout anyway.
            Ok(Err(_)) | Err(_) => Err(Refusal::WaitTimeout),
        }
    }

    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }
}

struct LeaveQueue<'a>(&'a AtomicU32);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_refused_at_once_and_waiters_time_out() {
        let gate = Gate::new(1, 1, Duration::from_millis(50));
        let held = gate.enter().await.unwrap();
        // One waiter fits in the queue and times out.
        let waiter = gate.enter();
        tokio::pin!(waiter);
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        assert_eq!(gate.waiting(), 1);
        // The second is refused immediately.
        assert_eq!(gate.enter().await.unwrap_err(), Refusal::QueueFull);
        assert_eq!(waiter.await.unwrap_err(), Refusal::WaitTimeout);
        assert_eq!(gate.waiting(), 0);
        drop(held);
        assert!(gate.enter().await.is_ok());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_when_it_frees() {
        let gate = Gate::new(1, 4, Duration::from_secs(5));
        let held = gate.enter().await.unwrap();
        let (r, _) = tokio::join!(gate.enter(), async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(held);
        });
        assert!(r.is_ok());
    }

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
