//! [`Permissions`]: what one grant allows, as written in the auth file (and in a JWT's `bus`
//! claim), compiled once for checking.
//!
//! - `publish` and `subscribe`: `allow` and `deny` lists of patterns with `*` and `>`; deny
//!   wins. A subject may be published when some `allow` pattern matches it and no `deny`
//!   pattern does. A pattern may be subscribed to when some `allow` pattern covers it (every
//!   subject it matches, see [`Pattern::covers`]) and no `deny` pattern overlaps it (so a
//!   subscription never receives a denied subject; subscribe to narrower patterns instead).
//! - `consumers`: rules of consumer-name globs (`*` matches any run of characters) and the
//!   rights they give: `attach` (take deliveries, create the consumer), `ack`, `manage`
//!   (seek, change settings, delete).
//! - `create_namespace`: which namespaces (name globs) may be created by a first publish,
//!   and how many at most (`quota`).
//! - `admin`: every right on everything; `metrics`: may read `/metrics`.

use serde::Deserialize;

use crate::subject::{Pattern, Subject};

/// A consumer right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerRight {
    /// Attach to the consumer (and create it), taking its deliveries.
    Attach,
    /// Acknowledge its deliveries.
    Ack,
    /// Seek, change settings, delete.
    Manage,
}

impl ConsumerRight {
    /// The right's name in the auth file and in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerRight::Attach => "attach",
            ConsumerRight::Ack => "ack",
            ConsumerRight::Manage => "manage",
        }
    }
}

/// `allow` and `deny` lists as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// Patterns allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Patterns denied (deny wins).
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A consumer rule as written.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerRuleSpec {
    /// Consumer-name globs.
    pub names: Vec<String>,
    /// The rights on them.
    pub rights: Vec<ConsumerRight>,
}

/// The `create_namespace` grant as written.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespaceSpec {
    /// Namespace-name globs that may be created (default `["*"]`).
    #[serde(default = "any_name")]
    pub names: Vec<String>,
    /// How many namespaces this principal may create in all.
    pub quota: usize,
}

fn any_name() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Permissions as written in the auth file or a JWT claim.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsSpec {
    /// Publishing (and requests).
    #[serde(default)]
    pub publish: RulesSpec,
    /// Subscribing (streams, pulls, consumers' filters, answering requests).
    #[serde(default)]
    pub subscribe: RulesSpec,
    /// Rights on consumers, by name.
    #[serde(default)]
    pub consumers: Vec<ConsumerRuleSpec>,
    /// Creating namespaces.
    #[serde(default)]
    pub create_namespace: Option<CreateNamespaceSpec>,
    /// Every right.
    #[serde(default)]
    pub admin: bool,
    /// Reading `/metrics`.
    #[serde(default)]
    pub metrics: bool,
}

/// A glob over names: `*` matches any run of characters (also none); the rest literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    text: String,
}

impl NameGlob {
    /// A glob; any text is one.
    pub fn new(text: &str) -> NameGlob {
        NameGlob {
            text: text.to_owned(),
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }

    /// The glob's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Allow and deny patterns, parsed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

/// Why a rule list refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `allow` pattern covers it.
    NotAllowed,
    /// This `deny` pattern matches (or overlaps) it.
    Denied(String),
}

impl Rules {
    fn compile(spec: &RulesSpec, what: &str) -> Result<Rules, String> {
        let parse = |list: &[String], kind: &str| -> Result<Vec<Pattern>, String> {
            list.iter()
                .map(|p| Pattern::parse(p).map_err(|e| format!("{what}.{kind}: {p:?}: {e}")))
                .collect()
        };
        Ok(Rules {
            allow: parse(&spec.allow, "allow")?,
            deny: parse(&spec.deny, "deny")?,
        })
    }

    /// Whether `subject` may be published.
    pub fn check_subject(&self, subject: &Subject) -> Result<(), Refusal> {
        if let Some(d) = self.deny.iter().find(|d| d.matches(subject)) {
            return Err(Refusal::Denied(d.as_str().to_owned()));
        }
        if self.allow.iter().any(|a| a.matches(subject)) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    /// Whether `pattern` may be subscribed to: covered by an allow, meeting no deny.
    pub fn check_pattern(&self, pattern: &Pattern) -> Result<(), Refusal> {
        if let Some(d) = self.deny.iter().find(|d| d.overlaps(pattern)) {
            return Err(Refusal::Denied(d.as_str().to_owned()));
        }
        if self.allow.iter().any(|a| a.covers(pattern)) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    /// Whether some allowed subject may lie in `namespace` (for listings).
    pub fn touches_namespace(&self, namespace: &str) -> bool {
        self.allow.iter().any(|a| a.may_match_namespace(namespace))
    }
}

/// One consumer rule, compiled.
#[derive(Debug, Clone)]
struct ConsumerRule {
    names: Vec<NameGlob>,
    rights: Vec<ConsumerRight>,
}

/// The `create_namespace` grant, compiled.
#[derive(Debug, Clone)]
pub struct CreateNamespace {
    names: Vec<NameGlob>,
    /// Namespaces this principal may create in all.
    pub quota: usize,
}

/// One grant's permissions, compiled.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    /// As written (shown by `GET /v1/whoami`).
    pub spec: PermissionsSpec,
    publish: Rules,
    subscribe: Rules,
    consumers: Vec<ConsumerRule>,
    create_namespace: Option<CreateNamespace>,
}

impl Permissions {
    /// Compiles `spec`; the error names the field and the pattern that does not parse.
    pub fn compile(spec: PermissionsSpec) -> Result<Permissions, String> {
        Ok(Permissions {
            publish: Rules::compile(&spec.publish, "publish")?,
            subscribe: Rules::compile(&spec.subscribe, "subscribe")?,
            consumers: spec
                .consumers
                .iter()
                .map(|r| ConsumerRule {
                    names: r.names.iter().map(|n| NameGlob::new(n)).collect(),
                    rights: r.rights.clone(),
                })
                .collect(),
            create_namespace: spec.create_namespace.as_ref().map(|c| CreateNamespace {
                names: c.names.iter().map(|n| NameGlob::new(n)).collect(),
                quota: c.quota,
            }),
            spec,
        })
    }

    /// Every right (`admin: true`).
    pub fn is_admin(&self) -> bool {
        self.spec.admin
    }

    /// May read `/metrics`.
    pub fn may_read_metrics(&self) -> bool {
        self.spec.admin || self.spec.metrics
    }

    /// Whether `subject` may be published.
    pub fn check_publish(&self, subject: &Subject) -> Result<(), Refusal> {
        if self.is_admin() {
            return Ok(());
        }
        self.publish.check_subject(subject)
    }

    /// Whether `pattern` may be subscribed to.
    pub fn check_subscribe(&self, pattern: &Pattern) -> Result<(), Refusal> {
        if self.is_admin() {
            return Ok(());
        }
        self.subscribe.check_pattern(pattern)
    }

    /// Whether the holder has `right` on the consumer `name`.
    pub fn has_consumer_right(&self, name: &str, right: ConsumerRight) -> bool {
        self.is_admin()
            || self
                .consumers
                .iter()
                .any(|r| r.rights.contains(&right) && r.names.iter().any(|g| g.matches(name)))
    }

    /// Whether the holder has any right on the consumer `name` (so may see it).
    pub fn sees_consumer(&self, name: &str) -> bool {
        self.is_admin()
            || self
                .consumers
                .iter()
                .any(|r| !r.rights.is_empty() && r.names.iter().any(|g| g.matches(name)))
    }

    /// Whether the namespace may be seen: some publish or subscribe allow reaches it.
    pub fn sees_namespace(&self, namespace: &str) -> bool {
        self.is_admin()
            || self.publish.touches_namespace(namespace)
            || self.subscribe.touches_namespace(namespace)
    }

    /// The quota under which `namespace` may be created; `None` when it may not be.
    pub fn create_quota(&self, namespace: &str) -> Option<usize> {
        if self.is_admin() {
            return Some(usize::MAX);
        }
        let c = self.create_namespace.as_ref()?;
        c.names
            .iter()
            .any(|g| g.matches(namespace))
            .then_some(c.quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(yaml: &str) -> Permissions {
        Permissions::compile(serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn subject(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }

    fn pattern(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn publish_needs_an_allow_and_no_deny() {
        let p = perms("publish: {allow: ['orders.>'], deny: ['orders.secret.*']}");
        assert_eq!(p.check_publish(&subject("orders.created")), Ok(()));
        assert_eq!(
            p.check_publish(&subject("orders.secret.x")),
            Err(Refusal::Denied("orders.secret.*".into()))
        );
        assert_eq!(
            p.check_publish(&subject("billing.x")),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn subscribe_needs_a_covering_allow_and_no_overlapping_deny() {
        let p = perms("subscribe: {allow: ['user.*.inbox', 'rpc.>'], deny: ['rpc.admin.>']}");
        assert_eq!(p.check_subscribe(&pattern("user.42.inbox")), Ok(()));
        assert_eq!(p.check_subscribe(&pattern("user.*.inbox")), Ok(()));
        assert_eq!(
            p.check_subscribe(&pattern("user.>")),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(p.check_subscribe(&pattern("rpc.orders.*")), Ok(()));
        assert_eq!(
            p.check_subscribe(&pattern("rpc.>")),
            Err(Refusal::Denied("rpc.admin.>".into()))
        );
        assert_eq!(
            p.check_subscribe(&pattern("rpc.*.x")),
            Err(Refusal::Denied("rpc.admin.>".into()))
        );
    }

    #[test]
    fn consumer_rights_go_by_name_glob() {
        let p = perms(
            "consumers: [{names: ['billing-*'], rights: [attach, ack]}, {names: ['billing-ops'], rights: [manage]}]",
        );
        assert!(p.has_consumer_right("billing-worker", ConsumerRight::Attach));
        assert!(p.has_consumer_right("billing-worker", ConsumerRight::Ack));
        assert!(!p.has_consumer_right("billing-worker", ConsumerRight::Manage));
        assert!(p.has_consumer_right("billing-ops", ConsumerRight::Manage));
        assert!(!p.has_consumer_right("orders", ConsumerRight::Attach));
        assert!(p.sees_consumer("billing-x") && !p.sees_consumer("orders"));
    }

    #[test]
    fn globs_match_runs_of_characters() {
        for (glob, name, want) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abcbc", true),
            ("a*b*c", "axbyc", true),
            ("a*b*c", "axc", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(NameGlob::new(glob).matches(name), want, "{glob} {name}");
        }
    }

    #[test]
    fn admin_has_every_right_and_nothing_is_the_default() {
        let admin = perms("admin: true");
        assert_eq!(admin.check_publish(&subject("x.y")), Ok(()));
        assert_eq!(admin.check_subscribe(&pattern(">")), Ok(()));
        assert!(admin.has_consumer_right("any", ConsumerRight::Manage));
        assert!(admin.may_read_metrics());
        let none = perms("{}");
        assert_eq!(
            none.check_publish(&subject("x.y")),
            Err(Refusal::NotAllowed)
        );
        assert!(!none.may_read_metrics() && none.create_quota("x").is_none());
    }

    #[test]
    fn create_namespace_names_and_quota() {
        let p = perms("create_namespace: {names: ['team-*'], quota: 3}");
        assert_eq!(p.create_quota("team-a"), Some(3));
        assert_eq!(p.create_quota("other"), None);
        let q = perms("create_namespace: {quota: 1}");
        assert_eq!(q.create_quota("anything"), Some(1));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let spec: PermissionsSpec = serde_yaml_ng::from_str("publish: {allow: ['a.>.b']}").unwrap();
        let e = Permissions::compile(spec).unwrap_err();
        assert!(e.contains("publish.allow") && e.contains("a.>.b"), "{e}");
    }
}
