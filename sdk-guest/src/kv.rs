//! The plugin's own key-value store, kept by the host (SQLite or
//! PostgreSQL). Namespaced per plugin; see `docs/wit.md` for the limits.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::kiln::plugin::kv as wit;
use crate::{Error, Result};

/// The value at `key`, or `None` when absent or expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    wit::get(key).map_err(Into::into)
}

/// Sets `key`; with `ttl_ms` it expires after that many milliseconds.
pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<()> {
    wit::set(key, value, ttl_ms).map_err(Into::into)
}

/// Removes `key`; true if it was there.
pub fn delete(key: &str) -> Result<bool> {
    wit::delete(key).map_err(Into::into)
}

/// Keys starting with `prefix` in byte order, after `after` (for paging),
/// at most `limit` (1-1000).
pub fn list_keys(prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>> {
    wit::list_keys(prefix, after, limit).map_err(Into::into)
}

/// Atomically adds `delta` to the integer at `key` (absent = 0).
pub fn increment(key: &str, delta: i64) -> Result<i64> {
    wit::increment(key, delta).map_err(Into::into)
}

/// Atomically sets `value` if the current value is `expected` (`None`: absent).
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    value: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool> {
    wit::compare_and_swap(key, expected, value, ttl_ms).map_err(Into::into)
}

/// The value at `key` decoded from JSON.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::internal(format!(
                "stored value at {key:?} is not the expected JSON: {e}"
            ))
        }),
    }
}

/// Stores `value` as JSON at `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T, ttl_ms: Option<u64>) -> Result<()> {
    set(key, &serde_json::to_vec(value)?, ttl_ms)
}
