//! The plugin's cache: values that always expire and may be evicted early.
//! In process by default, in Redis (shared by every engine) when configured.

use crate::Result;
use crate::bindings::kiln::plugin::cache as wit;

/// The value at `key`, or `None` when absent, expired or evicted.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    wit::get(key).map_err(Into::into)
}

/// Stores `value` for `ttl_ms` milliseconds (1 ms to 30 days).
pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<()> {
    wit::set(key, value, ttl_ms).map_err(Into::into)
}

/// Removes `key`; true if it was there.
pub fn delete(key: &str) -> Result<bool> {
    wit::delete(key).map_err(Into::into)
}
