//! The group commit. Every ledger write of this engine is queued here; one
//! task takes whatever is queued (up to [`MAX_BATCH`]) and writes it in one
//! transaction, then answers each caller. While a batch commits, the next
//! one gathers, so under load many calls share one commit and alone a call
//! waits for nothing but its own. A failed transaction is retried (another
//! engine's batch may have deadlocked with it on PostgreSQL); it either
//! applied whole or not at all, so a retry never counts twice. A commit
//! whose outcome is unknown (the connection dropped while committing) is
//! not retried: its callers hear the failure. After each commit, the
//! balance cache forgets the accounts the batch touched (`balances`).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::balances::Shared;
use crate::store::DataError;
use crate::store::ledger::{Applied, LedgerStore, Op};

/// The most operations in one transaction.
pub const MAX_BATCH: usize = 512;
/// Attempts of one batch before its callers hear the failure.
const ATTEMPTS: u32 = 4;

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Applied, DataError>>,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writing task; it ends when every `Writer` is dropped and
    /// the queue is written.
    pub fn start(store: LedgerStore, balances: Shared) -> Writer {
        let (queue, jobs) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(write(store, balances, jobs));
        Writer { queue }
    }

    /// Queues `op` and waits until the batch it went into has committed.
    pub async fn submit(&self, op: Op) -> Result<Applied, DataError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { op, reply })
            .await
            .map_err(|_| DataError::Unavailable("the ledger writer has stopped".into()))?;
        answer.await.map_err(|_| {
            DataError::Unavailable("the ledger writer stopped before answering".into())
        })?
    }
}

async fn write(store: LedgerStore, balances: Shared, mut jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ops: Vec<Op> = batch.iter().map(|j| j.op.clone()).collect();
        let mut attempt = 1;
        let result = loop {
            match store.apply(&ops).await {
                Ok(applied) => break Ok(applied),
                Err(e) if attempt < ATTEMPTS && !crate::store::ledger::is_uncertain(&e) => {
                    tracing::warn!(error = %e, attempt, ops = ops.len(), "ledger batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(applied) => {
                // Cached balances go stale before anyone hears back.
                balances.changed(&ops, &applied);
                for (job, applied) in batch.drain(..).zip(applied) {
                    let _ = job.reply.send(Ok(applied));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, ops = ops.len(), "ledger batch failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
