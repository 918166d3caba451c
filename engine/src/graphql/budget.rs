//! What one GraphQL operation may cost the engine, checked before it runs
//! and while it runs:
//!
//! - **fields** once fragments are expanded ([`count_fields`]), before
//!   validation: a 1 kB document of fragments that each spread the next one
//!   twice selects 2^24 fields, and validating that alone takes seconds and
//!   gigabytes. The depth and complexity limits do not see it, since they
//!   count a fragment once;
//! - **plugin calls** and **bytes from plugins** per operation
//!   ([`CallBudget`]), while it runs: a thousand aliases of one plugin field
//!   are a thousand calls and a thousand copies of its answer;
//! - the **answer's size** once serialised (the transports check it with
//!   [`Limits::max_response_bytes`]), and the **number of errors** in it
//!   ([`bound_errors`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensionValues, Response, ServerError};

use crate::text::clip;

/// The budgets of one schema, from `[graphql]` and `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `graphql.max_fields`.
    pub max_fields: usize,
    /// `graphql.max_plugin_calls`.
    pub max_plugin_calls: usize,
    /// `http.max_response_body`: for the bytes plugins return and for the
    /// serialised answer.
    pub max_response_bytes: usize,
    /// `graphql.max_errors`.
    pub max_errors: usize,
    /// `http.request_timeout_ms`, for queries and mutations on every
    /// transport (HTTP has its own layer too; a WebSocket has only this).
    pub timeout: Duration,
    /// Documents longer than this are parsed, validated and run on a
    /// blocking thread, so a big one never holds an async worker.
    pub inline_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_fields: 2_000,
            max_plugin_calls: 200,
            max_response_bytes: 8 * 1024 * 1024,
            max_errors: 100,
            timeout: Duration::from_secs(30),
            inline_document_bytes: 8 * 1024,
        }
    }
}

/// Longest error message a client gets back; longer ones (a parse error
/// quoting a 100 kB line, an unknown name the client sent) are cut.
pub const MAX_ERROR_MESSAGE: usize = 512;

/// Deepest fragment nesting [`count_fields`] follows; the parser already
/// refuses selection sets nested deeper than 64, so only a chain of
/// fragments spreading each other gets here.
const MAX_FRAGMENT_NESTING: usize = 256;

/// How many fields the operations of `doc` select once every fragment
/// spread is replaced by its fragment, counting each field of a fragment
/// as often as it is spread. Linear in the document: each fragment is
/// counted once and its count reused. Saturates instead of overflowing.
/// A fragment that spreads itself (directly or not) counts as empty here;
/// validation refuses it.
pub fn count_fields(doc: &ExecutableDocument) -> Result<usize, String> {
    let mut counter = Counter {
        doc,
        done: HashMap::new(),
        visiting: Vec::new(),
    };
    let mut total = 0usize;
    let operations: Vec<&SelectionSet> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| &op.node.selection_set.node).collect()
        }
    };
    for set in operations {
        total = total.saturating_add(counter.selection_set(set)?);
    }
    Ok(total)
}

struct Counter<'a> {
    doc: &'a ExecutableDocument,
    done: HashMap<&'a str, usize>,
    visiting: Vec<&'a str>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Result<usize, String> {
        let mut n = 0usize;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.selection_set(&field.node.selection_set.node)?)
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())?
                }
            };
            n = n.saturating_add(add);
        }
        Ok(n)
    }

    fn fragment(&mut self, name: &'a str) -> Result<usize, String> {
        if let Some(n) = self.done.get(name) {
            return Ok(*n);
        }
        // A cycle, or an unknown fragment: validation reports both.
        if self.visiting.contains(&name) {
            return Ok(0);
        }
        let Some((key, fragment)) = self.doc.fragments.get_key_value(name) else {
            return Ok(0);
        };
        if self.visiting.len() >= MAX_FRAGMENT_NESTING {
            return Err(format!(
                "fragments spread each other more than {MAX_FRAGMENT_NESTING} levels deep"
            ));
        }
        self.visiting.push(key.as_str());
        let n = self.selection_set(&fragment.node.selection_set.node);
        self.visiting.pop();
        let n = n?;
        self.done.insert(key.as_str(), n);
        Ok(n)
    }
}

/// What one operation has left to spend while it runs. Shared by its
/// resolvers (they run concurrently), so counted with atomics.
#[derive(Debug)]
pub struct CallBudget {
    calls_left: AtomicUsize,
    bytes_left: AtomicUsize,
    max_calls: usize,
    max_bytes: usize,
}

/// Why a resolver may not call its plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Calls(usize),
    Bytes(usize),
}

impl Spent {
    pub fn code(self) -> &'static str {
        match self {
            Spent::Calls(_) => "TOO_MANY_PLUGIN_CALLS",
            Spent::Bytes(_) => "RESPONSE_TOO_LARGE",
        }
    }

    pub fn message(self) -> String {
        match self {
            Spent::Calls(n) => format!(
                "this operation has made its {n} plugin calls (graphql.max_plugin_calls); \
                 select fewer plugin fields or aliases"
            ),
            Spent::Bytes(n) => format!(
                "plugins have returned more than {n} bytes for this operation \
                 (http.max_response_body); select less"
            ),
        }
    }
}

impl CallBudget {
    pub fn new(limits: &Limits) -> Self {
        CallBudget {
            calls_left: AtomicUsize::new(limits.max_plugin_calls),
            bytes_left: AtomicUsize::new(limits.max_response_bytes),
            max_calls: limits.max_plugin_calls,
            max_bytes: limits.max_response_bytes,
        }
    }

    /// Takes one call, before the plugin runs; refused once none are left
    /// or once the plugins' answers already fill the response.
    pub fn take_call(&self) -> Result<(), Spent> {
        if self.bytes_left.load(Ordering::Relaxed) == 0 {
            return Err(Spent::Bytes(self.max_bytes));
        }
        self.calls_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .map(drop)
            .map_err(|_| Spent::Calls(self.max_calls))
    }

    /// Counts `bytes` a plugin returned; refused (and the budget left
    /// empty) when they do not fit.
    pub fn take_bytes(&self, bytes: usize) -> Result<(), Spent> {
        let fitted = self
            .bytes_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(bytes))
            });
        match fitted {
            Ok(left) if left >= bytes => Ok(()),
            _ => Err(Spent::Bytes(self.max_bytes)),
        }
    }
}

/// The length of `value` as JSON, without building the text.
pub fn json_len(value: &serde_json::Value) -> usize {
    json_len_of(value)
}

/// [`json_len`] of anything serialisable.
pub fn json_len_of(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail and a JSON value always serialises.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// An answer without data and with one error: what a refused operation gets.
pub fn refusal(code: &str, message: impl Into<String>) -> Response {
    let mut error = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    error.extensions = Some(ext);
    Response::from_errors(vec![error])
}

/// At most `max` errors, each message at most [`MAX_ERROR_MESSAGE`] bytes:
/// a document that repeats one mistake 20,000 times gets a short answer.
/// The last error kept says how many were left out.
pub fn bound_errors(mut response: Response, max: usize) -> Response {
    let total = response.errors.len();
    if total > max {
        response.errors.truncate(max.saturating_sub(1));
        let mut note = ServerError::new(
            format!(
                "{} more errors were left out (graphql.max_errors = {max})",
                total - response.errors.len()
            ),
            None,
        );
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", "TOO_MANY_ERRORS");
        note.extensions = Some(ext);
        response.errors.push(note);
    }
    for error in &mut response.errors {
        if error.message.len() > MAX_ERROR_MESSAGE {
            error.message = clip(&error.message, MAX_ERROR_MESSAGE).into_owned();
        }
    }
    response
}

/// The serialised answer is too big: what the client gets instead.
pub fn too_large(bytes: usize, max: usize) -> Response {
    refusal(
        "RESPONSE_TOO_LARGE",
        format!("the answer takes {bytes} bytes; http.max_response_body allows {max}; select less"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str) -> usize {
        count_fields(&async_graphql::parser::parse_query(query).unwrap()).unwrap()
    }

    #[test]
    fn fields_are_counted_after_fragment_expansion() {
        assert_eq!(count("{ a b { c d } }"), 4);
        assert_eq!(count("{ ...F ...F } fragment F on Query { a b }"), 4);
        assert_eq!(count("{ ... on Query { a } x: a }"), 2);
        assert_eq!(count("query A { a } query B { b c }"), 3);
        // Unknown and cyclic fragments are validation's business.
        assert_eq!(count("{ ...Nope a }"), 1);
        assert_eq!(
            count("{ ...A } fragment A on Query { a ...B } fragment B on Query { b ...A }"),
            2
        );
    }

    /// `query { ...F0 }` where each fragment spreads the next twice:
    /// 2^levels fields.
    fn fan_out(levels: usize) -> String {
        let mut q = String::from("query { ...F0 }");
        for i in 0..levels {
            q.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
        q
    }

    #[test]
    fn a_fragment_fan_out_is_counted_without_expanding_it() {
        // 2^60 fields, counted in microseconds.
        assert_eq!(count(&fan_out(60)), 1usize << 60);
        assert_eq!(count(&fan_out(70)), usize::MAX, "saturates");
    }

    #[test]
    fn a_chain_of_fragments_too_deep_is_refused() {
        let mut q = String::from("query { ...F0 }");
        for i in 0..300 {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        q.push_str(" fragment F300 on Query { a }");
        let doc = async_graphql::parser::parse_query(&q).unwrap();
        assert!(count_fields(&doc).unwrap_err().contains("levels deep"));
    }

    #[test]
    fn the_call_budget_runs_out_of_calls_and_of_bytes() {
        let limits = Limits {
            max_plugin_calls: 2,
            max_response_bytes: 100,
            ..Limits::default()
        };
        let b = CallBudget::new(&limits);
        assert_eq!(b.take_call(), Ok(()));
        assert_eq!(b.take_call(), Ok(()));
        assert_eq!(b.take_call(), Err(Spent::Calls(2)));
        let b = CallBudget::new(&limits);
        assert_eq!(b.take_bytes(60), Ok(()));
        assert_eq!(b.take_bytes(60), Err(Spent::Bytes(100)));
        assert_eq!(
            b.take_call(),
            Err(Spent::Bytes(100)),
            "nothing fits any more"
        );
        assert_eq!(json_len(&serde_json::json!({"a": [1, "x"]})), 13);
    }

    #[test]
    fn errors_are_bounded_in_number_and_length() {
        let errors = (0..500)
            .map(|i| ServerError::new(format!("error {i} {}", "x".repeat(2000)), None))
            .collect();
        let r = bound_errors(Response::from_errors(errors), 100);
        assert_eq!(r.errors.len(), 100);
        assert!(
            r.errors[99]
                .message
                .starts_with("401 more errors were left out")
        );
        assert!(
            r.errors
                .iter()
                .all(|e| e.message.len() <= MAX_ERROR_MESSAGE + 64)
        );
        assert!(r.errors[0].message.starts_with("error 0 xxx"));
    }
}
