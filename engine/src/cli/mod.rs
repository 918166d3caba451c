//! What the `kiln new` and `kiln build` commands do; `main.rs` only parses.

pub mod build;
pub mod scaffold;
