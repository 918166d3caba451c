//! `[billing]`: prices the operator sets, the per-request cap, holds,
//! settlement and how a caller maps to the account that pays.

use serde::Deserialize;

use crate::config::{ConfigError, Section, at_least, invalid};

/// The most one request may cost: $1 in micro-units.
pub const DEFAULT_MAX_CHARGE: u64 = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// No price or charge exceeds this, in micros (1,000,000 = $1).
    pub max_charge_micros: u64,
    /// A hold not posted or voided in this time is released: a call cut
    /// short by a crash never locks money for longer.
    pub hold_ttl_ms: u64,
    /// How often pending entries are deducted from balances.
    pub settle_interval_s: u64,
    /// Entries settled per transaction.
    pub settle_batch: u32,
    /// The JWT claim that names the paying account (a team, an
    /// organisation) instead of the token's subject.
    pub jwt_account_claim: Option<String>,
    /// What a call that failed after charging costs.
    pub on_failure: OnFailure,
    /// How long a balance read by a caller (`/_kiln/v1/billing/me`,
    /// `billing.balance`) may be served from the cache; 0: never.
    pub balance_cache_ms: u64,
    /// Prices set by the operator, over what plugins declare.
    pub prices: Vec<PriceRule>,
}

/// What a priced call that failed (an error answer, a trap, a timeout)
/// costs. It never costs its price: only what the plugin charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// What the plugin charged before it failed (the work it paid for
    /// upstream, say) stays charged; without charges the hold is voided.
    #[default]
    KeepCharges,
    /// Every failed call is voided, charges or not.
    Void,
}

/// One `[[billing.prices]]` entry: the price of a plugin's route, GraphQL
/// field or MCP tool. Exactly one of `route`, `field`, `tool` names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRule {
    pub plugin: String,
    /// `"METHOD /pattern"`, as the plugin declares it (`"GET /hello/{name}"`).
    pub route: Option<String>,
    /// `"Type.field"` (`"Query.summary"`).
    pub field: Option<String>,
    pub tool: Option<String>,
    pub micros: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            max_charge_micros: DEFAULT_MAX_CHARGE,
            hold_ttl_ms: 300_000,
            settle_interval_s: 86_400,
            settle_batch: 1_000,
            jwt_account_claim: None,
            on_failure: OnFailure::default(),
            balance_cache_ms: 30_000,
            prices: Vec::new(),
        }
    }
}

impl Section for BillingConfig {
    const KEY: &'static str = "billing";

    fn validate(&self) -> Result<(), ConfigError> {
        at_least(
            1,
            &[
                ("billing.max_charge_micros", self.max_charge_micros),
                ("billing.hold_ttl_ms", self.hold_ttl_ms),
                ("billing.settle_interval_s", self.settle_interval_s),
                ("billing.settle_batch", u64::from(self.settle_batch)),
            ],
        )?;
        if self.max_charge_micros > DEFAULT_MAX_CHARGE {
            return Err(invalid(
                "billing.max_charge_micros",
                &format!("must not exceed {DEFAULT_MAX_CHARGE} ($1 a request)"),
            ));
        }
        for (i, rule) in self.prices.iter().enumerate() {
            let at = format!("billing.prices[{i}]");
            let named = [&rule.route, &rule.field, &rule.tool]
                .iter()
                .filter(|n| n.is_some())
                .count();
            if named != 1 {
                return Err(invalid(&at, "names exactly one of route, field, tool"));
            }
            if rule.micros > self.max_charge_micros {
                return Err(invalid(
                    &format!("{at}.micros"),
                    &format!(
                        "{} exceeds billing.max_charge_micros ({})",
                        rule.micros, self.max_charge_micros
                    ),
                ));
            }
            if let Some(route) = &rule.route
                && !route.split_once(' ').is_some_and(|(m, p)| {
                    !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) && p.starts_with('/')
                })
            {
                return Err(invalid(
                    &format!("{at}.route"),
                    &format!("{route:?} must be \"METHOD /path\" (\"GET /hello/{{name}}\")"),
                ));
            }
        }
        Ok(())
    }
}

impl BillingConfig {
    /// The operator's price of `plugin`'s route `"METHOD /pattern"`.
    pub fn route_price(&self, plugin: &str, route: &str) -> Option<u64> {
        self.prices
            .iter()
            .find(|r| r.plugin == plugin && r.route.as_deref() == Some(route))
            .map(|r| r.micros)
    }

    pub fn field_price(&self, plugin: &str, field: &str) -> Option<u64> {
        self.prices
            .iter()
            .find(|r| r.plugin == plugin && r.field.as_deref() == Some(field))
            .map(|r| r.micros)
    }

    pub fn tool_price(&self, plugin: &str, tool: &str) -> Option<u64> {
        self.prices
            .iter()
            .find(|r| r.plugin == plugin && r.tool.as_deref() == Some(tool))
            .map(|r| r.micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BillingConfig, String> {
        let c: BillingConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn prices_name_one_thing_within_the_cap() {
        let c = parse(
            "[[prices]]\nplugin = \"hello-rust\"\nroute = \"GET /hello/{name}\"\nmicros = 2500\n",
        )
        .unwrap();
        assert_eq!(c.route_price("hello-rust", "GET /hello/{name}"), Some(2500));
        assert_eq!(c.route_price("hello-rust", "GET /other"), None);
        assert!(parse("[[prices]]\nplugin = \"p\"\nmicros = 1\n").is_err());
        assert!(
            parse("[[prices]]\nplugin = \"p\"\ntool = \"t\"\nfield = \"Query.f\"\nmicros = 1\n")
                .is_err()
        );
        let over = parse("[[prices]]\nplugin = \"p\"\ntool = \"t\"\nmicros = 1000001\n");
        assert!(over.unwrap_err().contains("max_charge_micros"));
        assert!(parse("max_charge_micros = 2000000\n").is_err());
        assert!(parse("[[prices]]\nplugin = \"p\"\nroute = \"get /x\"\nmicros = 1\n").is_err());
    }
}
