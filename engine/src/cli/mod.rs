//! What the `kiln new`, `kiln build`, `kiln keys` and `kiln plugins` commands do; `main.rs`
//! only parses.

pub mod build;
pub mod keys;
pub mod plugins;
pub mod scaffold;
