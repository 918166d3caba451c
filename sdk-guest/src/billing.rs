//! Money for the call being served (micro-units: 1,000,000 is one dollar).
//!
//! A priced route, field or tool costs its price by default. A plugin whose
//! cost depends on the work declares the most a call may cost as its price
//! and charges what it used; once it charges, the call costs the sum of its
//! charges (never more than the price the host held).
//!
//! ```ignore
//! use kiln_sdk::billing;
//! let tokens = 1_200;
//! billing::charge(tokens * 2, &format!("{tokens} tokens"))?;
//! let funds = billing::balance()?;          // what the caller has left
//! ```

use crate::bindings::kiln::plugin::billing as wit;

pub use wit::{BillingError, Funds, HoldState};

/// What went wrong, in words (the generated `Display` is the debug form).
pub fn describe(e: &BillingError) -> String {
    match e {
        BillingError::NotPriced => "this call is not priced, so it cannot charge".into(),
        BillingError::ExceedsHold(h) => format!(
            "the charge would pass the call's hold ({} micros held, {} charged)",
            h.held, h.charged
        ),
        BillingError::InvalidReason(why) => why.clone(),
        BillingError::Unavailable => "billing is unavailable".into(),
    }
}

impl From<BillingError> for crate::Error {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Unavailable => crate::Error::unavailable(describe(&e)),
            _ => crate::Error::internal(describe(&e)),
        }
    }
}

/// Charges `micros` for this call; returns the call's total so far.
pub fn charge(micros: u64, reason: &str) -> Result<u64, BillingError> {
    wit::charge(micros, reason)
}

/// The caller's account: what it may still spend, and this call's hold.
pub fn balance() -> Result<Funds, BillingError> {
    wit::balance()
}
