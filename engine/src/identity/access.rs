//! Access rules: who may call a route, a GraphQL field, an MCP tool or
//! prompt. The host decides here, in one place, for every surface.
//!
//! The rule for a target is the first `[[access.rules]]` entry that matches
//! it, else `[access] default` (which is `authenticated` unless the operator
//! says otherwise). On top of that, roles a plugin declares itself
//! (`@auth(roles: [...])` on a field, `access.roles` on a tool) are always
//! required: operators open things, plugins can only close them further.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::Principal;

/// What a caller needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, with or without credentials.
    Public,
    /// Any valid principal.
    Authenticated,
    /// A principal with at least one of these roles.
    Roles(Vec<String>),
}

impl Rule {
    /// `public`, `authenticated` or `roles(a, b)`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        match text {
            "public" => return Ok(Rule::Public),
            "authenticated" => return Ok(Rule::Authenticated),
            _ => {}
        }
        let inner = text
            .strip_prefix("roles(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a rule; write \"public\", \"authenticated\" or \"roles(a, b)\""
                )
            })?;
        let roles: Vec<String> = inner
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        if roles.is_empty() {
            return Err(format!("{text:?} names no role"));
        }
        if let Some(bad) = roles.iter().find(|r| !valid_role(r)) {
            return Err(format!(
                "role {bad:?} must be 1-64 characters of letters, digits, '_', '-', '.', ':'"
            ));
        }
        Ok(Rule::Roles(roles))
    }
}

pub fn valid_role(role: &str) -> bool {
    (1..=64).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Public => f.write_str("public"),
            Rule::Authenticated => f.write_str("authenticated"),
            Rule::Roles(roles) => write!(f, "roles({})", roles.join(", ")),
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let text = String::deserialize(d)?;
        Rule::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One `[[access.rules]]` entry: the matchers it names must all match.
/// `*` at the end of a pattern matches any rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// The plugin's manifest name.
    pub plugin: Option<String>,
    /// An HTTP path pattern (`/notes`, `/notes/*`): routes only.
    pub path: Option<String>,
    /// HTTP methods (with `path`); any when absent.
    pub methods: Option<Vec<String>>,
    /// `Type.field` (`Query.*`, `Mutation.deleteNote`): GraphQL fields only.
    pub field: Option<String>,
    /// An MCP tool name: tools only.
    pub tool: Option<String>,
    /// An MCP prompt name: prompts only.
    pub prompt: Option<String>,
    pub allow: Rule,
}

/// `[access]` in the engine config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// The rule for everything no entry matches.
    pub default: Rule,
    pub rules: Vec<RuleEntry>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            default: Rule::Authenticated,
            rules: Vec::new(),
        }
    }
}

impl crate::config::Section for AccessConfig {
    const KEY: &'static str = "access";

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        AccessConfig::validate(self).map_err(|m| crate::config::invalid("access", &m))
    }
}

impl AccessConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, entry) in self.rules.iter().enumerate() {
            let at = format!("access.rules[{i}]");
            let kinds = [
                entry.path.is_some(),
                entry.field.is_some(),
                entry.tool.is_some(),
                entry.prompt.is_some(),
            ]
            .into_iter()
            .filter(|k| *k)
            .count();
            if kinds > 1 {
                return Err(format!(
                    "{at}: name one of path, field, tool or prompt per entry"
                ));
            }
            if kinds == 0 && entry.plugin.is_none() {
                return Err(format!(
                    "{at}: needs a matcher (plugin, path, field, tool or prompt)"
                ));
            }
            if entry.methods.is_some() && entry.path.is_none() {
                return Err(format!("{at}: methods only go with path"));
            }
            if let Some(path) = &entry.path {
                check_path_pattern(path).map_err(|e| format!("{at}: {e}"))?;
            }
            for method in entry.methods.iter().flatten() {
                crate::manifest::parse_method(&method.to_ascii_uppercase())
                    .map_err(|e| format!("{at}: methods: {e}"))?;
            }
            if let Some(field) = &entry.field
                && !field.contains('.')
            {
                return Err(format!(
                    "{at}: field {field:?} must be Type.field (e.g. Query.notes or Query.*)"
                ));
            }
        }
        Ok(())
    }

    /// Whether an anonymous caller could reach any MCP tool or prompt: the
    /// default is public, or a public entry can match a tool or prompt (it
    /// names one, or names only a plugin). When not, an anonymous
    /// `initialize` is refused: a session it opened could list nothing and
    /// call nothing, and would only hold memory.
    pub fn admits_anonymous_mcp(&self) -> bool {
        matches!(self.default, Rule::Public)
            || self
                .rules
                .iter()
                .any(|e| matches!(e.allow, Rule::Public) && e.path.is_none() && e.field.is_none())
    }
}

/// A path pattern in config (`/notes`, `/notes/*`, `/notes*`) must be
/// written in the canonical form requests are matched in (`crate::path`),
/// or it would never match: `/files/%70rivate` or `/files//x` are refused
/// with the spelling to use instead.
pub fn check_path_pattern(pattern: &str) -> Result<(), String> {
    let (base, star) = match pattern.strip_suffix('*') {
        Some(base) => (base, "*"),
        None => (pattern, ""),
    };
    // In `/files/*` the '/' before '*' is meant: everything under /files.
    let (body, slash) = match base.strip_suffix('/') {
        Some(body) if !star.is_empty() && !body.is_empty() => (body, "/"),
        _ => (base, ""),
    };
    match crate::path::canonical(body) {
        Ok(c) if c == body => Ok(()),
        Ok(c) => Err(format!(
            "path {pattern:?} would never match: requests are matched in their canonical \
             form; write \"{c}{slash}{star}\""
        )),
        Err(e) => Err(format!("path {pattern:?}: {e}")),
    }
}

/// Something the host guards.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Route {
        plugin: &'a str,
        method: &'a str,
        path: &'a str,
    },
    Field {
        plugin: &'a str,
        type_name: &'a str,
        field: &'a str,
    },
    Tool {
        plugin: &'a str,
        name: &'a str,
    },
    Prompt {
        plugin: &'a str,
        name: &'a str,
    },
}

impl Target<'_> {
    fn plugin(&self) -> &str {
        match self {
            Target::Route { plugin, .. }
            | Target::Field { plugin, .. }
            | Target::Tool { plugin, .. }
            | Target::Prompt { plugin, .. } => plugin,
        }
    }

    /// How the target is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Route { method, path, .. } => format!("{method} {path}"),
            Target::Field {
                type_name, field, ..
            } => format!("field {type_name}.{field}"),
            Target::Tool { name, .. } => format!("tool '{name}'"),
            Target::Prompt { name, .. } => format!("prompt '{name}'"),
        }
    }
}

impl RuleEntry {
    fn matches(&self, target: &Target<'_>) -> bool {
        if let Some(p) = &self.plugin
            && !glob(p, target.plugin())
        {
            return false;
        }
        match target {
            Target::Route { method, path, .. } => {
                self.field.is_none()
                    && self.tool.is_none()
                    && self.prompt.is_none()
                    && self.path.as_ref().is_none_or(|p| glob(p, path))
                    && self.methods.as_ref().is_none_or(|ms| {
                        ms.iter().any(|m| {
                            // HEAD is GET without the body (RFC 9110 §9.3.2):
                            // what guards GET guards HEAD.
                            m.eq_ignore_ascii_case(method)
                                || (m.eq_ignore_ascii_case("GET")
                                    && method.eq_ignore_ascii_case("HEAD"))
                        })
                    })
            }
            Target::Field {
                type_name, field, ..
            } => {
                self.path.is_none()
                    && self.tool.is_none()
                    && self.prompt.is_none()
                    && self
                        .field
                        .as_ref()
                        .is_none_or(|f| glob(f, &format!("{type_name}.{field}")))
            }
            Target::Tool { name, .. } => {
                self.path.is_none()
                    && self.field.is_none()
                    && self.prompt.is_none()
                    && self.tool.as_ref().is_none_or(|t| glob(t, name))
            }
            Target::Prompt { name, .. } => {
                self.path.is_none()
                    && self.field.is_none()
                    && self.tool.is_none()
                    && self.prompt.as_ref().is_none_or(|p| glob(p, name))
            }
        }
    }
}

/// `pattern` equals `text`, or ends in `*` and prefixes it.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => pattern == text,
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No valid principal, and the target needs one: 401.
    Unauthenticated { target: String },
    /// A principal without any of the needed roles: 403.
    Forbidden { target: String, roles: Vec<String> },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Unauthenticated { target } => write!(
                f,
                "{target} needs authentication: send an API key or a token as `Authorization: Bearer ...`"
            ),
            Denied::Forbidden { target, roles } => write!(
                f,
                "{target} needs one of the roles [{}]; the caller has none of them",
                roles.join(", ")
            ),
        }
    }
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated { .. } => "unauthorized",
            Denied::Forbidden { .. } => "forbidden",
        }
    }
}

impl AccessConfig {
    /// The configured rule for `target` (before plugin-declared roles).
    pub fn rule_for(&self, target: &Target<'_>) -> &Rule {
        self.rules
            .iter()
            .find(|e| e.matches(target))
            .map(|e| &e.allow)
            .unwrap_or(&self.default)
    }

    /// Decides whether `caller` may use `target`. `declared` is what the
    /// plugin asked for: `None` nothing, `Some([])` any principal,
    /// `Some(roles)` one of them.
    pub fn check(
        &self,
        target: Target<'_>,
        declared: Option<&[String]>,
        caller: Option<&Principal>,
    ) -> Result<(), Denied> {
        self.check_or(target, declared, caller, &self.default)
    }

    /// [`check`](Self::check) for something reached only through an
    /// already-checked parent (a GraphQL field on an object type): entries
    /// that name it and declared roles apply, the default does not.
    pub fn check_nested(
        &self,
        target: Target<'_>,
        declared: Option<&[String]>,
        caller: Option<&Principal>,
    ) -> Result<(), Denied> {
        self.check_or(target, declared, caller, &Rule::Public)
    }

    fn check_or(
        &self,
        target: Target<'_>,
        declared: Option<&[String]>,
        caller: Option<&Principal>,
        fallback: &Rule,
    ) -> Result<(), Denied> {
        let rule = self
            .rules
            .iter()
            .find(|e| e.matches(&target))
            .map(|e| &e.allow)
            .unwrap_or(fallback);
        let needs_principal = !matches!(rule, Rule::Public) || declared.is_some();
        let Some(principal) = caller else {
            return if needs_principal {
                Err(Denied::Unauthenticated {
                    target: target.describe(),
                })
            } else {
                Ok(())
            };
        };
        for roles in [
            match rule {
                Rule::Roles(r) => Some(r.as_slice()),
                _ => None,
            },
            declared.filter(|r| !r.is_empty()),
        ]
        .into_iter()
        .flatten()
        {
            if !principal.has_any_role(roles) {
                return Err(Denied::Forbidden {
                    target: target.describe(),
                    roles: roles.to_vec(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn principal(roles: &[&str]) -> Principal {
        Principal {
            subject: "ada".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            claims: Default::default(),
            method: AuthMethod::ApiKey {
                key_id: "kk_00000000".into(),
            },
        }
    }

    fn config(toml_text: &str) -> AccessConfig {
        let c: AccessConfig = toml::from_str(toml_text).unwrap();
        c.validate().unwrap();
        c
    }

    const ROUTE: Target<'static> = Target::Route {
        plugin: "notes",
        method: "GET",
        path: "/notes/1",
    };

    #[test]
    fn rules_parse_and_print() {
        assert_eq!(Rule::parse("public"), Ok(Rule::Public));
        assert_eq!(
            Rule::parse(" roles(a, b.c) "),
            Ok(Rule::Roles(vec!["a".into(), "b.c".into()]))
        );
        assert_eq!(Rule::Roles(vec!["a".into()]).to_string(), "roles(a)");
        assert!(Rule::parse("roles()").unwrap_err().contains("no role"));
        assert!(Rule::parse("admin").unwrap_err().contains("not a rule"));
        assert!(Rule::parse("roles(a b)").is_err());
    }

    #[test]
    fn the_default_is_authenticated() {
        let c = AccessConfig::default();
        assert_eq!(
            c.check(ROUTE, None, None),
            Err(Denied::Unauthenticated {
                target: "GET /notes/1".into()
            })
        );
        assert_eq!(c.check(ROUTE, None, Some(&principal(&[]))), Ok(()));
    }

    #[test]
    fn the_first_matching_entry_wins() {
        let c = config(
            r#"
            default = "roles(admin)"
            [[rules]]
            path = "/notes/*"
            methods = ["POST"]
            allow = "roles(editor)"
            [[rules]]
            plugin = "notes"
            allow = "public"
            "#,
        );
        assert_eq!(c.check(ROUTE, None, None), Ok(()));
        let post = Target::Route {
            plugin: "notes",
            method: "POST",
            path: "/notes/1",
        };
        assert!(matches!(
            c.check(post, None, Some(&principal(&["reader"]))),
            Err(Denied::Forbidden { .. })
        ));
        assert_eq!(c.check(post, None, Some(&principal(&["editor"]))), Ok(()));
        let other = Target::Tool {
            plugin: "billing",
            name: "refund",
        };
        assert!(matches!(
            c.check(other, None, Some(&principal(&["editor"]))),
            Err(Denied::Forbidden { .. })
        ));
    }

    #[test]
    fn declared_roles_hold_even_when_the_operator_opens_a_plugin() {
        let c = config(
            r#"
            [[rules]]
            plugin = "notes"
            allow = "public"
            "#,
        );
        let tool = Target::Tool {
            plugin: "notes",
            name: "purge",
        };
        let admin = ["admin".to_string()];
        assert!(matches!(
            c.check(tool, Some(&admin), None),
            Err(Denied::Unauthenticated { .. })
        ));
        let e = c
            .check(tool, Some(&admin), Some(&principal(&["reader"])))
            .unwrap_err();
        assert_eq!(e.code(), "forbidden");
        assert!(
            e.to_string()
                .contains("tool 'purge' needs one of the roles [admin]")
        );
        assert_eq!(
            c.check(tool, Some(&admin), Some(&principal(&["admin"]))),
            Ok(())
        );
        // `@auth` without roles: any principal.
        assert!(c.check(tool, Some(&[]), None).is_err());
        assert_eq!(c.check(tool, Some(&[]), Some(&principal(&[]))), Ok(()));
    }

    #[test]
    fn entries_apply_to_their_own_kind() {
        let c = config(
            r#"
            default = "public"
            [[rules]]
            field = "Mutation.*"
            allow = "authenticated"
            "#,
        );
        let mutation = Target::Field {
            plugin: "notes",
            type_name: "Mutation",
            field: "addNote",
        };
        let query = Target::Field {
            plugin: "notes",
            type_name: "Query",
            field: "notes",
        };
        assert!(c.check(mutation, None, None).is_err());
        assert_eq!(c.check(query, None, None), Ok(()));
        assert_eq!(c.check(ROUTE, None, None), Ok(()));
    }

    #[test]
    fn a_rule_for_get_guards_head_and_patterns_in_canonical_form_are_kept() {
        let c = config(
            "default = \"public\"\n[[rules]]\npath = \"/notes/*\"\nmethods = [\"GET\"]\nallow = \"authenticated\"",
        );
        for method in ["GET", "HEAD", "get", "head"] {
            let t = Target::Route {
                plugin: "notes",
                method,
                path: "/notes/1",
            };
            assert_eq!(c.rule_for(&t), &Rule::Authenticated, "{method}");
        }
        let post = Target::Route {
            plugin: "notes",
            method: "POST",
            path: "/notes/1",
        };
        assert_eq!(c.rule_for(&post), &Rule::Public);
        // A rule for HEAD alone does not open the GET handler.
        let c = config("[[rules]]\npath = \"/notes/*\"\nmethods = [\"HEAD\"]\nallow = \"public\"");
        assert_eq!(c.rule_for(&ROUTE), &Rule::Authenticated);
        for ok in [
            "/*", "/", "/notes", "/notes*", "/notes/*", "/a%20b/*", "/~x",
        ] {
            assert_eq!(check_path_pattern(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        for (text, needle) in [
            ("[[rules]]\nallow = \"public\"", "needs a matcher"),
            (
                "[[rules]]\npath = \"/a\"\ntool = \"t\"\nallow = \"public\"",
                "one of path",
            ),
            (
                "[[rules]]\npath = \"a\"\nallow = \"public\"",
                "must start with",
            ),
            (
                "[[rules]]\ntool = \"t\"\nmethods = [\"GET\"]\nallow = \"public\"",
                "methods only",
            ),
            (
                "[[rules]]\nfield = \"notes\"\nallow = \"public\"",
                "Type.field",
            ),
            (
                "[[rules]]\npath = \"/files/%70rivate*\"\nallow = \"public\"",
                "write \"/files/private*\"",
            ),
            (
                "[[rules]]\npath = \"/files//x/*\"\nallow = \"public\"",
                "write \"/files/x/*\"",
            ),
            (
                "[[rules]]\npath = \"/files/x/\"\nallow = \"public\"",
                "write \"/files/x\"",
            ),
            (
                "[[rules]]\npath = \"/a%2Fb\"\nallow = \"public\"",
                "escaped '/'",
            ),
            (
                "[[rules]]\npath = \"/a\"\nmethods = [\"G E T\"]\nallow = \"public\"",
                "methods",
            ),
        ] {
            let c: AccessConfig = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let e = toml::from_str::<AccessConfig>("default = \"everyone\"").unwrap_err();
        assert!(e.to_string().contains("not a rule"), "{e}");
    }
}
