//! What the plugin is running as and on, and how long its call has left.
//!
//! ```ignore
//! use kiln_sdk::runtime;
//! let me = runtime::info();
//! kiln_sdk::log::info(&format!("{} {} on {} {}", me.plugin_name, me.plugin_version,
//!     me.engine_name, me.engine_version));
//! if runtime::time_left().as_millis() < 500 {
//!     // stop early and return what is done
//! }
//! ```

use std::time::Duration;

use crate::bindings::kiln::plugin::runtime_info as wit;

/// The plugin's manifest name and version, the engine's name and version,
/// and the request the call serves.
pub use wit::Details as Info;

/// Who and where the plugin is.
pub fn info() -> Info {
    wit::info()
}

/// Time left before the host stops this call (zero once it has passed).
pub fn time_left() -> Duration {
    Duration::from_millis(wit::time_left_ms())
}
