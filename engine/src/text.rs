//! Client input that goes back out, in an error or a log line, goes out
//! bounded: an engine that echoes what it is sent in full turns a 100 kB
//! request into a 100 kB error, and a log line per request into a disk.

use std::borrow::Cow;

/// Longest piece of client input quoted in an error message or a log field.
pub const MAX_ECHO: usize = 128;

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` if it is at most `max` bytes, else its first `max` bytes (cut at a
/// character boundary) and a note of how much was left out.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let kept = cut(s, max);
    Cow::Owned(format!("{kept}… ({} more bytes)", s.len() - kept.len()))
}

/// [`clip`] at [`MAX_ECHO`]: for names, paths and values a client sent.
pub fn echo(s: &str) -> Cow<'_, str> {
    clip(s, MAX_ECHO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_at_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc… (3 more bytes)");
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(clip("aéb", 2), "a… (3 more bytes)");
        let long = "x".repeat(100_000);
        assert!(echo(&long).len() < MAX_ECHO + 32);
    }
}
