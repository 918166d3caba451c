//! `kiln serve --dev`: the engine set up for a laptop. Everything it
//! changes makes the engine easier to poke at and would be wrong on a
//! server, so it refuses to start on anything but a loopback address.
//!
//! - access default `public`, unless the config file has an `[access]`
//!   table (then the operator's rules hold, as written);
//! - an admin token for this run, printed once, unless one is configured;
//! - plugin errors in full in answers (a trap's panic message and
//!   backtrace), not only in the log.

use std::path::Path;

use rand::RngCore;

use crate::config::{Config, Secret};
use crate::identity::access::{AccessConfig, Rule};

/// What `--dev` did, for the banner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DevMode {
    /// The admin token made for this run, when none was configured.
    pub admin_token: Option<String>,
    /// Whether access was opened (the config file has no `[access]`).
    pub public: bool,
}

/// Applies dev mode to `config` (read from `path`, if any); refuses a
/// listen address that is not loopback.
pub fn apply(config: &mut Config, path: Option<&Path>) -> Result<DevMode, String> {
    if !config.listen.ip().is_loopback() {
        return Err(format!(
            "--dev serves on a loopback address only, and {} is not one: it opens access \
             and prints an admin token. Use --listen 127.0.0.1:{} (or [::1]), or drop --dev",
            config.listen,
            config.listen.port()
        ));
    }
    let mut done = DevMode::default();
    if !declares_access(path)? {
        config.section_mut::<AccessConfig>().default = Rule::Public;
        done.public = true;
    }
    if config.admin.token.is_none() {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("dev-{}", hex::encode(bytes));
        config.admin.token = Some(Secret::new(token.clone()));
        done.admin_token = Some(token);
    }
    config.verbose_errors = true;
    Ok(done)
}

/// Whether the config file at `path` has an `[access]` table.
fn declares_access(path: Option<&Path>) -> Result<bool, String> {
    let Some(path) = path else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(table.contains_key("access"))
}

/// The lines printed at start in dev mode.
pub fn banner(config: &Config, done: &DevMode) -> String {
    let base = format!("http://{}", config.listen);
    let mut out = String::from("kiln dev mode (loopback only; not for a server):\n");
    if done.public {
        out.push_str("  access: every route, field, tool and prompt is public ([access] default = \"public\")\n");
    } else {
        out.push_str("  access: the [access] rules of the config file\n");
    }
    match &done.admin_token {
        Some(token) => out.push_str(&format!(
            "  admin token for this run: {token}\n  try: curl -H 'authorization: Bearer {token}' {base}/_kiln/v1/admin/plugins\n"
        )),
        None => out.push_str("  admin API: the configured admin token\n"),
    }
    out.push_str("  plugin errors: in full in answers (a crash's panic message too)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mode_opens_access_makes_a_token_and_stays_on_loopback() {
        let mut c = Config::default();
        let done = apply(&mut c, None).unwrap();
        assert!(done.public);
        assert_eq!(c.section::<AccessConfig>().default, Rule::Public);
        let token = done.admin_token.unwrap();
        assert!(token.starts_with("dev-") && token.len() == 52);
        assert_eq!(c.admin.token.as_ref().unwrap().expose(), token);
        assert!(c.verbose_errors);

        let mut c = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Default::default()
        };
        let e = apply(&mut c, None).unwrap_err();
        assert!(e.contains("0.0.0.0:8080 is not one"), "{e}");
        let mut c = Config {
            listen: "[::1]:8080".parse().unwrap(),
            ..Default::default()
        };
        assert!(apply(&mut c, None).is_ok());
    }

    #[test]
    fn configured_access_and_tokens_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.toml");
        std::fs::write(
            &path,
            "[access]\ndefault = \"authenticated\"\n[admin]\ntoken = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let mut c = crate::sections::load(Some(&path), |_| None).unwrap();
        let done = apply(&mut c, Some(&path)).unwrap();
        assert_eq!(
            done,
            DevMode {
                admin_token: None,
                public: false
            }
        );
        assert_eq!(c.section::<AccessConfig>().default, Rule::Authenticated);
        assert_eq!(c.admin.token.as_ref().unwrap().expose(), "0123456789abcdef");
    }
}
