//! Balances as callers read them (`GET /_kiln/v1/billing/me`, the
//! `billing.balance` import), from a cache of `billing.balance_cache_ms`.
//! Every ledger batch this engine commits drops the accounts it touched
//! before its callers hear back, and tells the other engines through Redis
//! (`kiln:billing:balances`), which drop them too. Holds never read this
//! cache: a hold is granted by the conditional statement in the database,
//! so a stale entry can mislead a reader for a moment but never spend money
//! that is not there.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::DataError;
use crate::store::announce::{Announcer, Listener};
use crate::store::ledger::{Account, Applied, LedgerStore, Op};

const CHANNEL: &str = "kiln:billing:balances";
/// What a batch that touched every account (expired holds) announces.
const EVERYTHING: &str = "*";
/// Beyond this many cached accounts the cache starts over: bounded memory
/// whatever the number of callers.
const MAX_ENTRIES: usize = 100_000;

pub struct Balances {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<Account>)>>,
    /// Bumped by every invalidation: a read that began before one does
    /// not cache what it read (it may predate the change).
    generation: std::sync::atomic::AtomicU64,
}

/// The cache and how its news travels.
#[derive(Clone)]
pub struct Shared {
    pub balances: Arc<Balances>,
    announcer: Announcer,
}

impl Listener for Balances {
    fn heard(&self, payload: &str) {
        if payload == EVERYTHING {
            self.forget_all();
            return;
        }
        // The bump and the removal under one lock: a read that began
        // before them cannot put its older figure back afterwards.
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        for account in payload.lines() {
            entries.remove(account);
        }
    }

    fn missed(&self) {
        self.forget_all();
    }
}

impl Balances {
    /// The cache, listening to the other engines when Redis is configured.
    pub fn start(
        ttl: Duration,
        redis: Option<(&crate::config::RedisConfig, &str)>,
    ) -> Result<Shared, String> {
        let balances = Arc::new(Balances {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: Default::default(),
        });
        let listener: Arc<dyn Listener> = balances.clone();
        let announcer = Announcer::start(CHANNEL, redis, Some(listener))?;
        Ok(Shared {
            balances,
            announcer,
        })
    }

    /// `account` as cached, else as the ledger has it (then cached).
    pub async fn read(
        &self,
        store: &LedgerStore,
        account: &str,
    ) -> Result<Option<Account>, DataError> {
        if let Some((at, cached)) = self.lock().get(account)
            && at.elapsed() < self.ttl
        {
            return Ok(cached.clone());
        }
        let before = self.generation.load(Ordering::Acquire);
        let fresh = store.account(account).await?;
        if !self.ttl.is_zero() {
            let mut entries = self.lock();
            if self.generation.load(Ordering::Acquire) != before {
                return Ok(fresh);
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(account.to_string(), (Instant::now(), fresh.clone()));
        }
        Ok(fresh)
    }

    fn forget_all(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Account>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Shared {
    /// After a committed batch: drops what it touched here, at once, and
    /// tells the other engines in the background (the callers do not wait
    /// for Redis).
    pub fn changed(&self, ops: &[Op], applied: &[Applied]) {
        let mut accounts: Vec<&str> = Vec::new();
        let mut everything = false;
        for (op, applied) in ops.iter().zip(applied) {
            match op {
                Op::Hold { account, .. }
                | Op::Adjust { account, .. }
                | Op::Open { account, .. } => accounts.push(account),
                // A request key is "<account> <key>"; accounts have no spaces.
                Op::Post { request_key, .. } | Op::Void { request_key } => {
                    accounts.push(request_key.split(' ').next().unwrap_or(request_key))
                }
                Op::Expire { .. } => everything |= *applied != Applied::Expired(0),
            }
        }
        accounts.sort_unstable();
        accounts.dedup();
        if accounts.is_empty() && !everything {
            return;
        }
        let payload = if everything {
            EVERYTHING.to_string()
        } else {
            accounts.join("\n")
        };
        self.balances.heard(&payload);
        if self.announcer.is_shared() {
            let shared = self.clone();
            tokio::spawn(async move { shared.tell(&payload).await });
        }
    }

    /// After a settlement (which moves every settled account's sums):
    /// forgets everything here and, awaited, everywhere.
    pub async fn changed_everything(&self) {
        self.balances.forget_all();
        self.tell(EVERYTHING).await;
    }

    /// Tells the other engines, and waits until Redis has it: for a
    /// command that exits right after its movement.
    pub async fn tell(&self, payload: &str) {
        if let Err(e) = self.announcer.announce(payload).await {
            tracing::warn!(error = %e, "could not tell other engines about balance changes; their cached balances expire on their own");
        }
    }
}
