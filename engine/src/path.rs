//! One spelling per path. Every request path is put into a canonical form
//! before anything looks at it, so the route table, access rules, rate-limit
//! groups and the plugin all see the same path, and a rule written for
//! `/files/private*` holds for every way a client can spell that path:
//!
//! - escapes of unreserved characters are decoded (`%70` → `p`, `%2E` → `.`),
//!   the hex digits of the others are upper-cased (`%c3` → `%C3`), as
//!   RFC 3986 §6.2.2 allows without changing what the URI means;
//! - empty segments go (`//a` and `a/` are `/a`), `.` segments go, `..`
//!   removes the segment before it (RFC 3986 §5.2.4).
//!
//! Refused (400), because no canonical form would be safe:
//! - a `%` not followed by two hex digits;
//! - an escaped `/` (`%2F`): decoded by a plugin, one segment would become
//!   two that no rule and no route saw;
//! - an escaped control character (`%00`–`%1F`, `%7F`);
//! - a `..` that climbs above the root.
//!
//! Pure: no HTTP types, so manifests and config can use it to check what
//! they are given.

use std::borrow::Cow;

/// Why a path has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path has a '%' that is not followed by two hex digits")]
    BadEscape,
    #[error("path has an escaped '/' (%2F); send the segments unescaped")]
    EncodedSlash,
    #[error("path has an escaped control character (%{0:02X})")]
    ControlCharacter(u8),
    #[error("path climbs above the root with '..'")]
    AboveRoot,
}

/// The canonical form of `path` (as sent, percent-encoded; no query).
/// Borrows when the path already is canonical, the common case.
pub fn canonical(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = canonical_segment(raw)?;
        match segment.as_ref() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => segments.push(segment.into_owned()),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The fast path: no escapes, no empty, `.` or `..` segments, no trailing `/`.
fn is_canonical(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    !path.contains('%')
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// One segment with its escapes normalised (see the module comment).
pub fn canonical_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Everything but '%' is ASCII here or part of a UTF-8 sequence
            // copied whole: push the char that starts at `i`.
            let c = raw[i..].chars().next().ok_or(PathError::BadEscape)?;
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).and_then(|c| hex(*c)),
            bytes.get(i + 2).and_then(|c| hex(*c)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = h * 16 + l;
        match decoded {
            b'/' => return Err(PathError::EncodedSlash),
            0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter(decoded)),
            c if is_unreserved(c) => out.push(c as char),
            c => {
                out.push('%');
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 0xF)] as char);
            }
        }
        i += 3;
    }
    Ok(Cow::Owned(out))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §2.3: escaping these never changes a URI's meaning.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_path_has_one_canonical_form() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/files/private", "/files/private"),
            ("/files/%70rivate", "/files/private"),
            ("/files/%70%72%69%76%61%74%65", "/files/private"),
            ("/%66iles/private", "/files/private"),
            ("//files/private", "/files/private"),
            ("/files//private", "/files/private"),
            ("/files/private/", "/files/private"),
            ("/files/private//", "/files/private"),
            ("/files/./private", "/files/private"),
            ("/./files/private", "/files/private"),
            ("/files/%2E/private", "/files/private"),
            ("/files/x/../private", "/files/private"),
            ("/files/x/%2E%2E/private", "/files/private"),
            ("/files/x/%2e%2e/private", "/files/private"),
            ("/files/private/.", "/files/private"),
            ("/files/private/x/..", "/files/private"),
            ("//", "/"),
            ("/.", "/"),
            ("/a/..", "/"),
            // Reserved and non-ASCII escapes stay escaped, with upper-case hex.
            ("/a%20b", "/a%20b"),
            ("/a%c3%b6", "/a%C3%B6"),
            ("/a%3fb", "/a%3Fb"),
            ("/J%C3%B6rg", "/J%C3%B6rg"),
            ("/a%25", "/a%25"),
            ("/~user/x-y_z.txt", "/~user/x-y_z.txt"),
            ("/%7Euser", "/~user"),
            // A segment of dots that is not exactly `.` or `..` is a name.
            ("/...", "/..."),
            ("/a/.b", "/a/.b"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical(raw).as_deref(), Ok(*want), "{raw}");
        }
    }

    #[test]
    fn paths_without_a_safe_canonical_form_are_refused() {
        let cases: &[(&str, PathError)] = &[
            ("files", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%g0", PathError::BadEscape),
            ("/100%", PathError::BadEscape),
            ("/files%2Fprivate", PathError::EncodedSlash),
            ("/files%2fprivate", PathError::EncodedSlash),
            ("/a%00b", PathError::ControlCharacter(0)),
            ("/a%0A", PathError::ControlCharacter(0x0A)),
            ("/a%7f", PathError::ControlCharacter(0x7F)),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2E%2E/etc", PathError::AboveRoot),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical(raw), Err(want.clone()), "{raw}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_stable() {
        for p in ["/", "/a", "/a/b/c", "/notes/{id}"] {
            assert!(matches!(canonical(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        for p in ["/a%2e", "//x", "/a/./b/../c/"] {
            let once = canonical(p).unwrap().into_owned();
            assert_eq!(canonical(&once).unwrap(), once, "{p}");
        }
    }
}
