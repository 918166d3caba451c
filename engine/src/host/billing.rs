//! `kiln:plugin/billing`: a priced call charges what it used, within what
//! the host held for it, and reads the caller's funds. The import sees
//! only the call's own [`Meter`], handed over by the front door that
//! placed the hold: a plugin cannot name an account, reach another call's
//! hold or charge a call nobody priced.

use std::sync::Arc;

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::billing::{ChargeError, Meter};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::billing::{
    BillingError, Funds, Host, HoldState, add_to_linker,
};
use crate::runtime::state::CallState;

/// The `kiln:plugin/billing` capability.
pub struct Billing;

impl Capability for Billing {
    type Scope = ();
    type Call = Option<Arc<Meter>>;

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(Billing)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, _: &PluginFacts<'_>) -> Result<(), String> {
        Ok(())
    }

    fn begin(_: &(), start: &mut CallStart<'_>) -> Option<Arc<Meter>> {
        start.handoff.meter.take()
    }

    /// A warm instance must not keep the last call's meter.
    fn end(call: &mut Option<Arc<Meter>>) {
        *call = None;
    }
}

fn state(meter: &Meter) -> HoldState {
    HoldState {
        held: meter.held(),
        charged: meter.charged().unwrap_or(0),
    }
}

impl Host for View<'_, Billing> {
    async fn charge(&mut self, amount: u64, reason: String) -> wasmtime::Result<Result<u64, BillingError>> {
        let Some(meter) = self.call.as_ref() else {
            return Ok(Err(BillingError::NotPriced));
        };
        Ok(meter.charge(amount, &reason).map_err(|e| match e {
            ChargeError::ExceedsHold { held, charged } => {
                BillingError::ExceedsHold(HoldState { held, charged })
            }
            ChargeError::InvalidReason(why) => BillingError::InvalidReason(why),
        }))
    }

    async fn balance(&mut self) -> wasmtime::Result<Result<Funds, BillingError>> {
        let Some(meter) = self.call.clone() else {
            return Ok(Err(BillingError::NotPriced));
        };
        match meter.available().await {
            Ok(available) => Ok(Ok(Funds {
                account: meter.account().to_string(),
                available,
                call: state(&meter),
            })),
            Err(e) => {
                tracing::warn!(plugin = %self.meta.plugin, error = %e, "billing.balance: the ledger could not be read");
                Ok(Err(BillingError::Unavailable))
            }
        }
    }
}
