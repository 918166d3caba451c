//! Outbound HTTP (`wasi:http/outgoing-handler`): plugins call the world with
//! the standard interface (JS `fetch`, Rust wasi-http clients), and the host
//! sends only to the hosts the plugin's settings allow. Nothing is allowed
//! unless listed. When the engine config has its own `[outbound]
//! allowed_hosts`, that is the ceiling of what a plugin's own `<stem>.toml`
//! may ask for ([`OutboundPolicy::uncovered`]); the operator's
//! `[plugins.<stem>.outbound]` is not held to it.
//!
//! An entry of `[outbound] allowed_hosts` is `[scheme://]host[:port]`:
//! * `api.example.com` — HTTPS on 443 and HTTP on 80;
//! * `https://api.example.com` — HTTPS on 443 only;
//! * `http://127.0.0.1:8080` — exactly that;
//! * `*.example.com` — any subdomain (not `example.com` itself);
//! * `host:*` — any port.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::HostServices;
use super::capability::{CallStart, Capability, PluginFacts};
use crate::config::{Config, ConfigError, PluginSettings, Section, invalid, toml_key};
use crate::runtime::state::CallState;

/// `[outbound]` of the engine config: `allowed_hosts` is the ceiling of the
/// hosts a plugin's own file may ask for (unset: no ceiling). It lets no
/// plugin reach anything by itself.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundCeiling {
    pub allowed_hosts: Option<Vec<String>>,
}

impl Section for OutboundCeiling {
    const KEY: &'static str = "outbound";

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(hosts) = &self.allowed_hosts {
            OutboundPolicy::parse(hosts).map_err(|m| invalid("outbound", &m))?;
        }
        Ok(())
    }
}

impl OutboundCeiling {
    /// Checks the hosts a plugin's own settings file (`file`) asks for
    /// against the ceiling, unless the operator's `[plugins.<stem>]`
    /// (`operator`) sets them: the operator's list replaces the file's.
    pub fn check_plugin_file(
        &self,
        stem: &str,
        file: &std::path::Path,
        own: &PluginSettings,
        operator: Option<&PluginSettings>,
    ) -> Result<(), String> {
        let operator_sets_hosts = operator.is_some_and(|o| o.outbound.allowed_hosts.is_some());
        let (Some(ceiling), Some(asked), false) = (
            &self.allowed_hosts,
            &own.outbound.allowed_hosts,
            operator_sets_hosts,
        ) else {
            return Ok(());
        };
        let file = file.display();
        let key = toml_key(stem);
        let policy = OutboundPolicy::parse(ceiling)
            .map_err(|e| format!("[outbound] in the engine config: {e}"))?;
        let outside = policy
            .uncovered(asked)
            .map_err(|e| format!("{file}: outbound.{e}"))?;
        if !outside.is_empty() {
            return Err(format!(
                "{file}: outbound.allowed_hosts {outside:?} {} outside the engine's ceiling \
                 {ceiling:?} ([outbound] allowed_hosts); ask only for hosts it covers, or \
                 grant {} for this plugin with [plugins.{key}.outbound] allowed_hosts in the \
                 engine config",
                if outside.len() == 1 { "is" } else { "are" },
                if outside.len() == 1 { "it" } else { "them" },
            ));
        }
        Ok(())
    }
}

/// Outbound HTTP as a capability: `wasi:http` linked once, the plugin's
/// checked allow-list as its scope, and per call the hooks that apply it.
pub struct Outbound;

impl Capability for Outbound {
    type Scope = Arc<OutboundPolicy>;
    type Call = OutboundHooks;

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(Outbound)
    }

    /// `wasi:http` reads the call state through its own view trait
    /// (`WasiHttpView`, in `runtime/state.rs`), whose hooks are this
    /// capability's part of the call.
    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String> {
        Ok(plugin.outbound.clone())
    }

    fn begin(policy: &Self::Scope, start: &mut CallStart<'_>) -> OutboundHooks {
        OutboundHooks {
            policy: policy.clone(),
            plugin: start.meta.plugin.clone(),
            request_id: start.meta.request_id.clone(),
        }
    }
}

/// What one plugin may reach. Empty: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    rules: Vec<HostRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    /// None: http or https.
    scheme: Option<Secure>,
    host: HostPattern,
    /// None: the scheme's default port; Some(None): any port.
    port: Option<Option<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secure {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: the suffix `.example.com`.
    Subdomains(String),
}

impl OutboundPolicy {
    /// Parses `allowed_hosts`, naming the first bad entry and why.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|e| HostRule::parse(e).map_err(|why| format!("allowed_hosts entry {e:?}: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(OutboundPolicy { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a request to `scheme://host:port` may go out.
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules.iter().any(|r| r.allows(https, &host, port))
    }

    /// The entries of `asked` that reach anything this policy (the
    /// operator's ceiling) does not: every scheme, port and host an entry
    /// allows must be allowed here too. Errors name a bad entry of `asked`.
    pub fn uncovered<'a>(&self, asked: &'a [String]) -> Result<Vec<&'a str>, String> {
        let mut out = Vec::new();
        for entry in asked {
            let rule = HostRule::parse(entry)
                .map_err(|why| format!("allowed_hosts entry {entry:?}: {why}"))?;
            if !self.covers(&rule) {
                out.push(entry.as_str());
            }
        }
        Ok(out)
    }

    /// A rule is covered when each scheme it allows is, by some rule here:
    /// `api.example.com` (HTTP 80 and HTTPS 443) is covered by
    /// `https://api.example.com` plus `http://api.example.com`, not by
    /// either alone.
    fn covers(&self, asked: &HostRule) -> bool {
        let schemes: &[Secure] = match asked.scheme {
            None => &[Secure::Http, Secure::Https],
            Some(Secure::Http) => &[Secure::Http],
            Some(Secure::Https) => &[Secure::Https],
        };
        schemes.iter().all(|&scheme| {
            let port = match asked.port {
                None => Port::Exactly(scheme.default_port()),
                Some(Some(p)) => Port::Exactly(p),
                Some(None) => Port::Any,
            };
            self.rules
                .iter()
                .any(|r| r.covers(scheme, &asked.host, port))
        })
    }
}

/// The ports one scheme of an asked entry reaches.
#[derive(Debug, Clone, Copy)]
enum Port {
    Exactly(u16),
    Any,
}

impl Secure {
    fn default_port(self) -> u16 {
        match self {
            Secure::Http => 80,
            Secure::Https => 443,
        }
    }
}

impl HostRule {
    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some(("https", rest)) => (Some(Secure::Https), rest),
            Some(("http", rest)) => (Some(Secure::Http), rest),
            Some((other, _)) => return Err(format!("scheme {other:?} is not http or https")),
            None => (None, entry),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err("give a host and optional port only, no path or user".into());
        }
        let (host, port) = split_port(rest)?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            check_host(suffix)?;
            HostPattern::Subdomains(format!(".{suffix}"))
        } else if host == "*" {
            return Err("'*' would allow every host; list the hosts the plugin needs".into());
        } else {
            check_host(&host)?;
            HostPattern::Exact(host)
        };
        Ok(HostRule { scheme, host, port })
    }

    fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        let scheme_ok = match self.scheme {
            None => true,
            Some(Secure::Https) => https,
            Some(Secure::Http) => !https,
        };
        let port_ok = match self.port {
            None => port == if https { 443 } else { 80 },
            Some(None) => true,
            Some(Some(p)) => port == p,
        };
        let host_ok = match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        };
        scheme_ok && port_ok && host_ok
    }

    /// Whether this rule allows every request to `host` over `scheme` on
    /// `port`.
    fn covers(&self, scheme: Secure, host: &HostPattern, port: Port) -> bool {
        let scheme_ok = self.scheme.is_none_or(|s| s == scheme);
        let port_ok = match (self.port, port) {
            (Some(None), _) => true,
            // A finite set of ports never covers "any port".
            (_, Port::Any) => false,
            (None, Port::Exactly(p)) => p == scheme.default_port(),
            (Some(Some(mine)), Port::Exactly(p)) => p == mine,
        };
        let host_ok = match (&self.host, host) {
            (HostPattern::Exact(mine), HostPattern::Exact(h)) => mine == h,
            (HostPattern::Subdomains(suffix), HostPattern::Exact(h)) => {
                h.len() > suffix.len() && h.ends_with(suffix.as_str())
            }
            // `*.example.com` covers `*.example.com` and `*.a.example.com`
            // (both suffixes keep their leading dot, so `*.badexample.com`
            // does not match).
            (HostPattern::Subdomains(suffix), HostPattern::Subdomains(s)) => {
                s.ends_with(suffix.as_str())
            }
            // One host never covers all subdomains.
            (HostPattern::Exact(_), HostPattern::Subdomains(_)) => false,
        };
        scheme_ok && port_ok && host_ok
    }
}

/// `host`, `host:port`, `host:*`, `[v6]`, `[v6]:port`.
fn split_port(s: &str) -> Result<(&str, Option<Option<u16>>), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("unclosed '[' in an IPv6 address")?;
        match after.strip_prefix(':') {
            Some(p) => (addr, Some(p)),
            None if after.is_empty() => (addr, None),
            None => return Err(format!("unexpected {after:?} after the IPv6 address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some("*") => Some(None),
        Some(p) => {
            Some(Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(
                || format!("port {p:?} is not 1-65535 or '*'"),
            )?))
        }
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name or IP address"))
    }
}

/// How long an outbound request may take to connect and to start answering
/// when the guest sets no timeouts of its own. The plugin's call timeout
/// bounds everything anyway; these only make a dead host fail sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// The `wasi:http` hooks of one call: the allow-list check before anything
/// leaves the host.
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    /// The plugin and request to name when something is refused.
    plugin: Arc<str>,
    request_id: Arc<str>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.policy.allows(https, host, port) {
            tracing::warn!(
                plugin = %self.plugin,
                request_id = %self.request_id,
                url = %format!("{}://{host}:{port}", if https { "https" } else { "http" }),
                "outbound request refused: the host is not in the plugin's [outbound] allowed_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let mut options = options.unwrap_or_default();
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        options.first_byte_timeout.get_or_insert(FIRST_BYTE_TIMEOUT);
        options
            .between_bytes_timeout
            .get_or_insert(BETWEEN_BYTES_TIMEOUT);
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn engine(toml: &str) -> Config {
        let c = crate::sections::parse(Path::new("kiln.toml"), toml).unwrap();
        c.validate().unwrap();
        c
    }

    /// What the watcher checks of the hosts a plugin's own file asks for.
    fn check(config: &Config, settings: &str) -> Result<(), String> {
        let own = PluginSettings::parse(Path::new("plugins/x.toml"), settings).unwrap();
        config.section::<OutboundCeiling>().check_plugin_file(
            "x",
            Path::new("plugins/x.toml"),
            &own,
            config.plugins.get("x"),
        )
    }

    #[test]
    fn a_plugin_file_asks_hosts_only_within_the_outbound_ceiling() {
        let hosts = "[outbound]\nallowed_hosts = [\"api.example.com\", \"evil.test\"]";
        // No ceiling: as before, the file decides.
        assert!(check(&engine(""), hosts).is_ok());
        let c = engine("[outbound]\nallowed_hosts = [\"*.example.com\"]");
        let err = check(&c, hosts).unwrap_err();
        assert!(
            err.starts_with("plugins/x.toml: outbound.allowed_hosts [\"evil.test\"] is outside")
                && err.contains("ceiling [\"*.example.com\"] ([outbound] allowed_hosts)")
                && err.contains("[plugins.x.outbound] allowed_hosts"),
            "{err}"
        );
        assert!(!err.contains("api.example.com"), "{err}");
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"api.example.com\"]").is_ok());
        assert!(check(&c, "").is_ok());
        let err = check(&c, "[outbound]\nallowed_hosts = [\"ftp://x\"]").unwrap_err();
        assert!(
            err.contains("plugins/x.toml: outbound.allowed_hosts entry"),
            "{err}"
        );
        // An empty ceiling: plugins may ask for nothing.
        let c = engine("[outbound]\nallowed_hosts = []");
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"a.example.com\"]").is_err());
        // A bad ceiling stops start-up, naming the key.
        let c = crate::sections::parse(Path::new("k.toml"), "[outbound]\nallowed_hosts = [\"*\"]").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("outbound") && err.contains("every host"),
            "{err}"
        );
    }

    #[test]
    fn the_operators_hosts_replace_the_files_and_are_not_held_to_the_ceiling() {
        let c = engine(
            "[plugins.x.outbound]\nallowed_hosts = [\"evil.test\"]\n[outbound]\nallowed_hosts = [\"*.example.com\"]",
        );
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"other.test\"]").is_ok());
    }

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let p = OutboundPolicy::default();
        assert!(!p.allows(true, "example.com", 443));
    }

    #[test]
    fn bare_hosts_mean_the_default_ports_of_both_schemes() {
        let p = policy(&["api.example.com"]);
        assert!(p.allows(true, "api.example.com", 443));
        assert!(p.allows(false, "API.example.com.", 80));
        assert!(!p.allows(true, "api.example.com", 8443));
        assert!(!p.allows(true, "example.com", 443));
        assert!(!p.allows(true, "evil-api.example.com", 443));
    }

    #[test]
    fn schemes_ports_and_wildcards() {
        let p = policy(&[
            "https://secure.example",
            "http://127.0.0.1:8080",
            "*.example.org",
            "svc:*",
            "[::1]:9000",
        ]);
        assert!(p.allows(true, "secure.example", 443));
        assert!(!p.allows(false, "secure.example", 80));
        assert!(p.allows(false, "127.0.0.1", 8080));
        assert!(!p.allows(true, "127.0.0.1", 8080));
        assert!(!p.allows(false, "127.0.0.1", 8081));
        assert!(p.allows(true, "a.b.example.org", 443));
        assert!(!p.allows(true, "example.org", 443));
        assert!(p.allows(false, "svc", 1234));
        assert!(p.allows(false, "::1", 9000));
    }

    /// `ceiling` covers `asked`?
    fn covered(ceiling: &[&str], asked: &str) -> bool {
        let asked = [asked.to_string()];
        policy(ceiling).uncovered(&asked).unwrap().is_empty()
    }

    #[test]
    fn a_ceiling_covers_what_it_allows_and_nothing_more() {
        for (ceiling, asked, expected) in [
            // Hosts: exact, subdomain wildcards, case and trailing dots.
            (&["api.example.com"][..], "api.example.com", true),
            (&["api.example.com"], "API.Example.com.", true),
            (&["api.example.com"], "other.example.com", false),
            (&["api.example.com"], "example.com", false),
            (&["*.example.com"], "api.example.com", true),
            (&["*.example.com"], "a.b.example.com", true),
            (&["*.example.com"], "example.com", false),
            (&["*.example.com"], "api.badexample.com", false),
            (&["*.example.com"], "*.example.com", true),
            (&["*.example.com"], "*.api.example.com", true),
            (&["*.example.com"], "*.badexample.com", false),
            (&["*.api.example.com"], "*.example.com", false),
            (&["api.example.com"], "*.example.com", false),
            (&["example.com"], "*.example.com", false),
            // Schemes: a bare entry is both; a ceiling of one covers only it.
            (&["api.example.com"], "https://api.example.com", true),
            (&["api.example.com"], "http://api.example.com", true),
            (
                &["https://api.example.com"],
                "https://api.example.com",
                true,
            ),
            (
                &["https://api.example.com"],
                "http://api.example.com",
                false,
            ),
            (&["https://api.example.com"], "api.example.com", false),
            (&["http://api.example.com"], "api.example.com", false),
            (
                &["https://api.example.com", "http://api.example.com"],
                "api.example.com",
                true,
            ),
            // Ports: default ports, exact ports, any port.
            // A port without a scheme is both schemes on it: HTTP on 443
            // is not something the bare ceiling allows.
            (&["api.example.com"], "api.example.com:443", false),
            (&["api.example.com"], "https://api.example.com:443", true),
            (&["api.example.com"], "http://api.example.com:80", true),
            (&["api.example.com"], "http://api.example.com:443", false),
            (&["api.example.com"], "api.example.com:8443", false),
            (
                &["api.example.com:8443"],
                "https://api.example.com:8443",
                true,
            ),
            (&["api.example.com:8443"], "api.example.com", false),
            (&["api.example.com:*"], "api.example.com:8443", true),
            (&["api.example.com:*"], "api.example.com", true),
            (&["api.example.com:*"], "api.example.com:*", true),
            (&["api.example.com:8443"], "api.example.com:*", false),
            (&["api.example.com"], "api.example.com:*", false),
            (&["https://api.example.com:*"], "api.example.com:*", false),
            (&["*.example.com:*"], "http://a.example.com:9000", true),
            // IP addresses, v4 and v6.
            (&["http://127.0.0.1:8080"], "http://127.0.0.1:8080", true),
            (&["http://127.0.0.1:8080"], "127.0.0.1:8080", false),
            (&["http://127.0.0.1:8080"], "http://127.0.0.1:8081", false),
            (&["127.0.0.1:*"], "http://127.0.0.1:8081", true),
            (&["[::1]:*"], "http://[::1]:9000", true),
            (&["[::1]:9000"], "[::1]:9001", false),
            // Several ceiling entries: any one may cover an asked entry.
            (&["a.example", "b.example"], "b.example", true),
            // An empty ceiling covers nothing.
            (&[], "api.example.com", false),
        ] {
            assert_eq!(
                covered(ceiling, asked),
                expected,
                "ceiling {ceiling:?}, asked {asked:?}"
            );
        }
    }

    #[test]
    fn uncovered_names_each_entry_outside_the_ceiling_and_refuses_bad_ones() {
        let ceiling = policy(&["*.example.com"]);
        let asked: Vec<String> = ["a.example.com", "evil.test", "b.example.com", "x.test:81"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ceiling.uncovered(&asked).unwrap(),
            ["evil.test", "x.test:81"]
        );
        let e = ceiling.uncovered(&["ftp://x".to_string()]).unwrap_err();
        assert!(e.contains("\"ftp://x\"") && e.contains("scheme"), "{e}");
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, why) in [
            ("ftp://x", "scheme"),
            ("*", "every host"),
            ("x.com/path", "no path"),
            ("x.com:99999", "port"),
            ("user@x.com", "no path or user"),
            ("", "not a host"),
            ("[::1", "IPv6"),
        ] {
            let e = OutboundPolicy::parse(&[entry.to_string()]).unwrap_err();
            assert!(e.contains(why), "{entry}: {e}");
        }
    }
}
