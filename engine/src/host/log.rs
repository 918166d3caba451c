//! `kiln:plugin/log`: guest log lines into the host's `tracing` log, tagged
//! with the plugin and request. Bounded so a guest cannot flood the log.

use crate::runtime::bindings::kiln::plugin::log::{Host, Level};
use crate::runtime::state::CallState;
use crate::text::cut;

/// Lines a plugin may log in one call; the rest are dropped (and counted once).
pub const MAX_LINES_PER_CALL: u32 = 100;
/// Longest message kept; longer ones are cut at a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_FIELDS: usize = 32;

impl Host for CallState {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if self.log_budget == 0 {
            return Ok(());
        }
        self.log_budget -= 1;
        let plugin = self.plugin.name.as_str();
        let request_id = &*self.request_id;
        if self.log_budget == 0 {
            tracing::warn!(
                plugin,
                request_id,
                "plugin reached {MAX_LINES_PER_CALL} log lines in one call; dropping the rest"
            );
            return Ok(());
        }
        let message = cut(&message, MAX_MESSAGE_BYTES);
        // No fields, no `fields=""` on the line: tracing leaves out a None.
        let fields = (!fields.is_empty()).then(|| format_fields(&fields));
        let fields = fields.as_deref();
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", plugin, request_id, fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", plugin, request_id, fields, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "plugin", plugin, request_id, fields, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", plugin, request_id, fields, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "plugin", plugin, request_id, fields, "{message}")
            }
        }
        Ok(())
    }
}

fn format_fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in fields.iter().take(MAX_FIELDS) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(cut(k, 64));
        out.push('=');
        out.push_str(cut(v, 256));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn fields_are_bounded() {
        let many: Vec<_> = (0..100)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        let s = format_fields(&many);
        assert_eq!(s.matches('=').count(), MAX_FIELDS);
        assert!(s.len() < MAX_FIELDS * 330);
    }
}
