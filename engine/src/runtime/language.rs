//! The source language a component says it was written in (its top-level
//! `producers` section), for choosing how its instances are reused.

use wasmparser::{KnownCustom, Parser, Payload};

/// Languages whose components carry a whole interpreter: the first call on
/// a fresh instance initialises megabytes of heap, so reusing a warm
/// instance is what makes them fast.
const INTERPRETED: [&str; 2] = ["JavaScript", "Python"];

/// The `language` of the outermost component, if it names one.
pub fn of(wasm: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if depth == 0 => {
                if let KnownCustom::Producers(reader) = section.as_known() {
                    for field in reader.into_iter().flatten() {
                        if field.name == "language" {
                            let first = field.values.into_iter().flatten().next();
                            return first.map(|v| v.name.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether instances of a component in `language` are costly to create.
pub fn is_interpreted(language: Option<&str>) -> bool {
    language.is_some_and(|l| INTERPRETED.contains(&l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreted_languages() {
        assert!(is_interpreted(Some("JavaScript")));
        assert!(!is_interpreted(Some("Rust")));
        assert!(!is_interpreted(None));
    }

    #[test]
    fn garbage_has_no_language() {
        assert_eq!(of(b"not wasm"), None);
        assert_eq!(of(b"\0asm\x0d\0\x01\0"), None);
    }
}
