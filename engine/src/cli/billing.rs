//! `kiln billing credit|debit|balance|ledger|settle`: the ledger read and
//! moved directly in the engine's database, each movement in the audit log.

use crate::billing::{Billing, BillingConfig};
use crate::config::Config;
use crate::store::audit::AuditLog;
use crate::store::ledger::{Applied, LedgerStore};

/// Micros as dollars, exactly: `1234567` → `$1.234567`.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}${}.{:06}", m / 1_000_000, m % 1_000_000)
}

async fn open(
    config: &Config,
) -> anyhow::Result<(crate::store::Database, std::sync::Arc<Billing>)> {
    let db = crate::server::open_database(config).await?;
    // With Redis, the engines hear about what this command moves.
    let redis = config
        .redis
        .url
        .as_ref()
        .map(|url| (&config.redis, url.expose()));
    let billing = Billing::start(
        LedgerStore::new(db.clone()),
        config.section::<BillingConfig>(),
        redis,
        tokio_util::sync::CancellationToken::new(),
    )
    .map_err(anyhow::Error::msg)?;
    Ok((db, billing))
}

/// A credit or a debit, why, and the key that makes it happen once.
pub struct Movement<'a> {
    pub credit: bool,
    pub reason: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// Credits or debits an account and prints its new balance.
pub async fn adjust(
    config: &Config,
    account: &str,
    micros: u64,
    movement: Movement<'_>,
) -> anyhow::Result<()> {
    let Movement {
        credit,
        reason,
        key,
    } = movement;
    let (db, billing) = open(config).await?;
    let done = if credit {
        billing.credit(account, micros, reason, key).await
    } else {
        billing.debit(account, micros, reason, key).await
    };
    let outcome = match done {
        Ok(Applied::Adjusted { entry, balance }) => {
            let action = if credit {
                "billing.credit"
            } else {
                "billing.debit"
            };
            AuditLog::new(db.clone())
                .record(
                    "cli",
                    action,
                    Some(account),
                    serde_json::json!({ "micros": micros, "entry": entry, "reason": reason, "via": "cli" }),
                )
                .await;
            billing.announce(account).await;
            println!(
                "{account}: balance {} ({balance} micros), entry {entry}",
                dollars(balance)
            );
            Ok(())
        }
        Ok(Applied::AlreadyApplied { entry, amount }) if u64::try_from(amount) == Ok(micros) => {
            println!("{account}: already done under this key (entry {entry}); nothing changed");
            Ok(())
        }
        Ok(Applied::AlreadyApplied { entry, amount }) => Err(anyhow::anyhow!(
            "this idempotency key was used for {amount} micros (entry {entry}), not {micros}; nothing changed"
        )),
        Ok(Applied::NoAccount) => Err(anyhow::anyhow!(
            "account {account} does not exist (credit it first)"
        )),
        Ok(Applied::Overdrawn { available }) => Err(anyhow::anyhow!(
            "account {account} has {available} micros available; a debit of {micros} would overdraw it"
        )),
        Ok(other) => Err(anyhow::anyhow!("unexpected ledger answer {other:?}")),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    db.close().await;
    outcome
}

pub async fn balance(config: &Config, account: &str) -> anyhow::Result<()> {
    let (db, billing) = open(config).await?;
    let found = billing.store().account(account).await;
    db.close().await;
    let Some(a) = found.map_err(|e| anyhow::anyhow!("{e}"))? else {
        anyhow::bail!("account {account} does not exist");
    };
    println!("account    {}", a.account);
    for (what, micros) in [
        ("balance", a.balance),
        ("pending", a.pending),
        ("held", a.held),
        ("available", a.available),
    ] {
        println!("{what:<10} {:>18} ({micros} micros)", dollars(micros));
    }
    Ok(())
}

pub async fn ledger(config: &Config, account: &str, limit: u32) -> anyhow::Result<()> {
    let (db, billing) = open(config).await?;
    let entries = billing.store().entries(account, limit, None).await;
    db.close().await;
    let entries = entries.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{:<8} {:<7} {:>14} {:<20} {:<24} {:<10} REASON",
        "ID", "KIND", "AMOUNT", "AT", "OPERATION", "SETTLED"
    );
    for e in entries {
        println!(
            "{:<8} {:<7} {:>14} {:<20} {:<24} {:<10} {}",
            e.id,
            e.kind,
            dollars(e.amount),
            crate::store::rfc3339(e.created_at / 1000),
            format!(
                "{} {}",
                e.plugin.unwrap_or_default(),
                e.operation.unwrap_or_default()
            )
            .trim(),
            if e.settlement.is_some() { "yes" } else { "-" },
            e.reason.unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn run_settlement(config: &Config) -> anyhow::Result<()> {
    let (db, billing) = open(config).await?;
    let report = billing.settle().await;
    let outcome = match report {
        Ok(Some(r)) => {
            AuditLog::new(db.clone())
                .record(
                    "cli",
                    "billing.settled",
                    Some(&r.settlement),
                    serde_json::to_value(&r).unwrap_or_default(),
                )
                .await;
            println!(
                "settlement {}: {} entries, {} ({} micros), {} batches",
                r.settlement,
                r.entries,
                dollars(r.amount),
                r.amount,
                r.batches
            );
            Ok(())
        }
        Ok(None) => Err(anyhow::anyhow!(
            "another engine is settling now; nothing done"
        )),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    db.close().await;
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn micros_print_as_exact_dollars() {
        assert_eq!(super::dollars(1_234_567), "$1.234567");
        assert_eq!(super::dollars(5), "$0.000005");
        assert_eq!(super::dollars(-2_000_000), "-$2.000000");
    }
}
