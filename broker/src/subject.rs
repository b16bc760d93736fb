//! Subjects and patterns: the grammar every published event and every subscription goes through.
//!
//! A [`Subject`] names where an event is published (`user.42.created`); a [`Pattern`] names what a
//! subscriber wants and may hold wildcards (`user.*.created`, `user.>`). Both are validated once,
//! when parsed, and are cheap to clone afterwards (an `Arc<str>` inside), so the rest of the broker
//! never sees an unchecked string.
//!
//! The grammar, written for client implementers, is `proto-docs/subjects.md`. In short:
//!
//! - tokens are separated by `.`, are never empty, and are made of ASCII letters, digits and
//!   `_ - : @ + =` only (never `/` or `\`: the first token names a directory);
//! - in a pattern a whole token may be `*` (exactly one token) or, as the last token only, `>`
//!   (one or more tokens); a wildcard inside a longer token (`a*`) is an error, not a literal;
//! - a client's subject or pattern holds at most [`MAX_SUBJECT_BYTES`] bytes and
//!   [`MAX_SUBJECT_TOKENS`] tokens; subjects the broker makes (dead letters) may exceed that by
//!   their prefix ([`Subject::prefixed`]);
//! - the first token is the *namespace*; [`RESERVED_NAMESPACES`] belong to the broker, and a
//!   pattern whose first token is a wildcard never matches them ([`NamespaceScope`]);
//! - matching is case-sensitive.
//!
//! Errors say what is wrong and where: `empty token at position 2 in "a..b"` (positions count
//! tokens from 1).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Longest subject or pattern a client may use, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 255;

/// Most tokens a client's subject or pattern may hold.
pub const MAX_SUBJECT_TOKENS: usize = 32;

/// Longest prefix (dot included) the broker may put before a client subject, in bytes.
pub const MAX_PREFIX_BYTES: usize = 64;

/// Most tokens the broker may put before a client subject.
pub const MAX_PREFIX_TOKENS: usize = 4;

/// The namespace of the broker's own events: dead letters, advisories.
pub const BROKER_NAMESPACE: &str = "_bus_";

/// The namespace of request/reply inboxes: `_inbox.<128-bit random, 32 hex digits>`.
pub const INBOX_NAMESPACE: &str = "_inbox";

/// Namespaces clients may not publish to (but for a reply to a live inbox), and that a pattern
/// starting with a wildcard never matches.
pub const RESERVED_NAMESPACES: [&str; 2] = [BROKER_NAMESPACE, INBOX_NAMESPACE];

/// Inputs longer than this are shortened in error messages, so an error never echoes a huge input.
const ERROR_EXCERPT_BYTES: usize = 64;

/// What was being parsed when an error was found; shown in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A publish subject.
    Subject,
    /// A subscription pattern.
    Pattern,
    /// A namespace (one token).
    Namespace,
    /// A prefix the broker puts before a subject.
    Prefix,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Subject => "subject",
            Kind::Pattern => "pattern",
            Kind::Namespace => "namespace",
            Kind::Prefix => "prefix",
        })
    }
}

/// Why a subject, pattern or namespace was rejected. Positions count tokens from 1; `input` holds
/// the offending text (shortened to about 64 bytes when longer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The input was the empty string.
    #[error("empty {kind}")]
    Empty {
        /// What was being parsed.
        kind: Kind,
    },
    /// The input is longer than the byte limit.
    #[error("{kind} {input:?} is {len} bytes long, more than the {max}-byte limit")]
    TooLong {
        /// What was being parsed.
        kind: Kind,
        /// The input, shortened.
        input: String,
        /// Its length in bytes.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The input has more tokens than the limit.
    #[error("{kind} {input:?} has {count} tokens, more than the {max}-token limit")]
    TooManyTokens {
        /// What was being parsed.
        kind: Kind,
        /// The input, shortened.
        input: String,
        /// How many tokens it has.
        count: usize,
        /// The limit it broke.
        max: usize,
    },
    /// Two dots in a row, or a leading or trailing dot.
    #[error("empty token at position {position} in {input:?}")]
    EmptyToken {
        /// Token position, from 1.
        position: usize,
        /// The input, shortened.
        input: String,
    },
    /// A character outside ASCII letters, digits and `_ - : @ + =`.
    #[error(
        "invalid character {character:?} in token {token:?} at position {position} in {input:?}"
    )]
    InvalidCharacter {
        /// The character.
        character: char,
        /// The token holding it, shortened.
        token: String,
        /// Token position, from 1.
        position: usize,
        /// The input, shortened.
        input: String,
    },
    /// `*` or `>` as a token of a publish subject (or of a namespace).
    #[error(
        "wildcard {wildcard:?} at position {position} in {kind} {input:?}: a {kind} cannot hold wildcards"
    )]
    WildcardNotAllowed {
        /// What was being parsed.
        kind: Kind,
        /// `"*"` or `">"`.
        wildcard: &'static str,
        /// Token position, from 1.
        position: usize,
        /// The input, shortened.
        input: String,
    },
    /// `*` or `>` inside a longer token, such as `a*` or `b>`.
    #[error(
        "{wildcard:?} inside token {token:?} at position {position} in {input:?}: a wildcard must be a whole token"
    )]
    WildcardInsideToken {
        /// `"*"` or `">"`.
        wildcard: &'static str,
        /// The token holding it, shortened.
        token: String,
        /// Token position, from 1.
        position: usize,
        /// The input, shortened.
        input: String,
    },
    /// `>` anywhere but as the last token of a pattern.
    #[error("\">\" must be the last token in {input:?} (found at position {position})")]
    TailNotLast {
        /// Token position of the misplaced `>`, from 1.
        position: usize,
        /// The input, shortened.
        input: String,
    },
    /// A namespace given where one token is expected held a dot.
    #[error("namespace {input:?} must be a single token")]
    NamespaceNotOneToken {
        /// The input, shortened.
        input: String,
    },
    /// A client tried to publish into a reserved namespace.
    #[error("namespace {namespace:?} is reserved for the broker")]
    Reserved {
        /// The reserved namespace.
        namespace: &'static str,
    },
    /// The broker tried to prefix a subject with something outside a reserved namespace.
    #[error("prefix {input:?} is not in a reserved namespace")]
    PrefixNotReserved {
        /// The prefix, shortened.
        input: String,
    },
}

/// Byte and token limits applied while parsing.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Most bytes.
    bytes: usize,
    /// Most tokens.
    tokens: usize,
}

/// The limits clients live under.
const CLIENT_LIMITS: Limits = Limits {
    bytes: MAX_SUBJECT_BYTES,
    tokens: MAX_SUBJECT_TOKENS,
};

/// The limits of broker-made subjects: a client subject plus a prefix.
const INTERNAL_LIMITS: Limits = Limits {
    bytes: MAX_SUBJECT_BYTES + MAX_PREFIX_BYTES,
    tokens: MAX_SUBJECT_TOKENS + MAX_PREFIX_TOKENS,
};

/// The limits of a prefix.
const PREFIX_LIMITS: Limits = Limits {
    bytes: MAX_PREFIX_BYTES - 1, // the joining dot counts against the prefix
    tokens: MAX_PREFIX_TOKENS,
};

/// Whether `c` may appear in a literal token ([`TOKEN_BYTES`]: ASCII only).
fn is_token_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(|b| TOKEN_BYTES[usize::from(b)])
}

/// `s` as it appears in an error message: whole if short, else its start and an ellipsis.
fn excerpt(s: &str) -> String {
    if s.len() <= ERROR_EXCERPT_BYTES {
        return s.to_owned();
    }
    let mut end = ERROR_EXCERPT_BYTES - 16;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Which bytes may appear in a literal token: ASCII letters and digits and `_-:@+=`. A table,
/// since [`plain_tokens`] looks up every byte of every subject published.
const TOKEN_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b':' | b'@' | b'+' | b'=');
        b += 1;
    }
    t
};

/// The token count of `input` when it is literal tokens only (token bytes and single dots,
/// neither first nor last): the common case, checked in one pass over the bytes. `None` for
/// anything else, which [`scan`]'s token-by-token walk then accepts or explains.
fn plain_tokens(input: &str) -> Option<usize> {
    let mut count = 1;
    let mut token_empty = true;
    for &b in input.as_bytes() {
        if b == b'.' {
            if token_empty {
                return None;
            }
            count += 1;
            token_empty = true;
        } else if TOKEN_BYTES[usize::from(b)] {
            token_empty = false;
        } else {
            return None;
        }
    }
    (!token_empty).then_some(count)
}

/// Checks `input` against the grammar and returns its token count. `kind` says whether wildcards
/// are allowed (only in a [`Kind::Pattern`]).
fn scan(input: &str, kind: Kind, limits: Limits) -> Result<usize, SubjectError> {
    if input.is_empty() {
        return Err(SubjectError::Empty { kind });
    }
    if input.len() > limits.bytes {
        return Err(SubjectError::TooLong {
            kind,
            input: excerpt(input),
            len: input.len(),
            max: limits.bytes,
        });
    }
    if let Some(count) = plain_tokens(input)
        && count <= limits.tokens
    {
        return Ok(count);
    }
    walk_tokens(input, kind, limits)
}

/// [`scan`] token by token, naming what is wrong: the grammar's definition, which
/// [`plain_tokens`] shortcuts for the common case.
fn walk_tokens(input: &str, kind: Kind, limits: Limits) -> Result<usize, SubjectError> {
    let count = input.bytes().filter(|&b| b == b'.').count() + 1;
    if count > limits.tokens {
        return Err(SubjectError::TooManyTokens {
            kind,
            input: excerpt(input),
            count,
            max: limits.tokens,
        });
    }
    for (index, token) in input.split('.').enumerate() {
        let position = index + 1;
        if token.is_empty() {
            return Err(SubjectError::EmptyToken {
                position,
                input: excerpt(input),
            });
        }
        if token == "*" || token == ">" {
            let wildcard: &'static str = if token == "*" { "*" } else { ">" };
            if kind != Kind::Pattern {
                return Err(SubjectError::WildcardNotAllowed {
                    kind,
                    wildcard,
                    position,
                    input: excerpt(input),
                });
            }
            if wildcard == ">" && position != count {
                return Err(SubjectError::TailNotLast {
                    position,
                    input: excerpt(input),
                });
            }
            continue;
        }
        for character in token.chars() {
            if character == '*' || character == '>' {
                return Err(SubjectError::WildcardInsideToken {
                    wildcard: if character == '*' { "*" } else { ">" },
                    token: excerpt(token),
                    position,
                    input: excerpt(input),
                });
            }
            if !is_token_char(character) {
                return Err(SubjectError::InvalidCharacter {
                    character,
                    token: excerpt(token),
                    position,
                    input: excerpt(input),
                });
            }
        }
    }
    Ok(count)
}

/// Whether `namespace` is one of [`RESERVED_NAMESPACES`] (exactly: `_BUS_` and `_bus_x` are not).
pub fn is_reserved_namespace(namespace: &str) -> bool {
    RESERVED_NAMESPACES.contains(&namespace)
}

/// Checks that `namespace` is a single literal token, as used to name a log directory.
pub fn validate_namespace(namespace: &str) -> Result<(), SubjectError> {
    if namespace.contains('.') {
        return Err(SubjectError::NamespaceNotOneToken {
            input: excerpt(namespace),
        });
    }
    scan(namespace, Kind::Namespace, CLIENT_LIMITS).map(|_| ())
}

/// The first token of a valid subject or pattern.
pub(crate) fn first_token(text: &str) -> &str {
    // Every publish asks for its namespace several times. The first token is short: a plain
    // loop over bytes costs less than setting up a `split` or a `memchr` search.
    text.bytes()
        .position(|b| b == b'.')
        .map_or(text, |dot| &text[..dot])
}

/// A validated publish subject: one or more literal tokens, no wildcards.
///
/// Cloning is cheap (a reference count). Equality, ordering and hashing are those of the text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject {
    /// The text, known to follow the grammar.
    text: Arc<str>,
}

impl Subject {
    /// Parses a subject a client publishes to, under the client limits
    /// ([`MAX_SUBJECT_BYTES`], [`MAX_SUBJECT_TOKENS`]).
    ///
    /// Reserved namespaces parse: whether a client may publish there is [`Subject::check_publish`].
    pub fn parse(input: &str) -> Result<Subject, SubjectError> {
        scan(input, Kind::Subject, CLIENT_LIMITS)?;
        Ok(Subject { text: input.into() })
    }

    /// Parses a subject the broker made itself (for example read back from its own log), which may
    /// exceed the client limits by a prefix of up to [`MAX_PREFIX_BYTES`] bytes and
    /// [`MAX_PREFIX_TOKENS`] tokens, but then only in a reserved namespace.
    pub fn parse_internal(input: &str) -> Result<Subject, SubjectError> {
        let count = scan(input, Kind::Subject, INTERNAL_LIMITS)?;
        if !is_reserved_namespace(first_token(input)) {
            // Outside the reserved namespaces the client limits hold.
            if input.len() > MAX_SUBJECT_BYTES {
                return Err(SubjectError::TooLong {
                    kind: Kind::Subject,
                    input: excerpt(input),
                    len: input.len(),
                    max: MAX_SUBJECT_BYTES,
                });
            }
            if count > MAX_SUBJECT_TOKENS {
                return Err(SubjectError::TooManyTokens {
                    kind: Kind::Subject,
                    input: excerpt(input),
                    count,
                    max: MAX_SUBJECT_TOKENS,
                });
            }
        }
        Ok(Subject { text: input.into() })
    }

    /// Builds a broker-made subject `<prefix>.<subject>`, such as `_bus_.dead.user.42.created`.
    /// The prefix must be valid subject text in a reserved namespace, at most
    /// [`MAX_PREFIX_BYTES`] bytes (with the joining dot) and [`MAX_PREFIX_TOKENS`] tokens, so
    /// the result may exceed the client limits by exactly that much.
    pub fn prefixed(prefix: &str, subject: &Subject) -> Result<Subject, SubjectError> {
        scan(prefix, Kind::Prefix, PREFIX_LIMITS)?;
        if !is_reserved_namespace(first_token(prefix)) {
            return Err(SubjectError::PrefixNotReserved {
                input: excerpt(prefix),
            });
        }
        let text = format!("{prefix}.{}", subject.as_str());
        Ok(Subject { text: text.into() })
    }

    /// The inbox subject `_inbox.<id as 32 lowercase hex digits>` for a request's reply.
    pub fn inbox(id: u128) -> Subject {
        Subject {
            text: format!("{INBOX_NAMESPACE}.{id:032x}").into(),
        }
    }

    /// The subject's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.text.split('.')
    }

    /// How many tokens the subject has.
    pub fn token_count(&self) -> usize {
        self.text.bytes().filter(|&b| b == b'.').count() + 1
    }

    /// The namespace: the first token.
    pub fn namespace(&self) -> &str {
        first_token(&self.text)
    }

    /// Whether the namespace is one of [`RESERVED_NAMESPACES`].
    pub fn is_reserved(&self) -> bool {
        is_reserved_namespace(self.namespace())
    }

    /// Whether this is in the inbox namespace (`_inbox.…`).
    pub fn is_inbox(&self) -> bool {
        self.namespace() == INBOX_NAMESPACE
    }

    /// Whether a client may publish here: anywhere but a reserved namespace, except a reply to an
    /// inbox that `inbox_is_live` says is waiting.
    pub fn check_publish(
        &self,
        inbox_is_live: impl FnOnce(&Subject) -> bool,
    ) -> Result<(), SubjectError> {
        match self.namespace() {
            BROKER_NAMESPACE => Err(SubjectError::Reserved {
                namespace: BROKER_NAMESPACE,
            }),
            INBOX_NAMESPACE if !inbox_is_live(self) => Err(SubjectError::Reserved {
                namespace: INBOX_NAMESPACE,
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({:?})", &*self.text)
    }
}

impl FromStr for Subject {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subject::parse(s)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Subject::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One token of a [`Pattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternToken<'a> {
    /// Matches exactly this token (case-sensitive).
    Literal(&'a str),
    /// `*`: matches any one token.
    Wildcard,
    /// `>`: matches one or more tokens; only ever the last token.
    Tail,
}

impl<'a> PatternToken<'a> {
    /// Classifies one token of a valid pattern.
    fn of(token: &'a str) -> PatternToken<'a> {
        match token {
            "*" => PatternToken::Wildcard,
            ">" => PatternToken::Tail,
            literal => PatternToken::Literal(literal),
        }
    }
}

/// Which namespaces a pattern can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceScope<'a> {
    /// The pattern's first token is this literal namespace (which may be reserved: `_bus_.>`).
    One(&'a str),
    /// The pattern starts with `*` or `>`: every namespace but the reserved ones.
    Any,
}

impl NamespaceScope<'_> {
    /// Whether subjects in `namespace` can match a pattern of this scope.
    pub fn includes(&self, namespace: &str) -> bool {
        match self {
            NamespaceScope::One(own) => *own == namespace,
            NamespaceScope::Any => !is_reserved_namespace(namespace),
        }
    }
}

/// A validated subscription pattern: literal tokens, `*` tokens, and maybe a final `>`.
///
/// Cloning is cheap (a reference count). Equality, ordering and hashing are those of the text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    /// The text, known to follow the grammar.
    text: Arc<str>,
}

impl Pattern {
    /// Parses a pattern under the client limits ([`MAX_SUBJECT_BYTES`], [`MAX_SUBJECT_TOKENS`]).
    pub fn parse(input: &str) -> Result<Pattern, SubjectError> {
        scan(input, Kind::Pattern, CLIENT_LIMITS)?;
        Ok(Pattern { text: input.into() })
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = PatternToken<'_>> + Clone {
        self.text.split('.').map(PatternToken::of)
    }

    /// Whether the pattern holds no wildcard, so it matches exactly one subject.
    pub fn is_literal(&self) -> bool {
        self.tokens().all(|t| matches!(t, PatternToken::Literal(_)))
    }

    /// Which namespaces the pattern can match: one, or all but the reserved ones.
    pub fn namespace(&self) -> NamespaceScope<'_> {
        match PatternToken::of(first_token(&self.text)) {
            PatternToken::Literal(namespace) => NamespaceScope::One(namespace),
            PatternToken::Wildcard | PatternToken::Tail => NamespaceScope::Any,
        }
    }

    /// Whether the pattern can match some subject in `namespace`.
    pub fn may_match_namespace(&self, namespace: &str) -> bool {
        self.namespace().includes(namespace)
    }

    /// Whether `subject` matches, token by token. This is the reference the trie is tested
    /// against; routing uses [`crate::trie::SubjectTrie`].
    pub fn matches(&self, subject: &Subject) -> bool {
        self.matches_text(subject.as_str())
    }

    /// Whether the pattern matches `subject`, a subject's text already known to follow the
    /// grammar (for example read back from the broker's own log), without building a
    /// [`Subject`].
    pub fn matches_text(&self, subject: &str) -> bool {
        if !self.may_match_namespace(first_token(subject)) {
            return false;
        }
        let mut tokens = subject.split('.');
        for wanted in self.tokens() {
            match wanted {
                PatternToken::Literal(literal) => {
                    if tokens.next() != Some(literal) {
                        return false;
                    }
                }
                PatternToken::Wildcard => {
                    if tokens.next().is_none() {
                        return false;
                    }
                }
                PatternToken::Tail => return tokens.next().is_some(),
            }
        }
        tokens.next().is_none()
    }

    /// Whether every subject `other` matches is matched by `self` too (a permission check:
    /// may a holder of `self` subscribe to `other`?). Exact, not an approximation: `a.>`
    /// covers `a.*.b` and `a.>`, `a.*` does not cover `a.>`, and `>` does not cover the
    /// reserved namespaces (as it does not match them).
    pub fn covers(&self, other: &Pattern) -> bool {
        if let NamespaceScope::One(ns) = other.namespace()
            && is_reserved_namespace(ns)
            && self.namespace() != NamespaceScope::One(ns)
        {
            return false;
        }
        let mut theirs = other.tokens();
        for mine in self.tokens() {
            let Some(t) = theirs.next() else {
                return false;
            };
            match (mine, t) {
                (PatternToken::Tail, _) => return true,
                (PatternToken::Wildcard, PatternToken::Tail) => return false,
                (PatternToken::Wildcard, _) => {}
                (PatternToken::Literal(a), PatternToken::Literal(b)) if a == b => {}
                (PatternToken::Literal(_), _) => return false,
            }
        }
        theirs.next().is_none()
    }

    /// Whether some subject is matched by both `self` and `other`.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        if !self.namespace_compatible(other) || !other.namespace_compatible(self) {
            return false;
        }
        let (mut a, mut b) = (self.tokens(), other.tokens());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(PatternToken::Tail), Some(_)) | (Some(_), Some(PatternToken::Tail)) => {
                    return true;
                }
                (Some(PatternToken::Literal(x)), Some(PatternToken::Literal(y))) if x != y => {
                    return false;
                }
                _ => {}
            }
        }
    }

    /// Whether a reserved first token of `self` can meet `other`'s first token: only the
    /// same literal does (`*` and `>` do not match reserved namespaces).
    fn namespace_compatible(&self, other: &Pattern) -> bool {
        match self.namespace() {
            NamespaceScope::One(ns) if is_reserved_namespace(ns) => {
                other.namespace() == NamespaceScope::One(ns)
            }
            _ => true,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.text)
    }
}

impl FromStr for Pattern {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<Subject> for Pattern {
    /// A subject is a pattern that matches only itself.
    fn from(subject: Subject) -> Pattern {
        Pattern { text: subject.text }
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_subjects() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("a", "a", &["a"]),
            ("user.42.created", "user", &["user", "42", "created"]),
            (
                "a_b-c:d@e+f=g.H9",
                "a_b-c:d@e+f=g",
                &["a_b-c:d@e+f=g", "H9"],
            ),
            ("_bus_.dead.x", "_bus_", &["_bus_", "dead", "x"]),
            ("0.1.2", "0", &["0", "1", "2"]),
        ];
        for &(input, namespace, tokens) in cases {
            let subject = Subject::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(subject.as_str(), input);
            assert_eq!(subject.namespace(), namespace, "{input:?}");
            assert_eq!(subject.tokens().collect::<Vec<_>>(), tokens, "{input:?}");
            assert_eq!(subject.token_count(), tokens.len(), "{input:?}");
            assert_eq!(subject.to_string(), input);
        }
    }

    #[test]
    fn parses_valid_patterns() {
        use PatternToken::{Literal as L, Tail, Wildcard};
        let cases: &[(&str, &[PatternToken<'_>])] = &[
            ("a", &[L("a")]),
            ("*", &[Wildcard]),
            (">", &[Tail]),
            ("a.*.c", &[L("a"), Wildcard, L("c")]),
            ("a.>", &[L("a"), Tail]),
            ("*.*.>", &[Wildcard, Wildcard, Tail]),
        ];
        for &(input, tokens) in cases {
            let pattern = Pattern::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(pattern.tokens().collect::<Vec<_>>(), tokens, "{input:?}");
            assert_eq!(
                pattern.is_literal(),
                tokens.iter().all(|t| matches!(t, L(_)))
            );
        }
    }

    /// Every error form, with its exact message.
    #[test]
    fn rejects_with_messages_that_say_what_and_where() {
        let long = "a".repeat(256);
        let many = vec!["a"; 33].join(".");
        let cases: &[(Kind, &str, &str)] = &[
            (Kind::Subject, "", "empty subject"),
            (Kind::Pattern, "", "empty pattern"),
            (
                Kind::Subject,
                "a..b",
                r#"empty token at position 2 in "a..b""#,
            ),
            (Kind::Subject, ".a", r#"empty token at position 1 in ".a""#),
            (Kind::Subject, "a.", r#"empty token at position 2 in "a.""#),
            (Kind::Subject, ".", r#"empty token at position 1 in ".""#),
            (
                Kind::Pattern,
                "a..b",
                r#"empty token at position 2 in "a..b""#,
            ),
            (
                Kind::Pattern,
                "a.>.b",
                r#"">" must be the last token in "a.>.b" (found at position 2)"#,
            ),
            (
                Kind::Pattern,
                ">.a",
                r#"">" must be the last token in ">.a" (found at position 1)"#,
            ),
            (
                Kind::Subject,
                "a.*",
                r#"wildcard "*" at position 2 in subject "a.*": a subject cannot hold wildcards"#,
            ),
            (
                Kind::Subject,
                ">",
                r#"wildcard ">" at position 1 in subject ">": a subject cannot hold wildcards"#,
            ),
            (
                Kind::Subject,
                "a*",
                r#""*" inside token "a*" at position 1 in "a*": a wildcard must be a whole token"#,
            ),
            (
                Kind::Pattern,
                "a.b>",
                r#"">" inside token "b>" at position 2 in "a.b>": a wildcard must be a whole token"#,
            ),
            (
                Kind::Pattern,
                "*a",
                r#""*" inside token "*a" at position 1 in "*a": a wildcard must be a whole token"#,
            ),
            (
                Kind::Subject,
                "a b",
                r#"invalid character ' ' in token "a b" at position 1 in "a b""#,
            ),
            (
                Kind::Subject,
                "ns.a/b",
                r#"invalid character '/' in token "a/b" at position 2 in "ns.a/b""#,
            ),
            (
                Kind::Pattern,
                "a\\b",
                r#"invalid character '\\' in token "a\\b" at position 1 in "a\\b""#,
            ),
            (
                Kind::Subject,
                "caf\u{e9}",
                "invalid character '\u{e9}' in token \"caf\u{e9}\" at position 1 in \"caf\u{e9}\"",
            ),
            (
                Kind::Subject,
                "a\nb",
                r#"invalid character '\n' in token "a\nb" at position 1 in "a\nb""#,
            ),
            (
                Kind::Subject,
                &long,
                r#"subject "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..." is 256 bytes long, more than the 255-byte limit"#,
            ),
            (
                Kind::Pattern,
                &many,
                r#"pattern "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a...." has 33 tokens, more than the 32-token limit"#,
            ),
            (
                Kind::Namespace,
                "a.b",
                r#"namespace "a.b" must be a single token"#,
            ),
            (
                Kind::Namespace,
                "*",
                r#"wildcard "*" at position 1 in namespace "*": a namespace cannot hold wildcards"#,
            ),
            (Kind::Namespace, "", "empty namespace"),
        ];
        for &(kind, input, message) in cases {
            let got = match kind {
                Kind::Subject => Subject::parse(input).map(drop),
                Kind::Pattern => Pattern::parse(input).map(drop),
                Kind::Namespace => validate_namespace(input),
                Kind::Prefix => unreachable!("no prefix cases here"),
            };
            match got {
                Ok(()) => panic!("{kind} {input:?} was accepted"),
                Err(e) => assert_eq!(e.to_string(), message, "{kind} {input:?}"),
            }
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let longest = format!("{}.b", "a".repeat(MAX_SUBJECT_BYTES - 2));
        assert!(Subject::parse(&longest).is_ok());
        assert!(Pattern::parse(&longest).is_ok());
        let deepest = vec!["a"; MAX_SUBJECT_TOKENS].join(".");
        assert!(Subject::parse(&deepest).is_ok());
        assert!(Pattern::parse(&deepest).is_ok());
    }

    #[test]
    fn broker_subjects_may_exceed_limits_by_their_prefix() {
        let longest = Subject::parse(&vec!["ab"; MAX_SUBJECT_TOKENS].join(".")).unwrap();
        let dead = Subject::prefixed("_bus_.dead", &longest).unwrap();
        assert_eq!(dead.token_count(), MAX_SUBJECT_TOKENS + 2);
        assert!(dead.is_reserved());
        assert!(
            Subject::parse(dead.as_str()).is_err(),
            "over the client limit"
        );
        assert_eq!(Subject::parse_internal(dead.as_str()).unwrap(), dead);

        let cases: &[(&str, &str)] = &[
            (
                "user.dead",
                r#"prefix "user.dead" is not in a reserved namespace"#,
            ),
            ("_bus_..x", r#"empty token at position 2 in "_bus_..x""#),
            (
                "_bus_.>",
                r#"wildcard ">" at position 2 in prefix "_bus_.>": a prefix cannot hold wildcards"#,
            ),
            (
                "_bus_.a.b.c.d",
                r#"prefix "_bus_.a.b.c.d" has 5 tokens, more than the 4-token limit"#,
            ),
        ];
        for &(prefix, message) in cases {
            let err = Subject::prefixed(prefix, &longest).unwrap_err();
            assert_eq!(err.to_string(), message, "{prefix:?}");
        }
        // Outside a reserved namespace the client limits hold even for the broker.
        let over = format!("user.{}", longest.as_str());
        assert!(matches!(
            Subject::parse_internal(&over),
            Err(SubjectError::TooManyTokens {
                max: MAX_SUBJECT_TOKENS,
                ..
            })
        ));
    }

    #[test]
    fn reserved_namespaces_refuse_client_publishes_but_live_inbox_replies() {
        let inbox = Subject::inbox(0xabc);
        assert_eq!(inbox.as_str(), "_inbox.00000000000000000000000000000abc");
        let cases: &[(&str, bool, Result<(), &str>)] = &[
            ("user.created", false, Ok(())),
            ("_bus_x.a", false, Ok(())),
            ("_BUS_.a", false, Ok(())),
            ("_bus_.dead.a", true, Err("_bus_")),
            (inbox.as_str(), true, Ok(())),
            (inbox.as_str(), false, Err("_inbox")),
        ];
        for &(input, live, expected) in cases {
            let subject = Subject::parse(input).unwrap();
            let got = subject.check_publish(|_| live);
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{input:?}"),
                Err(ns) => assert_eq!(
                    got.unwrap_err().to_string(),
                    format!("namespace {ns:?} is reserved for the broker"),
                    "{input:?}"
                ),
            }
        }
    }

    #[test]
    fn namespace_scope_says_which_namespaces_a_pattern_touches() {
        /// Namespaces with whether the pattern can touch them.
        type Touches = &'static [(&'static str, bool)];
        let cases: &[(&str, NamespaceScope<'_>, Touches)] = &[
            (
                "user.*",
                NamespaceScope::One("user"),
                &[("user", true), ("order", false)],
            ),
            (
                ">",
                NamespaceScope::Any,
                &[("user", true), ("_bus_", false), ("_inbox", false)],
            ),
            (
                "*.created",
                NamespaceScope::Any,
                &[("order", true), ("_bus_", false)],
            ),
            (
                "_bus_.>",
                NamespaceScope::One("_bus_"),
                &[("_bus_", true), ("user", false)],
            ),
        ];
        for &(input, scope, touches) in cases {
            let pattern = Pattern::parse(input).unwrap();
            assert_eq!(pattern.namespace(), scope, "{input:?}");
            for &(namespace, expected) in touches {
                assert_eq!(
                    pattern.may_match_namespace(namespace),
                    expected,
                    "{input:?} {namespace}"
                );
            }
        }
    }

    #[test]
    fn naive_matcher_follows_the_grammar() {
        let cases: &[(&str, &str, bool)] = &[
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            ("*", "a", true),
            (">", "_bus_.dead", false),
            ("*.dead", "_bus_.dead", false),
            ("_bus_.>", "_bus_.dead.x", true),
            ("_inbox.*", "_inbox.abc", true),
            ("A.b", "a.b", false),
        ];
        for &(pattern, subject, expected) in cases {
            let got = Pattern::parse(pattern)
                .unwrap()
                .matches(&Subject::parse(subject).unwrap());
            assert_eq!(got, expected, "{pattern} ~ {subject}");
        }
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let subject: Subject = serde_json::from_str(r#""a.b""#).unwrap();
        assert_eq!(serde_json::to_string(&subject).unwrap(), r#""a.b""#);
        let pattern: Pattern = serde_json::from_str(r#""a.>""#).unwrap();
        assert_eq!(serde_json::to_string(&pattern).unwrap(), r#""a.>""#);
        let err = serde_json::from_str::<Subject>(r#""a..b""#).unwrap_err();
        assert!(
            err.to_string().contains("empty token at position 2"),
            "{err}"
        );
    }

    /// Every pattern and subject of up to a few tokens over a small alphabet.
    fn universe(tokens: &[&str], max_len: usize) -> Vec<String> {
        let mut all: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
        let mut last = all.clone();
        for _ in 1..max_len {
            let next: Vec<String> = last
                .iter()
                .flat_map(|p| tokens.iter().map(move |t| format!("{p}.{t}")))
                .collect();
            all.extend(next.iter().cloned());
            last = next;
        }
        all
    }

    proptest::proptest! {
        /// The one-pass shortcut accepts only what the token walk accepts, with the same count,
        /// so errors and limits stay the walk's.
        #[test]
        fn plain_tokens_agree_with_the_token_walk(input in "[a.b*>_%\u{e9}-]{1,12}") {
            let limits = Limits { bytes: 64, tokens: 4 };
            for kind in [Kind::Subject, Kind::Pattern, Kind::Namespace, Kind::Prefix] {
                let walked = walk_tokens(&input, kind, limits);
                if let Some(count) = plain_tokens(&input) {
                    proptest::prop_assert!(
                        count > limits.tokens || walked == Ok(count),
                        "{input:?} as {kind:?}: shortcut {count}, walk {walked:?}"
                    );
                }
                proptest::prop_assert_eq!(scan(&input, kind, limits), walked);
            }
        }
    }

    #[test]
    fn covers_and_overlaps_agree_with_matching_every_subject() {
        let patterns: Vec<Pattern> = universe(&["a", "b", "_bus_", "*", ">"], 3)
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .collect();
        let subjects = universe(&["a", "b", "c", "_bus_"], 5);
        for p in &patterns {
            for q in &patterns {
                let both = subjects
                    .iter()
                    .filter(|s| p.matches_text(s) && q.matches_text(s));
                let exists = both.clone().next().is_some();
                let covered = subjects
                    .iter()
                    .all(|s| !q.matches_text(s) || p.matches_text(s));
                assert_eq!(p.covers(q), covered, "{p} covers {q}");
                assert_eq!(p.overlaps(q), exists, "{p} overlaps {q}");
            }
        }
    }
}
