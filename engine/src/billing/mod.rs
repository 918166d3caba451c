//! Billing: priced calls paid from the caller's account, the TigerBeetle
//! way — a **hold** of the price before the call (refused when the account
//! cannot afford it), a **post** of what the call cost after it (never more
//! than the hold) and a **void** of the rest; **settlement** deducts the
//! posted charges from balances in batches, exactly once.
//!
//! - [`config`]: `[billing]`, the operator's prices and the cap.
//! - [`writer`]: the group commit: every movement of this engine goes
//!   through one queue and is written with the others of the same moment
//!   in one transaction; each caller waits for its batch's commit.
//! - [`settle`]: settlement, on one engine at a time.
//! - [`meter`]: what one priced call charged through `kiln:plugin/billing`.
//! - [`balances`]: the balance cache callers read, kept fresh across
//!   engines through Redis; holds never read it.
//!
//! The ledger's tables are `store::ledger`. Amounts are integer micro-units
//! (1,000,000 = $1) everywhere, never floats.

pub mod balances;
pub mod config;
pub mod meter;
pub mod settle;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{BillingConfig, OnFailure};
pub use meter::{ChargeError, Meter};

use crate::identity::principal::{AuthMethod, Principal};
use crate::store::DataError;
use crate::store::ledger::{Account, Applied, LedgerStore, Op};

/// Why a priced call was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "payment required: this call costs {price} micros and account '{account}' has {available} available"
    )]
    Insufficient {
        account: String,
        price: u64,
        available: i64,
    },
    #[error(
        "payment required: this call costs {price} micros and account '{account}' does not exist; \
         an operator credits it with `kiln billing credit {account} <micros>`"
    )]
    NoAccount { account: String, price: u64 },
    #[error(
        "payment required: this call costs {price} micros and only callers with an account pay; send a credential"
    )]
    Anonymous { price: u64 },
    #[error("this request ({key}) was charged already; send a new Idempotency-Key to call again")]
    AlreadyCharged { key: String },
    #[error("this request ({key}) is in flight; wait for its answer")]
    InFlight { key: String },
    #[error(
        "payment required: this call costs {price} micros and this caller's account name cannot \
         hold money (an account is \"kind:name\", 3 to 256 characters without spaces or control \
         characters); use another credential"
    )]
    UnbillableAccount { price: u64 },
    #[error("billing is unavailable: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The stable code every front door answers with (`payment_required`,
    /// `already_charged`, `in_flight`, `billing_unavailable`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Insufficient { .. }
            | Refusal::NoAccount { .. }
            | Refusal::Anonymous { .. }
            | Refusal::UnbillableAccount { .. } => "payment_required",
            Refusal::AlreadyCharged { .. } => "already_charged",
            Refusal::InFlight { .. } => "in_flight",
            Refusal::Unavailable(_) => "billing_unavailable",
        }
    }

    /// The facts behind a 402, for `error.details`.
    pub fn details(&self) -> serde_json::Value {
        match self {
            Refusal::Insufficient {
                account,
                price,
                available,
            } => {
                serde_json::json!({ "account": account, "price_micros": price, "available_micros": available })
            }
            Refusal::NoAccount { account, price } => {
                serde_json::json!({ "account": account, "price_micros": price, "available_micros": 0 })
            }
            Refusal::Anonymous { price } | Refusal::UnbillableAccount { price } => {
                serde_json::json!({ "price_micros": price })
            }
            Refusal::AlreadyCharged { key } | Refusal::InFlight { key } => {
                serde_json::json!({ "request_key": key })
            }
            Refusal::Unavailable(_) => serde_json::Value::Null,
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The engine's billing: its prices, its ledger writer and its reads.
pub struct Billing {
    config: BillingConfig,
    store: LedgerStore,
    writer: writer::Writer,
    balances: balances::Shared,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").finish_non_exhaustive()
    }
}

impl Billing {
    /// Starts the writer and the sweeper of expired holds; both stop when
    /// `shutdown` is cancelled (after what was queued is written).
    pub fn start(
        store: LedgerStore,
        config: BillingConfig,
        redis: Option<(&crate::config::RedisConfig, &str)>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Billing>, String> {
        let shared =
            balances::Balances::start(Duration::from_millis(config.balance_cache_ms), redis)?;
        let writer = writer::Writer::start(store.clone(), shared.clone())?;
        let billing = Arc::new(Billing {
            config,
            store,
            writer,
            balances: shared,
        });
        let settler = billing.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(settler.config.settle_interval_s);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match settler.settle().await {
                    Ok(Some(r)) => {
                        tracing::info!(settlement = %r.settlement, entries = r.entries, amount = r.amount, "settled")
                    }
                    Ok(None) => tracing::info!(
                        "another engine is settling; this one waits for the next interval"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "settlement failed; what it committed stays settled, the rest waits for the next run")
                    }
                }
            }
        });
        let sweeper = billing.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis((sweeper.config.hold_ttl_ms / 4).clamp(100, 30_000));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match sweeper.writer.submit(Op::Expire { now_ms: now_ms() }).await {
                    Ok(Applied::Expired(n)) if n > 0 => {
                        tracing::warn!(
                            holds = n,
                            "released expired billing holds (calls that never finished)"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "releasing expired billing holds failed"),
                }
            }
        });
        Ok(billing)
    }

    /// `account` as callers read it: from the balance cache (fresh after
    /// this engine's own writes, and other engines' with Redis), else the
    /// ledger. Never used to grant a hold.
    pub async fn balance(&self, account: &str) -> Result<Option<Account>, DataError> {
        self.balances.balances.read(&self.store, account).await
    }

    /// Settles what is pending now (`None`: another settler is at it);
    /// every engine's cached balances are dropped after.
    pub async fn settle(&self) -> Result<Option<settle::Report>, DataError> {
        let report =
            settle::settle(&self.store, self.config.settle_batch, settle::test_pause()).await;
        if matches!(report, Ok(Some(_))) {
            self.balances.changed_everything().await;
        }
        report
    }

    /// Tells the other engines that `account` moved, and waits until
    /// Redis has it (the CLI, which exits right after).
    pub async fn announce(&self, account: &str) {
        self.balances.tell(account).await;
    }

    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    /// The account that pays for `principal`'s calls: `key:<name>` for an
    /// API key, `jwt:<sub>` (or `jwt:<claim>` with `jwt_account_claim`),
    /// `provider:<name>:<subject>`.
    pub fn account_of(&self, principal: &Principal) -> String {
        match &principal.method {
            AuthMethod::ApiKey { .. } => format!("key:{}", principal.subject),
            AuthMethod::Jwt { .. } => {
                let claimed = self
                    .config
                    .jwt_account_claim
                    .as_ref()
                    .and_then(|c| principal.claims.get(c))
                    .and_then(|v| v.as_str());
                format!("jwt:{}", claimed.unwrap_or(&principal.subject))
            }
            AuthMethod::Provider { name } => format!("provider:{name}:{}", principal.subject),
        }
    }

    /// Whether the operator priced any route: unpriced engines skip the
    /// lookup on every request.
    pub fn prices_routes(&self) -> bool {
        self.config.prices.iter().any(|p| p.route.is_some())
    }

    /// The price of `plugin`'s route `"METHOD /pattern"`: the operator's,
    /// else what the plugin declares (`kiln:plugin/http-prices`).
    pub fn route_price(&self, plugin: &str, route: &str, declared: Option<u64>) -> Option<u64> {
        self.config.route_price(plugin, route).or(declared)
    }

    /// The price of `plugin`'s MCP tool: the operator's, else what the
    /// tool declares.
    pub fn tool_price(&self, plugin: &str, tool: &str, declared: u64) -> u64 {
        self.config.tool_price(plugin, tool).unwrap_or(declared)
    }

    /// The price of `plugin`'s GraphQL field `"Type.field"`: the
    /// operator's, else its `@price`.
    pub fn field_price(&self, plugin: &str, field: &str, declared: Option<u64>) -> u64 {
        self.config
            .field_price(plugin, field)
            .or(declared)
            .unwrap_or(0)
    }

    /// Places the hold for one priced call. `idempotency_key` (the
    /// client's `Idempotency-Key`) names the request across retries, else
    /// `request_id` does; either way within the paying account only.
    pub async fn hold(
        self: &Arc<Self>,
        caller: Option<&Principal>,
        idempotency_key: Option<&str>,
        request_id: &str,
        plugin: &str,
        operation: &str,
        price: u64,
    ) -> Result<Hold, Refusal> {
        let price = price.min(self.config.max_charge_micros);
        let Some(principal) = caller else {
            return Err(Refusal::Anonymous { price });
        };
        let account = self.account_of(principal);
        // A subject with a space or a control character (a JWT's `sub`, a
        // provider's subject) could never be credited, and would not
        // survive the request key's "<account> <key>" split.
        if validate_account(&account).is_err() {
            return Err(Refusal::UnbillableAccount { price });
        }
        let request_key = format!("{account} {}", idempotency_key.unwrap_or(request_id));
        let now = now_ms();
        let amount = i64::try_from(price).unwrap_or(i64::MAX);
        let op = Op::Hold {
            account: account.clone(),
            request_key: request_key.clone(),
            amount,
            plugin: plugin.to_string(),
            operation: operation.to_string(),
            now_ms: now,
            expires_at: now
                .saturating_add(i64::try_from(self.config.hold_ttl_ms).unwrap_or(i64::MAX)),
        };
        match self.writer.submit(op).await {
            Ok(Applied::Held) => Ok(Hold {
                billing: self.clone(),
                request_key: Some(request_key),
                amount,
                request_id: request_id.to_string(),
                meter: Arc::new(Meter::new(
                    self.clone(),
                    account,
                    price,
                    self.writer.batch_now(),
                )),
            }),
            Ok(Applied::Insufficient { available }) => Err(Refusal::Insufficient {
                account,
                price,
                available,
            }),
            Ok(Applied::NoAccount) => Err(Refusal::NoAccount { account, price }),
            Ok(Applied::AlreadyCharged) => Err(Refusal::AlreadyCharged { key: request_key }),
            Ok(Applied::InFlight) => Err(Refusal::InFlight { key: request_key }),
            Ok(other) => Err(Refusal::Unavailable(format!(
                "unexpected ledger answer {other:?}"
            ))),
            Err(e) => Err(Refusal::Unavailable(e.to_string())),
        }
    }

    /// Creates `account` with nothing in it (`Opened`, or `Exists`).
    pub async fn open(&self, account: &str) -> Result<Applied, DataError> {
        validate_account(account)?;
        self.writer
            .submit(Op::Open {
                account: account.to_string(),
                now_ms: now_ms(),
            })
            .await
    }

    /// Adds `amount` to `account` (created on its first credit); with
    /// `key`, once however often it is retried.
    pub async fn credit(
        &self,
        account: &str,
        amount: u64,
        reason: Option<&str>,
        key: Option<&str>,
    ) -> Result<Applied, DataError> {
        self.adjust(account, true, amount, reason, key).await
    }

    /// Takes `amount` from `account`, never below what it has available;
    /// with `key`, once.
    pub async fn debit(
        &self,
        account: &str,
        amount: u64,
        reason: Option<&str>,
        key: Option<&str>,
    ) -> Result<Applied, DataError> {
        self.adjust(account, false, amount, reason, key).await
    }

    async fn adjust(
        &self,
        account: &str,
        credit: bool,
        amount: u64,
        reason: Option<&str>,
        key: Option<&str>,
    ) -> Result<Applied, DataError> {
        if key.is_some_and(|k| !idempotency_key_ok(k)) {
            return Err(DataError::Invalid(
                "an idempotency key is 1 to 255 visible ASCII characters".into(),
            ));
        }
        if reason.is_some_and(|r| r.len() > 500 || r.chars().any(char::is_control)) {
            return Err(DataError::Invalid(
                "a reason is at most 500 bytes without control characters".into(),
            ));
        }
        let amount = i64::try_from(amount)
            .ok()
            .filter(|a| *a > 0 && *a <= MAX_ADJUSTMENT)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "the amount must be between 1 and {MAX_ADJUSTMENT} micros"
                ))
            })?;
        validate_account(account)?;
        self.writer
            .submit(Op::Adjust {
                account: account.to_string(),
                credit,
                amount,
                reason: reason.map(str::to_string),
                key: key.map(str::to_string),
                now_ms: now_ms(),
            })
            .await
    }
}

/// Whether `key` may serve as an `Idempotency-Key`: 1 to 255 visible
/// ASCII characters.
pub fn idempotency_key_ok(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The largest single credit or debit: $1,000,000,000 in micros, far from
/// where 64-bit sums could overflow.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000_000_000;

/// An account name as the operator types it: `kind:name`, printable, short.
pub fn validate_account(account: &str) -> Result<(), DataError> {
    let ok = (3..=256).contains(&account.len())
        && account.contains(':')
        && !account.starts_with(':')
        && account.chars().all(|c| !c.is_control() && c != ' ');
    if ok {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "account {} must be \"kind:name\" (key:<API key name>, jwt:<subject>, provider:<name>:<subject>), \
             3 to 256 characters without spaces",
            crate::text::echo(account)
        )))
    }
}

/// Why a call that ran was not charged ([`Hold::finish`] failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrecorded {
    /// The call's hold was gone when it ended: it outlived
    /// `billing.hold_ttl_ms` and was released, or the batch that placed it
    /// failed to commit. The call was not paid for, so it is not answered
    /// as if it had been.
    #[error(
        "the call's hold is gone (it expired, or the batch that placed it failed to commit); nothing was charged"
    )]
    HoldGone,
    /// The ledger failed; the hold is released when it expires.
    #[error("the ledger failed: {0}")]
    Ledger(#[from] DataError),
}

impl Unrecorded {
    /// What the caller is told (the ledger's own error goes to the log).
    pub fn for_caller(&self) -> &'static str {
        match self {
            Unrecorded::HoldGone => {
                "its hold was gone when it ended (it outlived billing.hold_ttl_ms), so nothing was charged"
            }
            Unrecorded::Ledger(_) => "billing is unavailable; its hold is released when it expires",
        }
    }
}

/// Money set aside for one call in flight. Post what the call cost or
/// void it; a hold dropped without either (the request was cancelled) is
/// voided in the background.
pub struct Hold {
    billing: Arc<Billing>,
    request_key: Option<String>,
    amount: i64,
    request_id: String,
    meter: Arc<Meter>,
}

impl Hold {
    /// The call's meter, for its `kiln:plugin/billing` import.
    pub fn meter(&self) -> Arc<Meter> {
        self.meter.clone()
    }

    /// Ends the call's hold by the one rule: a call that succeeded costs
    /// its price, or what the plugin charged if it charged; one that
    /// failed (an error answer, a trap, a timeout) costs what the plugin
    /// charged before it failed (`billing.on_failure = "keep_charges"`,
    /// the default) or nothing (`"void"`). The entry is committed when
    /// this returns.
    pub async fn finish(self, succeeded: bool) -> Result<Applied, Unrecorded> {
        let charged = self
            .meter
            .charged()
            .map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        let amount = match (succeeded, self.billing.config.on_failure) {
            (true, _) => Some(charged.unwrap_or(self.amount)),
            (false, OnFailure::KeepCharges) => charged,
            (false, OnFailure::Void) => None,
        };
        match amount {
            Some(amount) if amount > 0 => {
                let reason = self.meter.reasons();
                self.post(amount, reason).await
            }
            _ => Ok(self.void().await?),
        }
    }

    /// Charges `amount` (clamped to the hold) and releases the rest; the
    /// entry is committed when this returns. A hold that is gone (it
    /// outlived `hold_ttl_ms` and was released, or the batch that placed
    /// it failed to commit) is an error: the call was not paid for, so it
    /// is not answered as if it had been.
    pub async fn post(
        mut self,
        amount: i64,
        reason: Option<String>,
    ) -> Result<Applied, Unrecorded> {
        let Some(request_key) = self.request_key.take() else {
            return Err(Unrecorded::HoldGone);
        };
        let posted = self
            .billing
            .writer
            .submit(Op::Post {
                request_key,
                amount: amount.clamp(0, self.amount),
                reason,
                request_id: std::mem::take(&mut self.request_id),
                now_ms: now_ms(),
            })
            .await?;
        match posted {
            Applied::NotHeld => Err(Unrecorded::HoldGone),
            posted => Ok(posted),
        }
    }

    pub async fn void(mut self) -> Result<Applied, DataError> {
        let Some(request_key) = self.request_key.take() else {
            return Ok(Applied::NotHeld);
        };
        self.billing.writer.submit(Op::Void { request_key }).await
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(request_key) = self.request_key.take() {
            // Outside a runtime (the engine is stopping) the hold simply
            // expires.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let writer = self.billing.writer.clone();
            runtime.spawn(async move {
                if let Err(e) = writer.submit(Op::Void { request_key }).await {
                    tracing::error!(error = %e, "voiding an abandoned billing hold failed; it expires on its own");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str) -> Principal {
        Principal {
            subject: name.into(),
            roles: Default::default(),
            claims: Default::default(),
            method: AuthMethod::ApiKey {
                key_id: format!("id-{name}"),
            },
        }
    }

    /// Billing on a migrated SQLite file `kiln.db` in `dir`, the account
    /// `key:a` credited 1,000.
    async fn on_sqlite_with_1000_in_key_a(dir: &std::path::Path) -> Arc<Billing> {
        let db = crate::store::Database::connect(&Default::default(), dir)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let billing = Billing::start(
            LedgerStore::new(db),
            BillingConfig::default(),
            None,
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        billing.credit("key:a", 1_000, None, None).await.unwrap();
        billing
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hold_whose_batch_failed_to_commit_is_gone_and_its_call_charges_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let billing = on_sqlite_with_1000_in_key_a(tmp.path()).await;
        let a = caller("a");

        // On SQLite a hold is answered before its batch commits; this
        // batch's commit fails on every attempt.
        let file = tmp.path().join("kiln.db");
        crate::store::ledger::fail_next_commits(&file, u32::MAX);
        let hold = billing
            .hold(Some(&a), None, "r1", "p", "GET /x", 300)
            .await
            .expect("answered once its statements ran");
        // The batch's failure reaches those still waiting: a credit queued
        // behind the hold fails with it, and the ledger has neither.
        let credit = billing.credit("key:a", 5, None, None).await;
        assert!(credit.is_err(), "{credit:?}");
        crate::store::ledger::fail_next_commits(&file, 0);

        let balance = billing.store().account("key:a").await.unwrap().unwrap();
        assert_eq!((balance.balance, balance.held), (1_000, 0), "nothing held");
        // The call ran, but its hold is gone: it is not answered as paid.
        assert_eq!(hold.finish(true).await, Err(Unrecorded::HoldGone));
        let after = billing.store().account("key:a").await.unwrap().unwrap();
        assert_eq!(
            (after.balance, after.pending, after.held),
            (1_000, 0, 0),
            "nothing charged"
        );
        assert_eq!(
            billing.store().derived("key:a").await.unwrap(),
            (1_000, 0, 0)
        );

        // Commits that work again: a new call is held and charged.
        let hold = billing
            .hold(Some(&a), None, "r2", "p", "GET /x", 300)
            .await
            .unwrap();
        assert!(matches!(
            hold.finish(true).await,
            Ok(Applied::Posted { amount: 300, .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugin_reading_its_funds_sees_its_hold_though_the_hold_was_answered_before_its_commit()
     {
        let tmp = tempfile::tempdir().unwrap();
        let billing = on_sqlite_with_1000_in_key_a(tmp.path()).await;
        // Read once, so the balance cache holds the account before the hold.
        assert_eq!(
            billing.balance("key:a").await.unwrap().unwrap().available,
            1_000
        );

        // The hold's commit takes long: the hold is answered while its
        // batch is still open, and nobody outside the writer sees it yet.
        let file = tmp.path().join("kiln.db");
        crate::store::ledger::pause_next_commits(&file, 1, Duration::from_millis(300));
        let hold = billing
            .hold(Some(&caller("a")), None, "r1", "p", "GET /x", 300)
            .await
            .unwrap();
        let seen_now = billing.store().account("key:a").await.unwrap().unwrap();
        assert_eq!(
            seen_now.held, 0,
            "the test needs the hold still uncommitted"
        );

        // The plugin's view waits for the commit, then counts the hold.
        assert_eq!(hold.meter.available().await.unwrap(), 700);
        assert!(matches!(
            hold.finish(true).await,
            Ok(Applied::Posted { amount: 300, .. })
        ));
    }
}
