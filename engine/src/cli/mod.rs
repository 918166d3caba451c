//! What the `kiln new`, `kiln build`, `kiln keys`, `kiln plugins` commands and
//! `kiln serve --dev` do; `main.rs`
//! only parses.

pub mod billing;
pub mod build;
pub mod dev;
pub mod keys;
pub mod plugins;
pub mod scaffold;
