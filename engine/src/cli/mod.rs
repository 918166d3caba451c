//! What the `kiln new`, `kiln build` and `kiln keys` commands do; `main.rs`
//! only parses.

pub mod build;
pub mod keys;
pub mod scaffold;
