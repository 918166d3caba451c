//! The plugin's settings (`[config]`) and secrets (`[secrets]`).

use crate::bindings::kiln::plugin::config as wit;

/// A setting, or `None` when it is not set.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// Every setting name (secrets excluded).
pub fn keys() -> Vec<String> {
    wit::keys()
}

/// A secret, read by the host from the environment variable the operator named.
pub fn secret(key: &str) -> Option<String> {
    wit::get_secret(key)
}
