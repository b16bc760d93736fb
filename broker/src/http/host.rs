//! The `Host` check, which stops DNS rebinding: a web page on `attacker.example` whose name
//! was made to resolve to 127.0.0.1 reaches the broker with `Host: attacker.example`, and is
//! refused `421 misdirected_request`.
//!
//! The names answered for ([`HostPolicy::from_config`]): those of `--allowed-hosts` when
//! given (`example.com`, `.example.com` for it and its subdomains, an address, `*`); without
//! it, a broker listening on loopback without credentials answers only loopback names
//! (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`), and any other broker (credentials,
//! or `--allow-anonymous` on the network) any name. The port is never compared. A request
//! without a `Host` (HTTP/1.0 tools) is not a browser's and passes.

use std::borrow::Cow;
use std::net::IpAddr;

use axum::extract::Request;

use crate::config::Config;
use crate::error::{Error, ErrorCode};

/// Which `Host` names are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// Any name.
    Any,
    /// Loopback names and addresses only.
    Loopback,
    /// These names (lowercase; a leading `.` also matches subdomains) and loopback ones.
    List(Vec<String>),
}

impl HostPolicy {
    /// The policy `config` asks for (see the module docs).
    pub fn from_config(config: &Config) -> HostPolicy {
        if config.allowed_hosts.iter().any(|h| h == "*") {
            HostPolicy::Any
        } else if !config.allowed_hosts.is_empty() {
            HostPolicy::List(
                config
                    .allowed_hosts
                    .iter()
                    .map(|h| normalize(h).into_owned())
                    .collect(),
            )
        } else if config.loopback_hosts_only() {
            HostPolicy::Loopback
        } else {
            HostPolicy::Any
        }
    }

    /// Whether `host` (a `Host` value: a name or address, maybe with a port) is answered.
    pub fn allows(&self, host: &str) -> bool {
        if matches!(self, HostPolicy::Any) {
            return true;
        }
        let name = normalize(strip_port(host));
        match self {
            HostPolicy::Any => true,
            HostPolicy::Loopback => is_loopback_name(&name),
            HostPolicy::List(list) => {
                is_loopback_name(&name)
                    || list.iter().any(|allowed| match allowed.strip_prefix('.') {
                        Some(domain) => {
                            *name == *domain
                                || name
                                    .strip_suffix(domain)
                                    .is_some_and(|sub| sub.ends_with('.'))
                        }
                        None => *name == **allowed,
                    })
            }
        }
    }
}

/// Checks one `--allowed-hosts` entry.
pub fn check_allowed_host(spec: &str) -> Result<(), String> {
    let ok = !spec.is_empty()
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.*:[]_".contains(c))
        && (spec == "*" || !spec.contains('*'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid allowed host {spec:?}: a name (example.com), .example.com for its subdomains too, an address, or *"
        ))
    }
}

/// `name` lowercase, without brackets or a trailing dot.
fn normalize(name: &str) -> Cow<'_, str> {
    let n = name.trim().trim_end_matches('.');
    let n = n
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(n);
    // Checked on every request: most names are lowercase already and are not copied.
    if n.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(n.to_ascii_lowercase())
    } else {
        Cow::Borrowed(n)
    }
}

/// `host` without its `:port` (an IPv6 address keeps its brackets).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons; only one colon is a port.
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `localhost`, `*.localhost`, 127.0.0.0/8, `::1` (and `::ffff:127.x.y.z`).
pub fn is_loopback_name(name: &str) -> bool {
    // The names clients use most, answered before parsing an address.
    if matches!(name, "localhost" | "127.0.0.1" | "::1") || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The request's `Host`: the header, or the URI's authority (HTTP/2).
pub fn request_host(req: &Request) -> Option<&str> {
    match req.headers().get(axum::http::header::HOST) {
        Some(v) => v.to_str().ok().or(Some("\u{0}")),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// The check: `421 misdirected_request` for a `Host` the policy does not answer.
pub fn check_host(policy: &HostPolicy, req: &Request) -> Result<(), Error> {
    if let Some(host) = request_host(req)
        && !policy.allows(host)
    {
        let shown: String = host.chars().take(100).collect();
        return Err(Error::new(
            ErrorCode::MisdirectedRequest,
            format!(
                "this broker does not answer for host {shown:?}; add it to --allowed-hosts (see proto-docs/security.md)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_policy_takes_loopback_names_with_any_port() {
        let p = HostPolicy::Loopback;
        for ok in [
            "localhost",
            "localhost:2021",
            "LOCALHOST.",
            "ui.localhost:80",
            "127.0.0.1",
            "127.1.2.3:2021",
            "[::1]",
            "[::1]:2021",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "attacker.example",
            "attacker.example:2021",
            "localhost.attacker.example",
            "10.0.0.1",
            "[2001:db8::1]:2021",
            "\u{0}",
            "",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_list_takes_its_names_subdomains_when_dotted_and_loopback() {
        let p = HostPolicy::List(vec!["bus.example.com".into(), ".internal".into()]);
        for ok in [
            "bus.example.com:443",
            "BUS.example.com",
            "a.internal",
            "internal",
            "localhost",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "example.com",
            "evil-bus.example.com",
            "xinternal",
            "a.internal.evil",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
        assert!(check_allowed_host("*.example.com").is_err());
        assert!(check_allowed_host("http://x").is_err());
        assert!(check_allowed_host("[::1]").is_ok());
    }
}
