//! Settlement: the posted, unsettled charges are deducted from their
//! accounts' balances, in batches of `billing.settle_batch`, each batch one
//! transaction that both deducts and marks its entries with the settlement
//! id. A crash between batches leaves the committed ones settled and the
//! rest pending; the next run takes the rest, so every entry is deducted
//! exactly once. One settler at a time ([`LedgerStore::try_settle_lock`]).

use std::time::Duration;

use super::now_ms;
use crate::store::DataError;
use crate::store::ledger::LedgerStore;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub settlement: String,
    pub batches: u32,
    pub entries: i64,
    pub amount: i64,
}

/// The test hook that pauses between batches, so a test can kill the
/// process in the middle of a settlement: `KILN_TEST_SETTLE_PAUSE_MS`.
pub fn test_pause() -> Option<Duration> {
    std::env::var("KILN_TEST_SETTLE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// Settles what is pending; `None` when another settler is at it.
pub async fn settle(
    store: &LedgerStore,
    batch: u32,
    pause: Option<Duration>,
) -> Result<Option<Report>, DataError> {
    let Some(lock) = store.try_settle_lock().await? else {
        return Ok(None);
    };
    let settlement = format!("stl_{}", uuid::Uuid::new_v4().simple());
    store.begin_settlement(&settlement, now_ms()).await?;
    let mut report = Report {
        settlement: settlement.clone(),
        batches: 0,
        entries: 0,
        amount: 0,
    };
    loop {
        let (entries, amount) = store.settle_batch(&settlement, batch).await?;
        if entries == 0 {
            break;
        }
        report.batches += 1;
        report.entries += entries;
        report.amount += amount;
        tracing::info!(
            settlement,
            batch = report.batches,
            entries,
            amount,
            "settled a batch"
        );
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    store.finish_settlement(&settlement, now_ms()).await?;
    lock.release().await;
    Ok(Some(report))
}
