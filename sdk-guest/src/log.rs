//! Logging into the host's log, tagged with the plugin name and request id.

use crate::bindings::kiln::plugin::log::{self as wit, Level};

pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wit::log(level, message, &fields);
}

pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}
