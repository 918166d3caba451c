//! What one priced call has charged, shared by the front door that placed
//! its hold and the call's `kiln:plugin/billing` import.
//!
//! The rule is one: a call costs its price (the hold) unless the plugin
//! charged, and then it costs the sum of its charges, which can never pass
//! the hold. Charges live in memory until the front door posts the call
//! (`Hold::finish`); a crash before that loses the call, whose hold expires.

use std::sync::{Arc, Mutex};

use super::Billing;
use crate::store::DataError;

/// The longest reason a plugin may give one charge, in bytes.
pub const MAX_REASON_BYTES: usize = 200;
/// The most of the reasons kept on the posted entry, in bytes.
const MAX_ENTRY_REASON_BYTES: usize = 1_000;

/// One call's hold and charges.
pub struct Meter {
    billing: Arc<Billing>,
    account: String,
    held: u64,
    /// The ledger batch the hold went into (see `Writer::batch_now`).
    batch: u64,
    charges: Mutex<Charges>,
}

#[derive(Default)]
struct Charges {
    /// Some once the plugin charged (zero included).
    total: Option<u64>,
    reasons: String,
}

/// Why a charge was not made; nothing of it was charged.
#[derive(Debug, PartialEq, Eq)]
pub enum ChargeError {
    /// The call's total would pass what is held.
    ExceedsHold {
        held: u64,
        charged: u64,
    },
    InvalidReason(String),
}

impl Meter {
    pub(super) fn new(billing: Arc<Billing>, account: String, held: u64, batch: u64) -> Self {
        Meter {
            billing,
            account,
            held,
            batch,
            charges: Mutex::new(Charges::default()),
        }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    /// What the plugin charged, if it charged at all.
    pub fn charged(&self) -> Option<u64> {
        self.lock().total
    }

    /// Adds `amount` to the call's charges; the call's total so far.
    pub fn charge(&self, amount: u64, reason: &str) -> Result<u64, ChargeError> {
        check_reason(reason)?;
        let mut charges = self.lock();
        let charged = charges.total.unwrap_or(0);
        let total = charged
            .checked_add(amount)
            .filter(|t| *t <= self.held)
            .ok_or(ChargeError::ExceedsHold {
                held: self.held,
                charged,
            })?;
        charges.total = Some(total);
        if charges.reasons.len() < MAX_ENTRY_REASON_BYTES {
            if !charges.reasons.is_empty() {
                charges.reasons.push_str("; ");
            }
            charges.reasons.push_str(reason);
            let kept = crate::text::cut(&charges.reasons, MAX_ENTRY_REASON_BYTES).len();
            charges.reasons.truncate(kept);
        }
        Ok(total)
    }

    /// The reasons the plugin gave, joined, for the posted entry.
    pub(super) fn reasons(&self) -> Option<String> {
        let charges = self.lock();
        (!charges.reasons.is_empty()).then(|| charges.reasons.clone())
    }

    /// What the paying account may still spend (this call's hold already
    /// taken out), read from the ledger. On SQLite the hold may have been
    /// answered before its batch committed; the read waits for that commit
    /// so that it sees the hold.
    pub async fn available(&self) -> Result<i64, DataError> {
        self.billing.writer.ended(self.batch).await;
        let account = self.billing.balance(&self.account).await?;
        Ok(account.map_or(0, |a| a.available))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Charges> {
        self.charges.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("account", &self.account)
            .field("held", &self.held)
            .field("charged", &self.charged())
            .finish()
    }
}

fn check_reason(reason: &str) -> Result<(), ChargeError> {
    if reason.trim().is_empty() || reason.len() > MAX_REASON_BYTES {
        return Err(ChargeError::InvalidReason(format!(
            "a charge's reason is 1 to {MAX_REASON_BYTES} bytes (got {})",
            reason.len()
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(ChargeError::InvalidReason(
            "a charge's reason has no control characters".into(),
        ));
    }
    Ok(())
}
