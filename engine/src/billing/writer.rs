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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::balances::Shared;
use crate::store::DataError;
use crate::store::ledger::{Applied, LedgerStore, LedgerWriter, Op, PostgresLedger, SqliteLedger};
use crate::store::sqlite_direct::WalEnd;

/// The most operations in one transaction.
pub const MAX_BATCH: usize = 512;
/// Attempts of one batch before its callers hear the failure.
const ATTEMPTS: u32 = 4;

struct Job {
    op: Op,
    reply: Reply,
}

type Reply = oneshot::Sender<Result<Applied, DataError>>;

/// A batch: the operations, and who waits for each (`None` once answered:
/// a hold may be answered before its batch commits).
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    replies: Vec<Option<Reply>>,
}

impl Batch {
    /// Waits for jobs (taking everything queued, up to [`MAX_BATCH`]);
    /// false once every `Writer` is dropped and the queue is empty.
    async fn gather(&mut self, jobs: &mut mpsc::Receiver<Job>, buffer: &mut Vec<Job>) -> bool {
        if jobs.recv_many(buffer, MAX_BATCH).await == 0 {
            return false;
        }
        // Moved, not cloned: the operations own their strings.
        for job in buffer.drain(..) {
            self.ops.push(job.op);
            self.replies.push(Some(job.reply));
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Answers everyone not answered yet with the failure `e`, and empties
    /// the batch.
    fn fail(&mut self, e: &DataError) {
        for reply in self.replies.iter_mut().filter_map(Option::take) {
            let _ = reply.send(Err(e.clone()));
        }
        self.ops.clear();
        self.replies.clear();
    }
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    progress: Arc<Progress>,
}

/// How far the SQLite writer has got, in batches: a hold answered before
/// its batch committed is visible to other connections (and the balance
/// cache) only once that batch has ended, which [`Writer::ended`] awaits.
/// The PostgreSQL writer answers after each commit and leaves it at zero.
struct Progress {
    /// The number of the batch being written (counted from 1).
    started: AtomicU64,
    /// The number of the last batch that committed or failed, its
    /// callers answered and the balance cache told.
    ended: watch::Sender<u64>,
}

/// Ends every batch when dropped.
struct EndAll(Arc<Progress>);

impl Drop for EndAll {
    fn drop(&mut self) {
        self.0.end(u64::MAX);
    }
}

impl Progress {
    fn begin(&self) -> u64 {
        self.started.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn end(&self, batch: u64) {
        self.ended.send_replace(batch);
    }
}

impl Writer {
    /// Starts the writer: on SQLite a thread of its own, on PostgreSQL a
    /// task. It ends when every `Writer` is dropped and the queue is
    /// written.
    pub fn start(store: LedgerStore, balances: Shared) -> Result<Writer, String> {
        let (queue, jobs) = mpsc::channel(MAX_BATCH * 8);
        let progress = Arc::new(Progress {
            started: AtomicU64::new(0),
            ended: watch::Sender::new(0),
        });
        match store.writer() {
            LedgerWriter::Sqlite(sqlite) => {
                // The batch's statements run synchronously; on a thread of
                // their own they never stall a runtime worker, and need no
                // hand-off of the worker's other tasks (`block_in_place`).
                // The thread awaits only its queue and its connection,
                // never a timer, so a runtime that shuts down under it
                // leaves it to end when its queue closes.
                let runtime = tokio::runtime::Handle::current();
                let progress = progress.clone();
                std::thread::Builder::new()
                    .name("kiln-ledger".into())
                    .spawn(move || {
                        // However the thread ends (a panic included), no
                        // reader waits for a batch that will never end.
                        let _unblock = EndAll(progress.clone());
                        runtime.block_on(write_sqlite(sqlite, balances, jobs, &progress))
                    })
                    .map_err(|e| format!("cannot start the ledger writer's thread: {e}"))?;
            }
            LedgerWriter::Postgres(postgres) => {
                tokio::spawn(write_postgres(postgres, balances, jobs));
            }
        }
        Ok(Writer { queue, progress })
    }

    /// The batch a hold answered just now went into (or a later one): the
    /// hold is visible outside the writer once [`Writer::ended`] that
    /// batch. Zero on PostgreSQL, whose holds are answered committed.
    pub fn batch_now(&self) -> u64 {
        self.progress.started.load(Ordering::Acquire)
    }

    /// Waits until `batch` has ended (committed, or failed and so taken
    /// its holds with it), or the writer's thread has ended.
    pub async fn ended(&self, batch: u64) {
        let mut ended = self.progress.ended.subscribe();
        let _ = ended.wait_for(|n| *n >= batch).await;
    }

    /// Queues `op` and waits until the batch it went into has committed
    /// (a hold on SQLite: until its statements ran in that batch; see
    /// [`write_sqlite`]).
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

/// PostgreSQL: each batch in one transaction (one round trip, see
/// [`PostgresLedger::apply`]), its callers answered after the commit.
async fn write_postgres(postgres: PostgresLedger, balances: Shared, mut jobs: mpsc::Receiver<Job>) {
    let mut buffer: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
    while batch.gather(&mut jobs, &mut buffer).await {
        let mut attempt = 1;
        let result = loop {
            match postgres.apply(&batch.ops).await {
                Ok(applied) => break Ok(applied),
                Err(e) if attempt < ATTEMPTS && !crate::store::ledger::is_uncertain(&e) => {
                    tokio::time::sleep(retrying(&e, attempt, batch.ops.len())).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        answer(&mut batch, result, &balances);
    }
}

/// SQLite: this process is the database's only ledger writer, so a hold
/// is answered as soon as its statements ran in the open transaction,
/// before the COMMIT (everything after it in this connection sees it);
/// the call then waits for one commit, its post's, not two. Should that
/// commit fail, the hold is gone with its batch: the call's post finds no
/// hold and the call fails with `billing_unavailable` (nothing charged,
/// never a free answer). Until the commit only this connection sees the
/// hold: a reader that must see it waits on [`Progress`]. Every other
/// movement is answered after its commit.
async fn write_sqlite(
    sqlite: SqliteLedger,
    balances: Shared,
    mut jobs: mpsc::Receiver<Job>,
    progress: &Progress,
) {
    let mut buffer: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
    loop {
        // One connection for as long as it works.
        let served = sqlite
            .writer(async |writer| {
                loop {
                    if batch.is_empty() && !batch.gather(&mut jobs, &mut buffer).await {
                        return Served::Closed;
                    }
                    let number = progress.begin();
                    let mut attempt = 1;
                    let (result, broken) = loop {
                        let Batch { ops, replies } = &mut batch;
                        let (result, broken) = writer.apply(ops, |i, applied| {
                            if matches!(ops[i], Op::Hold { .. })
                                && let Some(reply) = replies[i].take()
                            {
                                let _ = reply.send(Ok(applied.clone()));
                            }
                        });
                        match result {
                            Err(e)
                                if !broken
                                    && attempt < ATTEMPTS
                                    && !crate::store::ledger::is_uncertain(&e) =>
                            {
                                // This thread's own to block.
                                std::thread::sleep(retrying(&e, attempt, ops.len()));
                                attempt += 1;
                            }
                            result => break (result, broken),
                        }
                    };
                    answer(&mut batch, result, &balances);
                    progress.end(number);
                    if broken {
                        // A connection left inside a transaction is not used again.
                        return Served::Broken;
                    }
                    // After the callers heard back: the WAL's end costs
                    // one short checkpoint now and then.
                    let started = std::time::Instant::now();
                    match writer.end_wal_if_long() {
                        Ok(WalEnd::Short | WalEnd::Busy) => {}
                        Ok(WalEnd::Copied { frames, copied }) => {
                            tracing::debug!(frames, copied, took = ?started.elapsed(), "ledger writer ended the WAL")
                        }
                        Err(e) => tracing::warn!(error = %e, "ledger writer's checkpoint failed"),
                    }
                }
            })
            .await;
        match served {
            Ok(Served::Closed) => return,
            Ok(Served::Broken) => {}
            Err(e) => {
                // No connection: what is queued hears it; the next batch
                // tries again.
                tracing::error!(error = %e, "the ledger writer cannot open its connection");
                if batch.is_empty() && !batch.gather(&mut jobs, &mut buffer).await {
                    return;
                }
                batch.fail(&e);
                progress.end(progress.begin());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

enum Served {
    /// Every `Writer` was dropped and the queue is written.
    Closed,
    /// The connection cannot be used again.
    Broken,
}

/// Logs a failed batch's retry; how long to wait before it.
fn retrying(e: &DataError, attempt: u32, ops: usize) -> Duration {
    tracing::warn!(error = %e, attempt, ops, "ledger batch failed; retrying");
    Duration::from_millis(5 << attempt)
}

/// Answers the batch's callers (those not answered yet) and empties it.
fn answer(batch: &mut Batch, result: Result<Vec<Applied>, DataError>, balances: &Shared) {
    match result {
        Ok(applied) => {
            // Cached balances go stale before anyone hears back.
            balances.changed(&batch.ops, &applied);
            for (reply, applied) in batch.replies.iter_mut().zip(applied) {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(applied));
                }
            }
            batch.ops.clear();
            batch.replies.clear();
        }
        Err(e) => {
            tracing::error!(error = %e, ops = batch.ops.len(), "ledger batch failed");
            batch.fail(&e);
        }
    }
}
