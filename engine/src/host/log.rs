//! `kiln:plugin/log`: guest log lines into the host's `tracing` log, tagged
//! with the plugin and request. Bounded so a guest cannot flood the log.

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::log::{Host, Level, add_to_linker};
use crate::runtime::state::CallState;
use crate::text::cut;

/// The `kiln:plugin/log` capability; a call's part is the number of lines
/// it may still write.
pub struct Log;

impl Capability for Log {
    type Scope = ();
    type Call = u32;

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(Log)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, _: &PluginFacts<'_>) -> Result<(), String> {
        Ok(())
    }

    fn begin(_: &(), _: &mut CallStart<'_>) -> u32 {
        MAX_LINES_PER_CALL
    }
}

/// Lines a plugin may log in one call; the rest are dropped (and counted once).
pub const MAX_LINES_PER_CALL: u32 = 100;
/// Longest message kept; longer ones are cut at a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_FIELDS: usize = 32;

impl Host for View<'_, Log> {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if *self.call == 0 {
            return Ok(());
        }
        *self.call -= 1;
        let plugin = &*self.meta.plugin;
        let request_id = &*self.meta.request_id;
        if *self.call == 0 {
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
