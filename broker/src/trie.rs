//! The subject trie: which subscribers want an event published on a given subject.
//!
//! [`SubjectTrie`] maps subscription [`Pattern`]s to subscriber handles (the broker uses small
//! integer ids). It is keyed by token: each node holds its literal children, one `*` child, the
//! subscribers whose pattern ends there, and those whose pattern ends there with `>`. A `>` is
//! always the last token, so it needs no node of its own: its subscribers sit in the node before
//! it.
//!
//! Matching walks the subject's tokens and visits only branches that can match: at each node the
//! literal child for the next token, the `*` child, and the `>` list. Its cost grows with the
//! subject's depth and with the number of matches, never with the number of subscriptions, and it
//! allocates nothing besides the caller's output buffer ([`SubjectTrie::match_into`]). A subject
//! token is compared with stored ones as three words (`Token::matches`), never through
//! `memcmp`, and a node's few children are scanned in order rather than binary-searched.
//! [`SubjectTrie::match_batch`] first walks many subjects' literal paths (where the big, cold
//! parts of a trie are) together, level by level, in passes of independent memory loads, so
//! that on a trie far larger than the CPU caches the cache misses of different subjects
//! overlap; it then matches each subject against memory in cache, reusing the literal path's
//! nodes it found.
//!
//! Memory: a node with few literal children keeps them inline in a `Vec` (sorted, for inserts);
//! past [`PROMOTE_CHILDREN`] children they move to a [`TokenTable`] (open addressing under a
//! fast hash with random per-table keys, since tokens come from clients). Tokens of up to
//! [`INLINE_TOKEN_BYTES`] bytes are stored without a heap allocation. Removal prunes nodes left empty and gives back spare capacity, so a
//! trie that had a million subscriptions added and then removed holds nothing but its root.
//!
//! Concurrency: [`SubjectTrie`] itself is a plain single-owner structure (`&mut self` to change).
//! [`SharedSubjectTrie`] wraps it in a `std::sync::RwLock`: any number of publishers match at
//! once under the read lock, and adding or removing a subscription takes the write lock for one
//! insert or remove, a critical section of a few microseconds, so a publish never waits longer
//! than that. The lock is never held across an `.await` (no method is async).
//!
//! There is no match cache: the benchmark (`BENCHMARKS.md`) matches over two million distinct
//! subjects, where a cache would only add cost. A cache may pay for real traffic that repeats
//! subjects; it would have to be invalidated on every insert and remove.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{PoisonError, RwLock};

use crate::subject::{
    MAX_PREFIX_TOKENS, MAX_SUBJECT_TOKENS, Pattern, PatternToken, Subject, is_reserved_namespace,
};
use crate::token_table::TokenTable;

/// Tokens up to this many bytes are stored inline in the node, without a heap allocation.
pub const INLINE_TOKEN_BYTES: usize = 22;
// A probe compares inline tokens as three words.
const _: () = assert!(INLINE_TOKEN_BYTES <= 24);

/// Subjects up to this many tokens are split on the stack when matched: every subject a client
/// or the broker makes ([`crate::subject::MAX_SUBJECT_TOKENS`] plus a prefix of
/// [`crate::subject::MAX_PREFIX_TOKENS`]). Deeper ones are split into a `Vec`.
const MATCH_STACK_TOKENS: usize = MAX_SUBJECT_TOKENS + MAX_PREFIX_TOKENS;

/// A node's literal children move from a sorted `Vec` to a [`TokenTable`] when there are more
/// than this many.
pub const PROMOTE_CHILDREN: usize = 16;

/// A node's literal children move back from a [`TokenTable`] to a sorted `Vec` when they drop to this
/// many (below [`PROMOTE_CHILDREN`], so a node at the threshold does not flip back and forth).
pub const DEMOTE_CHILDREN: usize = 8;

/// The text of one literal token, compared as bytes.
#[derive(Clone)]
enum Token {
    /// A short token, stored in place.
    Inline {
        /// How many bytes of `bytes` are used.
        len: u8,
        /// The token, zero-padded.
        bytes: [u8; INLINE_TOKEN_BYTES],
    },
    /// A longer token, on the heap.
    Heap(Box<[u8]>),
}

impl Token {
    /// Stores `text`, inline if it is short enough.
    fn new(text: &str) -> Token {
        let source = text.as_bytes();
        match u8::try_from(source.len()) {
            Ok(len) if source.len() <= INLINE_TOKEN_BYTES => {
                let mut bytes = [0; INLINE_TOKEN_BYTES];
                bytes[..source.len()].copy_from_slice(source);
                Token::Inline { len, bytes }
            }
            _ => Token::Heap(source.into()),
        }
    }

    /// The token's bytes (always valid UTF-8: they came from a `&str`).
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Token::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Token::Heap(bytes) => bytes,
        }
    }
}

impl Token {
    /// Whether this is the token `probe` was made from. Short tokens compare as three words
    /// (no `memcmp` call, no byte loop).
    #[inline]
    fn matches(&self, probe: &Probe<'_>) -> bool {
        match (self, &probe.inline) {
            (Token::Inline { len, bytes }, Some((probe_len, words))) => {
                len == probe_len
                    && word(bytes, 0) == words[0]
                    && word(bytes, 8) == words[1]
                    && word(bytes, 16) == words[2]
            }
            (Token::Heap(bytes), None) => **bytes == *probe.text,
            _ => false,
        }
    }
}

/// Up to eight bytes of `bytes` from `from` on, as a little-endian word (zero-padded). Built in
/// a register: a probe's words are compared right after they are made, and a padded copy in
/// memory would stall that comparison (store-to-load forwarding fails).
#[inline]
fn word(bytes: &[u8], from: usize) -> u64 {
    let rest = bytes.get(from..).unwrap_or(&[]);
    match rest.first_chunk::<8>() {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => rest
            .iter()
            .rev()
            .fold(0, |word, &byte| (word << 8) | u64::from(byte)),
    }
}

/// A subject token made ready to compare with stored [`Token`]s: one of up to
/// [`INLINE_TOKEN_BYTES`] bytes as the three words [`Token::matches`] compares. Made once per
/// token and node searched.
struct Probe<'a> {
    /// The token.
    text: &'a [u8],
    /// Its length and words, when short enough to be stored inline.
    inline: Option<(u8, [u64; 3])>,
}

impl<'a> Probe<'a> {
    /// The probe for `text`.
    #[inline]
    fn new(text: &'a str) -> Probe<'a> {
        let text = text.as_bytes();
        let inline = match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_TOKEN_BYTES => {
                Some((len, [word(text, 0), word(text, 8), word(text, 16)]))
            }
            _ => None,
        };
        Probe { text, inline }
    }
}

impl PartialEq for Token {
    #[inline]
    fn eq(&self, other: &Token) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Token {}

impl Hash for Token {
    /// Hashes exactly like the `[u8]` it borrows as, so maps can be searched by `&[u8]`.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Token {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Builds [`TokenHasher`]s with two secret keys drawn for each map from std's `RandomState`, so
/// clients cannot predict which tokens collide.
#[derive(Clone)]
struct TokenHashState {
    /// Mixed into the starting state.
    k0: u64,
    /// Mixed into the final state.
    k1: u64,
}

impl TokenHashState {
    /// Fresh random keys.
    fn new() -> TokenHashState {
        let random = std::collections::hash_map::RandomState::new();
        TokenHashState {
            k0: random.hash_one(0x5EED_u64),
            k1: random.hash_one(0xFEED_u64),
        }
    }
}

impl BuildHasher for TokenHashState {
    type Hasher = TokenHasher;
    #[inline]
    fn build_hasher(&self) -> TokenHasher {
        TokenHasher {
            state: self.k0,
            key: self.k1,
        }
    }
}

/// A keyed multiply-and-fold hash (the scheme of aHash's portable fallback) for short tokens:
/// several times faster than std's SipHash on 5 to 20 bytes, which showed in the benchmark's
/// profile, and still keyed per map.
struct TokenHasher {
    /// The running state.
    state: u64,
    /// The secret finishing key.
    key: u64,
}

/// An odd 64-bit constant with well-mixed bits (from PCG).
const HASH_MULTIPLE: u64 = 6_364_136_223_846_793_005;

/// Multiplies to 128 bits and folds the halves together.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl TokenHasher {
    /// Mixes one word into the state.
    #[inline]
    fn update(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, HASH_MULTIPLE);
    }
}

impl Hasher for TokenHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.update(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.update(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.update(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let rotation = (self.state & 63) as u32;
        folded_multiply(self.state, self.key).rotate_left(rotation)
    }
}

/// The literal children of a node.
enum Children<T> {
    /// Up to [`PROMOTE_CHILDREN`] children, sorted by token.
    Few(Vec<(Token, Node<T>)>),
    /// More children, by token. Boxed so that the far more common `Few` nodes stay small (24
    /// bytes for this enum instead of 48).
    Many(Box<TokenTable<Token, Node<T>, TokenHashState>>),
}

impl<T> Children<T> {
    /// The child for the token of `probe`, if any. Few children are scanned in order: for a
    /// handful, comparing each (inline, see [`Token::matches`]) beats a binary search's
    /// unpredictable branches and `memcmp` calls.
    #[inline]
    fn get(&self, probe: &Probe<'_>) -> Option<&Node<T>> {
        match self {
            Children::Few(children) => children
                .iter()
                .find(|(t, _)| t.matches(probe))
                .map(|(_, node)| node),
            Children::Many(children) => {
                children.get_by(children.hash(probe.text), |t| t.matches(probe))
            }
        }
    }

    /// The child for `token`, if any, to change.
    fn get_mut(&mut self, token: &[u8]) -> Option<&mut Node<T>> {
        match self {
            Children::Few(children) => children
                .binary_search_by(|(t, _)| t.as_bytes().cmp(token))
                .ok()
                .map(|i| &mut children[i].1),
            Children::Many(children) => children.get_mut(token),
        }
    }

    /// The child for `token`, made (and counted in `nodes`) if missing.
    fn get_or_insert(&mut self, token: &str, nodes: &mut usize) -> &mut Node<T> {
        let key = token.as_bytes();
        if let Children::Few(children) = self
            && children.len() >= PROMOTE_CHILDREN
            && children
                .binary_search_by(|(t, _)| t.as_bytes().cmp(key))
                .is_err()
        {
            let mut map =
                TokenTable::with_capacity_and_hasher(children.len() + 1, TokenHashState::new());
            for (token, node) in std::mem::take(children) {
                map.insert(token, node);
            }
            *self = Children::Many(Box::new(map));
        }
        match self {
            Children::Few(children) => {
                let index = match children.binary_search_by(|(t, _)| t.as_bytes().cmp(key)) {
                    Ok(index) => index,
                    Err(index) => {
                        *nodes += 1;
                        reserve_one(children);
                        children.insert(index, (Token::new(token), Node::new()));
                        index
                    }
                };
                &mut children[index].1
            }
            Children::Many(children) => children.get_or_insert_with(
                key,
                || Token::new(token),
                || {
                    *nodes += 1;
                    Node::new()
                },
            ),
        }
    }

    /// Removes the child for `token`, giving back spare capacity.
    fn remove(&mut self, token: &[u8]) {
        match self {
            Children::Few(children) => {
                if let Ok(index) = children.binary_search_by(|(t, _)| t.as_bytes().cmp(token)) {
                    children.remove(index);
                    shrink(children);
                }
            }
            Children::Many(children) => {
                children.remove(token);
                if children.len() <= DEMOTE_CHILDREN {
                    let mut few: Vec<(Token, Node<T>)> = children.drain();
                    few.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
                    few.shrink_to_fit();
                    *self = Children::Few(few);
                }
            }
        }
    }

    /// Reads every cache line a lookup among few children may read: each child's token and
    /// the handle lists in place in it (nothing for many: their lookups are split up in
    /// [`SubjectTrie::match_batch`]), so that this memory comes into the cache before the
    /// lookup needs it.
    #[inline]
    fn touch(&self) -> usize {
        match self {
            Children::Few(children) => children.iter().fold(0, |acc, (t, node)| {
                acc ^ usize::from(t.as_bytes().first().copied().unwrap_or(0)) ^ node.touch_header()
            }),
            Children::Many(_) => 0,
        }
    }

    /// Whether there are no children.
    fn is_empty(&self) -> bool {
        match self {
            Children::Few(children) => children.is_empty(),
            Children::Many(children) => children.is_empty(),
        }
    }

    /// Calls `f` on every child with its token.
    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a Node<T>)) {
        match self {
            Children::Few(children) => children.iter().for_each(|(t, n)| f(t.as_bytes(), n)),
            Children::Many(children) => children.iter().for_each(|(t, n)| f(t.as_bytes(), n)),
        }
    }
}

/// One level of the trie: what follows a given sequence of pattern tokens.
struct Node<T> {
    /// Children for literal next tokens.
    literals: Children<T>,
    /// The child for a `*` next token that more tokens follow.
    wildcard: Option<Box<Node<T>>>,
    /// Subscribers whose pattern ends here with `*`: they match when exactly one more subject
    /// token follows. Kept here rather than in a `*` child, which saves that child (and the cache
    /// miss to reach it) for the common `a.b.*` pattern.
    last_wildcard: Handles<T>,
    /// Subscribers whose pattern ends here with `>`: they match when at least one more subject
    /// token follows. Sorted, no duplicates.
    tail: Handles<T>,
    /// Subscribers whose pattern ends exactly here.
    exact: Handles<T>,
}

impl<T> Node<T> {
    /// An empty node (allocates nothing).
    fn new() -> Node<T> {
        Node {
            literals: Children::Few(Vec::new()),
            wildcard: None,
            last_wildcard: Handles::Zero,
            tail: Handles::Zero,
            exact: Handles::Zero,
        }
    }

    /// Reads the node's own fields (every cache line it spans), so that they are in the cache
    /// when a lookup reaches it.
    #[inline]
    fn touch_header(&self) -> usize {
        self.exact.touch_header()
            ^ self.tail.touch_header()
            ^ self.last_wildcard.touch_header()
            ^ usize::from(self.wildcard.is_some())
            ^ usize::from(matches!(self.literals, Children::Many(_)))
    }

    /// Reads what matching at this node reads beyond the node itself: its handles kept on the
    /// heap and its few literal children.
    #[inline]
    fn touch_contents(&self) -> usize
    where
        T: Clone,
    {
        self.exact.touch_heap()
            ^ self.tail.touch_heap()
            ^ self.last_wildcard.touch_heap()
            ^ self.literals.touch()
    }

    /// Whether the node holds nothing and can be pruned.
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.tail.is_empty()
            && self.last_wildcard.is_empty()
            && self.wildcard.is_none()
            && self.literals.is_empty()
    }
}

/// Makes room for one more element, growing exactly while the vector is small (most nodes hold
/// one or two subscribers) and doubling after.
fn reserve_one<E>(v: &mut Vec<E>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().clamp(1, usize::MAX / 2));
    }
}

/// Gives back memory after a removal: all of it when empty, the spare part when mostly unused.
fn shrink<E>(v: &mut Vec<E>) {
    if v.is_empty() {
        *v = Vec::new();
    } else if v.len() * 4 <= v.capacity() {
        v.shrink_to_fit();
    }
}

/// The subscriber handles at one place in the trie: sorted, no duplicates. Most places hold a
/// single handle, which is kept in place (no allocation, no extra cache miss when matching).
enum Handles<T> {
    /// No handle.
    Zero,
    /// Exactly one handle.
    One(T),
    /// Two or more handles, sorted.
    Many(Vec<T>),
}

impl<T> Handles<T> {
    /// The handles, sorted.
    #[inline]
    fn as_slice(&self) -> &[T] {
        match self {
            Handles::Zero => &[],
            Handles::One(handle) => std::slice::from_ref(handle),
            Handles::Many(handles) => handles,
        }
    }

    /// Whether there is no handle.
    fn is_empty(&self) -> bool {
        matches!(self, Handles::Zero)
    }

    /// Reads the list's own bytes.
    #[inline]
    fn touch_header(&self) -> usize {
        match self {
            Handles::Zero => 0,
            Handles::One(_) => 1,
            Handles::Many(handles) => handles.len(),
        }
    }

    /// Reads the first handle kept on the heap, if any.
    #[inline]
    fn touch_heap(&self) -> usize
    where
        T: Clone,
    {
        match self {
            Handles::Many(handles) => {
                std::hint::black_box(handles.first().cloned());
                1
            }
            _ => 0,
        }
    }
}

impl<T: Ord> Handles<T> {
    /// Whether `handle` is there.
    fn contains(&self, handle: &T) -> bool {
        self.as_slice().binary_search(handle).is_ok()
    }

    /// Adds `handle`; false if it was already there.
    fn insert(&mut self, handle: T) -> bool {
        match std::mem::replace(self, Handles::Zero) {
            Handles::Zero => {
                *self = Handles::One(handle);
                true
            }
            Handles::One(first) => {
                let added = first != handle;
                *self = if !added {
                    Handles::One(first)
                } else if first < handle {
                    Handles::Many(vec![first, handle])
                } else {
                    Handles::Many(vec![handle, first])
                };
                added
            }
            Handles::Many(mut handles) => {
                let added = match handles.binary_search(&handle) {
                    Ok(_) => false,
                    Err(index) => {
                        handles.insert(index, handle);
                        true
                    }
                };
                *self = Handles::Many(handles);
                added
            }
        }
    }

    /// Removes `handle`, giving back memory; false if it was not there.
    fn remove(&mut self, handle: &T) -> bool {
        match std::mem::replace(self, Handles::Zero) {
            Handles::Zero => false,
            Handles::One(only) if only == *handle => true,
            one @ Handles::One(_) => {
                *self = one;
                false
            }
            Handles::Many(mut handles) => {
                let removed = match handles.binary_search(handle) {
                    Ok(index) => {
                        handles.remove(index);
                        true
                    }
                    Err(_) => false,
                };
                *self = if handles.len() == 1 {
                    handles.pop().map_or(Handles::Zero, Handles::One)
                } else {
                    shrink(&mut handles);
                    Handles::Many(handles)
                };
                removed
            }
        }
    }
}

/// Subscriptions (pattern, subscriber handle), matched against published subjects.
///
/// A subscriber may hold several patterns; a match returns it once however many of them match.
/// Handles are compared with `Ord` (they are kept sorted), so small integer ids are ideal.
pub struct SubjectTrie<T> {
    /// The node before the first token. Never pruned.
    root: Node<T>,
    /// How many (pattern, handle) pairs are stored.
    len: usize,
    /// How many nodes exist besides the root.
    nodes: usize,
}

impl<T> Default for SubjectTrie<T> {
    fn default() -> Self {
        SubjectTrie {
            root: Node::new(),
            len: 0,
            nodes: 0,
        }
    }
}

impl<T: Clone + Ord> SubjectTrie<T> {
    /// An empty trie.
    pub fn new() -> SubjectTrie<T> {
        SubjectTrie::default()
    }

    /// How many subscriptions (pattern, handle pairs) are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no subscription is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many nodes the trie holds besides its root: zero when empty, since removal prunes.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Subscribes `handle` to `pattern`. Returns false if that exact pair was already there.
    pub fn insert(&mut self, pattern: &Pattern, handle: T) -> bool {
        let mut node = &mut self.root;
        let mut tokens = pattern.tokens().peekable();
        while let Some(token) = tokens.next() {
            node = match token {
                PatternToken::Literal(literal) => {
                    node.literals.get_or_insert(literal, &mut self.nodes)
                }
                PatternToken::Wildcard if tokens.peek().is_none() => {
                    let added = node.last_wildcard.insert(handle);
                    self.len += usize::from(added);
                    return added;
                }
                PatternToken::Wildcard => node.wildcard.get_or_insert_with(|| {
                    self.nodes += 1;
                    Box::new(Node::new())
                }),
                PatternToken::Tail => {
                    let added = node.tail.insert(handle);
                    self.len += usize::from(added);
                    return added;
                }
            };
        }
        let added = node.exact.insert(handle);
        self.len += usize::from(added);
        added
    }

    /// Unsubscribes `handle` from `pattern`, pruning nodes left empty. Returns false if that pair
    /// was not there.
    pub fn remove(&mut self, pattern: &Pattern, handle: &T) -> bool {
        let tokens: Vec<PatternToken<'_>> = pattern.tokens().collect();
        let removed = remove_at(&mut self.root, &tokens, handle, &mut self.nodes);
        self.len -= usize::from(removed);
        removed
    }

    /// Whether `handle` is subscribed to exactly `pattern`.
    pub fn contains(&self, pattern: &Pattern, handle: &T) -> bool {
        let mut node = &self.root;
        let mut tokens = pattern.tokens().peekable();
        while let Some(token) = tokens.next() {
            let next = match token {
                PatternToken::Literal(literal) => node.literals.get(&Probe::new(literal)),
                PatternToken::Wildcard if tokens.peek().is_none() => {
                    return node.last_wildcard.contains(handle);
                }
                PatternToken::Wildcard => node.wildcard.as_deref(),
                PatternToken::Tail => return node.tail.contains(handle),
            };
            match next {
                Some(next) => node = next,
                None => return false,
            }
        }
        node.exact.contains(handle)
    }

    /// Puts into `out` (cleared first) every handle with a pattern matching `subject`, each once,
    /// in ascending order. Reusing `out` across calls avoids allocating per match.
    pub fn match_into(&self, subject: &Subject, out: &mut Vec<T>) {
        out.clear();
        // Split the subject once, on the stack; only a subject deeper than any the broker makes
        // would need the heap.
        let mut stack = [""; MATCH_STACK_TOKENS];
        let mut depth = 0;
        let text = subject.as_str();
        let mut start = 0;
        // A plain byte loop: tokens are short, and `str::split` showed in the profile.
        for (end, byte) in text.bytes().chain([b'.']).enumerate() {
            if byte != b'.' {
                continue;
            }
            match (stack.get_mut(depth), text.get(start..end)) {
                (Some(slot), Some(token)) => *slot = token,
                _ => break,
            }
            depth += 1;
            start = end + 1;
        }
        let heap: Vec<&str>;
        let tokens: &[&str] = if depth < MATCH_STACK_TOKENS || subject.token_count() == depth {
            &stack[..depth]
        } else {
            heap = subject.tokens().collect();
            &heap
        };
        let Some((namespace, rest)) = tokens.split_first() else {
            return;
        };
        self.collect_root_wildcards(namespace, rest, out);
        if let Some(child) = self.root.literals.get(&Probe::new(namespace)) {
            collect(child, rest, out);
        }
        sort_dedup(out);
    }

    /// What the root's wildcard patterns (`>`, `*`, `*.…`) give for a subject whose first
    /// token is `namespace`; none for a reserved namespace, which only patterns naming it reach.
    fn collect_root_wildcards(&self, namespace: &str, rest: &[&str], out: &mut Vec<T>) {
        if is_reserved_namespace(namespace) {
            return;
        }
        let root = &self.root;
        append(out, &root.tail);
        if rest.is_empty() {
            append(out, &root.last_wildcard);
        } else if let Some(wildcard) = &root.wildcard {
            collect(wildcard, rest, out);
        }
    }

    /// Matches many subjects at once: `outs[i]` (cleared first) gets what
    /// [`match_into`](Self::match_into) would put there for `subjects[i]` (extra entries of the
    /// longer slice are left alone).
    ///
    /// Faster per subject than one `match_into` after another when the trie is much larger
    /// than the CPU caches. It first walks every subject's all-literal path (the one that
    /// reaches the big, cold parts of the trie, such as one node per user id) level by level,
    /// all subjects together, in passes whose memory loads do not depend on each other: the
    /// token tables' slots, then the entries they name, then the found nodes' few children and
    /// handle lists. The CPU then has many subjects' cache misses in flight at once instead of
    /// one subject's chain at a time. It then matches each subject as `match_into` does, now
    /// against memory in cache, following the literal path's nodes it found instead of
    /// searching them again. Batches of a few dozen subjects gain most.
    pub fn match_batch(&self, subjects: &[Subject], outs: &mut [Vec<T>]) {
        let n = subjects.len().min(outs.len());
        // Every subject's tokens, one after another; subject i's are `tokens[starts[i]..ends[i]]`.
        // `found[t]` is the literal child the walk found for token `t` (under the node found
        // for token `t - 1`, or the root), `None` if there is none or the walk stopped before.
        let mut tokens: Vec<&str> = Vec::with_capacity(n * 4);
        let mut starts: Vec<usize> = Vec::with_capacity(n);
        let mut ends: Vec<usize> = Vec::with_capacity(n);
        // Per subject still walking: (subject, index of its next token, node reached), then
        // per such walk the token's hash and candidate entry when the node's children are in
        // a token table.
        let mut walks: Vec<(usize, usize, &Node<T>)> = Vec::with_capacity(n);
        let mut probes: Vec<(u64, Option<usize>)> = Vec::with_capacity(n);
        for (i, subject) in subjects[..n].iter().enumerate() {
            let first = tokens.len();
            push_tokens(subject.as_str(), &mut tokens);
            starts.push(first);
            ends.push(tokens.len());
            walks.push((i, first, &self.root));
        }
        let mut found: Vec<Option<&Node<T>>> = vec![None; tokens.len()];
        let mut touched = 0usize;
        while !walks.is_empty() {
            walks.retain(|&(i, t, _)| t < ends[i]);
            probes.clear();
            probes.extend(walks.iter().map(|&(_, t, node)| match &node.literals {
                Children::Many(map) => {
                    let hash = map.hash(tokens[t].as_bytes());
                    (hash, map.candidate(hash))
                }
                Children::Few(_) => (0, None),
            }));
            for (&(_, _, node), &(_, candidate)) in walks.iter().zip(&probes) {
                if let Children::Many(map) = &node.literals
                    && let Some((token, child)) = candidate.and_then(|c| map.entry(c))
                {
                    touched ^= usize::from(token.as_bytes().first().copied().unwrap_or(0))
                        ^ child.touch_header();
                }
            }
            let mut kept = 0;
            for w in 0..walks.len() {
                let (i, t, node) = walks[w];
                let probe = Probe::new(tokens[t]);
                let child = match &node.literals {
                    Children::Many(map) => map.get_by(probes[w].0, |token| token.matches(&probe)),
                    few => few.get(&probe),
                };
                if let Some(child) = child {
                    found[t] = Some(child);
                    walks[kept] = (i, t + 1, child);
                    kept += 1;
                }
            }
            walks.truncate(kept);
            for &(_, _, child) in &walks {
                touched ^= child.touch_contents();
            }
        }
        std::hint::black_box(touched);
        // Now match each subject as `match_into` does, but follow the literal path the walk
        // found instead of searching it again.
        for (i, out) in outs[..n].iter_mut().enumerate() {
            let range = starts[i]..ends[i];
            self.match_found(&tokens[range.clone()], &found[range], out);
        }
    }

    /// What [`match_into`](Self::match_into) puts in `out` for the subject split into `tokens`,
    /// where `found[k]` is the literal child for `tokens[k]` on the all-literal path (as
    /// [`match_batch`](Self::match_batch)'s walk found it).
    fn match_found(&self, tokens: &[&str], found: &[Option<&Node<T>>], out: &mut Vec<T>) {
        out.clear();
        let Some((namespace, rest)) = tokens.split_first() else {
            return;
        };
        self.collect_root_wildcards(namespace, rest, out);
        if let Some(child) = found.first().copied().flatten() {
            collect_found(child, rest, &found[1..], out);
        }
        sort_dedup(out);
    }

    /// Every handle with a pattern matching `subject`, each once, in ascending order.
    pub fn matches(&self, subject: &Subject) -> Vec<T> {
        let mut out = Vec::new();
        self.match_into(subject, &mut out);
        out
    }

    /// Whether some subscription can match a subject in `namespace`: one whose pattern starts
    /// with `namespace`, or (outside the reserved namespaces) one starting with `*` or `>`.
    pub fn touches_namespace(&self, namespace: &str) -> bool {
        self.root.literals.get(&Probe::new(namespace)).is_some()
            || (!is_reserved_namespace(namespace)
                && (self.root.wildcard.is_some()
                    || !self.root.tail.is_empty()
                    || !self.root.last_wildcard.is_empty()))
    }

    /// Calls `f` with every subscription's pattern text and handle, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&str, &T)) {
        let mut path = Vec::new();
        walk(&self.root, &mut path, &mut f);
    }
}

/// Appends `handles` to `out`. Pushes the common lone handle directly: `extend_from_slice`
/// would call `memcpy` for it, which showed in the benchmark's profile.
#[inline]
/// Each handle once, in ascending order (several patterns of one subscriber may match).
fn sort_dedup<T: Ord>(out: &mut Vec<T>) {
    if out.len() > 1 {
        out.sort_unstable();
        out.dedup();
    }
}

fn append<T: Clone>(out: &mut Vec<T>, handles: &Handles<T>) {
    match handles {
        Handles::Zero => {}
        Handles::One(handle) => out.push(handle.clone()),
        Handles::Many(many) => out.extend_from_slice(many),
    }
}

/// Appends the tokens of `subject` (valid subject text) to `tokens`, split by a plain byte
/// loop (`str::split` showed in the benchmark's profile).
fn push_tokens<'a>(subject: &'a str, tokens: &mut Vec<&'a str>) {
    let mut start = 0;
    for (end, byte) in subject.bytes().enumerate() {
        if byte == b'.' {
            if let Some(token) = subject.get(start..end) {
                tokens.push(token);
            }
            start = end + 1;
        }
    }
    if let Some(token) = subject.get(start..) {
        tokens.push(token);
    }
}

/// Appends to `out` the handles under `node` matching the remaining subject `tokens`.
fn collect<T: Clone>(node: &Node<T>, tokens: &[&str], out: &mut Vec<T>) {
    let Some((token, rest)) = tokens.split_first() else {
        append(out, &node.exact);
        return;
    };
    // Look the literal child up first, though it is walked last: its (often cold) memory loads
    // then overlap with the work on the other branches.
    let literal = node.literals.get(&Probe::new(token));
    append(out, &node.tail);
    if rest.is_empty() {
        append(out, &node.last_wildcard);
    } else if let Some(wildcard) = &node.wildcard {
        collect(wildcard, rest, out);
    }
    if let Some(child) = literal {
        collect(child, rest, out);
    }
}

/// [`collect`] along the all-literal path: `found[k]` is `node`'s literal descendant for
/// `tokens[..=k]`, already looked up.
fn collect_found<T: Clone>(
    node: &Node<T>,
    tokens: &[&str],
    found: &[Option<&Node<T>>],
    out: &mut Vec<T>,
) {
    let Some((_, rest)) = tokens.split_first() else {
        append(out, &node.exact);
        return;
    };
    append(out, &node.tail);
    if rest.is_empty() {
        append(out, &node.last_wildcard);
    } else if let Some(wildcard) = &node.wildcard {
        collect(wildcard, rest, out);
    }
    if let Some(child) = found.first().copied().flatten() {
        collect_found(child, rest, &found[1..], out);
    }
}

/// Removes `handle` for the remaining pattern `tokens` under `node`, pruning emptied children
/// (and counting them off `nodes`). Recursion depth is the pattern's token count (bounded).
fn remove_at<T: Ord>(
    node: &mut Node<T>,
    tokens: &[PatternToken<'_>],
    handle: &T,
    nodes: &mut usize,
) -> bool {
    match tokens {
        [] => node.exact.remove(handle),
        [PatternToken::Tail, ..] => node.tail.remove(handle),
        [PatternToken::Wildcard] => node.last_wildcard.remove(handle),
        [PatternToken::Wildcard, rest @ ..] => {
            let Some(child) = node.wildcard.as_deref_mut() else {
                return false;
            };
            let removed = remove_at(child, rest, handle, nodes);
            if removed && child.is_empty() {
                node.wildcard = None;
                *nodes -= 1;
            }
            removed
        }
        [PatternToken::Literal(literal), rest @ ..] => {
            let key = literal.as_bytes();
            let Some(child) = node.literals.get_mut(key) else {
                return false;
            };
            let removed = remove_at(child, rest, handle, nodes);
            if removed && child.is_empty() {
                node.literals.remove(key);
                *nodes -= 1;
            }
            removed
        }
    }
}

/// Calls `f` for every subscription under `node`, whose pattern so far is the tokens in `path`.
fn walk<'a, T>(node: &'a Node<T>, path: &mut Vec<&'a [u8]>, f: &mut impl FnMut(&str, &T)) {
    let text = |path: &[&[u8]], last: Option<&[u8]>| {
        let bytes: Vec<u8> = path
            .iter()
            .copied()
            .chain(last)
            .collect::<Vec<_>>()
            .join(&b'.');
        // Tokens were `&str`s split on an ASCII '.', so the join is valid UTF-8.
        String::from_utf8_lossy(&bytes).into_owned()
    };
    if !node.exact.is_empty() {
        let pattern = text(path, None);
        node.exact.as_slice().iter().for_each(|h| f(&pattern, h));
    }
    if !node.last_wildcard.is_empty() {
        let pattern = text(path, Some(b"*"));
        node.last_wildcard
            .as_slice()
            .iter()
            .for_each(|h| f(&pattern, h));
    }
    if !node.tail.is_empty() {
        let pattern = text(path, Some(b">"));
        node.tail.as_slice().iter().for_each(|h| f(&pattern, h));
    }
    if let Some(wildcard) = &node.wildcard {
        path.push(b"*");
        walk(wildcard, path, f);
        path.pop();
    }
    node.literals.for_each(|token, child| {
        path.push(token);
        walk(child, path, f);
        path.pop();
    });
}

/// A [`SubjectTrie`] shared by many threads: publishers match concurrently under a read lock;
/// subscribing and unsubscribing take the write lock for one insert or remove.
///
/// A publish waits at most for the writers queued ahead of it, each a short critical section.
/// No method is async and no lock outlives a call, so no lock is held across an `.await`. A
/// panic while the write lock is held cannot leave the trie half-changed in a way matching
/// trusts (sizes are updated after the change), so a poisoned lock is used as is.
pub struct SharedSubjectTrie<T> {
    /// The trie, behind its lock.
    inner: RwLock<SubjectTrie<T>>,
}

impl<T> Default for SharedSubjectTrie<T> {
    fn default() -> Self {
        SharedSubjectTrie {
            inner: RwLock::new(SubjectTrie::default()),
        }
    }
}

impl<T: Clone + Ord> SharedSubjectTrie<T> {
    /// An empty shared trie.
    pub fn new() -> SharedSubjectTrie<T> {
        SharedSubjectTrie::default()
    }

    /// Runs `f` under the read lock.
    fn read<R>(&self, f: impl FnOnce(&SubjectTrie<T>) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` under the write lock.
    fn write<R>(&self, f: impl FnOnce(&mut SubjectTrie<T>) -> R) -> R {
        f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// See [`SubjectTrie::insert`].
    pub fn insert(&self, pattern: &Pattern, handle: T) -> bool {
        self.write(|trie| trie.insert(pattern, handle))
    }

    /// See [`SubjectTrie::remove`].
    pub fn remove(&self, pattern: &Pattern, handle: &T) -> bool {
        self.write(|trie| trie.remove(pattern, handle))
    }

    /// See [`SubjectTrie::match_into`].
    pub fn match_into(&self, subject: &Subject, out: &mut Vec<T>) {
        self.read(|trie| trie.match_into(subject, out))
    }

    /// See [`SubjectTrie::matches`].
    pub fn matches(&self, subject: &Subject) -> Vec<T> {
        self.read(|trie| trie.matches(subject))
    }

    /// See [`SubjectTrie::contains`].
    pub fn contains(&self, pattern: &Pattern, handle: &T) -> bool {
        self.read(|trie| trie.contains(pattern, handle))
    }

    /// See [`SubjectTrie::touches_namespace`].
    pub fn touches_namespace(&self, namespace: &str) -> bool {
        self.read(|trie| trie.touches_namespace(namespace))
    }

    /// See [`SubjectTrie::len`].
    pub fn len(&self) -> usize {
        self.read(|trie| trie.len())
    }

    /// See [`SubjectTrie::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.read(|trie| trie.is_empty())
    }

    /// See [`SubjectTrie::node_count`].
    pub fn node_count(&self) -> usize {
        self.read(|trie| trie.node_count())
    }

    /// Every handle, cloned, in no particular order (one walk of the whole trie: for rare
    /// events, not per message).
    pub fn handles(&self) -> Vec<T> {
        self.read(|trie| {
            let mut out = Vec::with_capacity(trie.len());
            trie.for_each(|_, h| out.push(h.clone()));
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn subject(text: &str) -> Subject {
        Subject::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// A trie holding `patterns`, the i-th subscribed by handle i.
    fn trie_of(patterns: &[&str]) -> SubjectTrie<usize> {
        let mut trie = SubjectTrie::new();
        for (handle, text) in patterns.iter().enumerate() {
            assert!(trie.insert(&pattern(text), handle));
        }
        trie
    }

    #[test]
    fn batch_matching_agrees_through_many_children_tables() {
        // More than PROMOTE_CHILDREN literals under `user` and under one id, so the batch's
        // split lookups (slot, entry, lookup) run against token tables, with wildcards beside.
        let mut trie = SubjectTrie::new();
        let mut handle = 0u32;
        let mut add = |trie: &mut SubjectTrie<u32>, text: &str| {
            handle += 1;
            trie.insert(&pattern(text), handle);
        };
        for id in 0..40 {
            add(&mut trie, &format!("user.u{id}.created"));
            if id % 3 == 0 {
                add(&mut trie, &format!("user.u{id}.*"));
            }
            if id % 5 == 0 {
                add(&mut trie, &format!("user.u{id}.>"));
            }
        }
        for event in 0..30 {
            add(&mut trie, &format!("user.u7.e{event}"));
        }
        add(&mut trie, "user.*.created");
        add(&mut trie, ">");
        let subjects: Vec<Subject> = (0..45)
            .flat_map(|id| {
                [
                    subject(&format!("user.u{id}.created")),
                    subject(&format!("user.u{id}.e3.x")),
                    subject(&format!("user.u{id}")),
                ]
            })
            .chain((0..35).map(|e| subject(&format!("user.u7.e{e}"))))
            .chain([subject("_inbox.x"), subject("other.u1.created")])
            .collect();
        let mut outs = vec![Vec::new(); subjects.len()];
        trie.match_batch(&subjects, &mut outs);
        for (s, out) in subjects.iter().zip(&outs) {
            assert_eq!(out, &trie.matches(s), "{s}");
        }
        // user.u0.created: its literal, user.u0.*, user.u0.>, then user.*.created and >.
        assert_eq!(outs[0], [1, 2, 3, 93, 94]);
    }

    #[test]
    fn matches_only_the_subscriptions_that_match() {
        let patterns = [
            "a", "a.b", "a.*", "a.>", "*.b", ">", "*", "a.*.c", "a.b.>", "_bus_.>", "*.*", "x.y",
        ];
        let trie = trie_of(&patterns);
        let cases: &[(&str, &[usize])] = &[
            ("a", &[0, 5, 6]),
            ("a.b", &[1, 2, 3, 4, 5, 10]),
            ("a.c", &[2, 3, 5, 10]),
            ("a.b.c", &[3, 5, 7, 8]),
            ("a.x.c", &[3, 5, 7]),
            ("q", &[5, 6]),
            ("q.b", &[4, 5, 10]),
            ("_bus_", &[]),
            ("_bus_.dead", &[9]),
            ("_bus_.b", &[9]),
            ("_inbox.b", &[]),
            ("A.b", &[4, 5, 10]),
        ];
        for &(text, expected) in cases {
            assert_eq!(trie.matches(&subject(text)), expected, "{text}");
        }
    }

    #[test]
    fn returns_each_subscriber_once() {
        let mut trie = SubjectTrie::new();
        for text in ["a.b", "a.*", "a.>", ">", "*.b"] {
            assert!(trie.insert(&pattern(text), 7_u64));
        }
        assert!(trie.insert(&pattern("a.b"), 3));
        assert!(!trie.insert(&pattern("a.b"), 7), "same pair twice");
        assert_eq!(trie.len(), 6);
        assert_eq!(trie.matches(&subject("a.b")), [3, 7]);
        let mut buffer = vec![99];
        trie.match_into(&subject("z"), &mut buffer);
        assert_eq!(buffer, [7], "the buffer is cleared first");
    }

    #[test]
    fn remove_reports_what_was_there() {
        let mut trie = trie_of(&["a.b", "a.>"]);
        let cases: &[(&str, usize, bool)] = &[
            ("a.b", 1, false),
            ("a.c", 0, false),
            ("a.*", 0, false),
            ("a.b.c", 0, false),
            ("a.b", 0, true),
            ("a.b", 0, false),
            ("a.>", 1, true),
        ];
        for &(text, handle, expected) in cases {
            assert_eq!(
                trie.remove(&pattern(text), &handle),
                expected,
                "{text} {handle}"
            );
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn prunes_everything_after_mass_removal() {
        const N: u64 = 100_000;
        let mut trie = SubjectTrie::new();
        let text = |i: u64| match i % 4 {
            0 => format!("user.{i}.created"),
            1 => format!("user.{}.*", i / 7),
            2 => format!("user.*.ev{}", i % 100),
            _ => format!("ns{}.{i}.>", i % 50),
        };
        for i in 0..N {
            assert!(trie.insert(&pattern(&text(i)), i));
        }
        assert_eq!(trie.len(), N as usize);
        assert!(trie.node_count() > 0);
        for i in (0..N).rev() {
            assert!(trie.remove(&pattern(&text(i)), &i));
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
        match &trie.root.literals {
            Children::Few(children) => assert_eq!(children.capacity(), 0, "memory given back"),
            Children::Many(_) => panic!("root children still a map"),
        }
    }

    #[test]
    fn children_move_between_vec_and_map_without_losing_any() {
        let mut trie = SubjectTrie::new();
        for n in 0..40_u32 {
            assert!(trie.insert(&pattern(&format!("a.t{n}")), n));
            for m in 0..=n {
                assert_eq!(trie.matches(&subject(&format!("a.t{m}"))), [m], "after {n}");
            }
        }
        for n in (0..40_u32).rev() {
            assert!(trie.remove(&pattern(&format!("a.t{n}")), &n));
            for m in 0..n {
                assert_eq!(trie.matches(&subject(&format!("a.t{m}"))), [m], "after {n}");
            }
        }
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn long_tokens_are_kept_exactly() {
        let long = "x".repeat(INLINE_TOKEN_BYTES + 10);
        let trie = trie_of(&[&format!("a.{long}"), &format!("a.{long}x")]);
        assert_eq!(trie.matches(&subject(&format!("a.{long}"))), [0]);
        assert_eq!(trie.matches(&subject(&format!("a.{long}x"))), [1]);
        assert!(trie.matches(&subject("a.x")).is_empty());
    }

    #[test]
    fn touches_namespace_follows_namespace_scope() {
        /// Namespaces with whether the trie can touch them.
        type Touches = &'static [(&'static str, bool)];
        let cases: &[(&[&str], Touches)] = &[
            (&[], &[("user", false)]),
            (&["user.>"], &[("user", true), ("order", false)]),
            (
                &["*.created"],
                &[("user", true), ("_bus_", false), ("_inbox", false)],
            ),
            (&[">"], &[("order", true), ("_bus_", false)]),
            (&["_bus_.>"], &[("_bus_", true), ("user", false)]),
        ];
        for &(patterns, namespaces) in cases {
            let trie = trie_of(patterns);
            for &(namespace, expected) in namespaces {
                assert_eq!(
                    trie.touches_namespace(namespace),
                    expected,
                    "{patterns:?} {namespace}"
                );
            }
        }
    }

    #[test]
    fn for_each_lists_every_subscription() {
        let patterns = ["a", "a.b", "a.*.>", ">", "*.b.c"];
        let trie = trie_of(&patterns);
        let mut listed = BTreeSet::new();
        trie.for_each(|text, &handle| {
            listed.insert((text.to_owned(), handle));
        });
        let expected: BTreeSet<_> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i))
            .collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn shared_trie_matches_while_subscriptions_come_and_go() {
        let trie = std::sync::Arc::new(SharedSubjectTrie::new());
        assert!(trie.insert(&pattern("user.>"), 0_u64));
        std::thread::scope(|scope| {
            for writer in 1..3_u64 {
                let trie = &trie;
                scope.spawn(move || {
                    for i in 0..2_000 {
                        let p = pattern(&format!("user.{}.*", i % 50));
                        let handle = writer * 10_000 + i;
                        assert!(trie.insert(&p, handle));
                        assert!(trie.remove(&p, &handle));
                    }
                });
            }
            for _ in 0..2 {
                let trie = &trie;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..2_000 {
                        trie.match_into(&subject(&format!("user.{}.x", i % 50)), &mut out);
                        assert_eq!(
                            out.first(),
                            Some(&0),
                            "the stable subscription is always seen"
                        );
                    }
                });
            }
        });
        assert_eq!(trie.len(), 1);
        assert!(trie.contains(&pattern("user.>"), &0));
        assert!(trie.touches_namespace("user"));
        assert!(!trie.is_empty());
        assert!(trie.remove(&pattern("user.>"), &0));
        assert_eq!(trie.node_count(), 0);
    }

    /// Literal tokens for random tests: few, so patterns and subjects often meet, plus the
    /// reserved namespaces and one long (heap-stored) token.
    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c".to_owned()),
            Just("_bus_".to_owned()),
            Just("_inbox".to_owned()),
            Just("x".repeat(INLINE_TOKEN_BYTES + 1)),
        ]
    }

    fn random_subject() -> impl Strategy<Value = Subject> {
        prop::collection::vec(literal(), 1..6).prop_map(|tokens| subject(&tokens.join(".")))
    }

    fn random_pattern() -> impl Strategy<Value = Pattern> {
        let token = prop_oneof![3 => literal(), 1 => Just("*".to_owned())];
        (prop::collection::vec(token, 1..5), any::<bool>()).prop_map(|(mut tokens, tail)| {
            if tail {
                *tokens.last_mut().expect("at least one token") = ">".to_owned();
            }
            pattern(&tokens.join("."))
        })
    }

    /// The answer of the naive token-by-token matcher over a model of the subscriptions.
    fn naive(model: &BTreeSet<(Pattern, u8)>, subject: &Subject) -> Vec<u8> {
        let handles: BTreeSet<u8> = model
            .iter()
            .filter(|(p, _)| p.matches(subject))
            .map(|&(_, h)| h)
            .collect();
        handles.into_iter().collect()
    }

    proptest! {
        #[test]
        fn trie_agrees_with_the_naive_matcher(
            subscriptions in prop::collection::vec((random_pattern(), 0..8_u8), 0..40),
            subjects in prop::collection::vec(random_subject(), 1..20),
        ) {
            let mut trie = SubjectTrie::new();
            let mut model = BTreeSet::new();
            for (p, h) in subscriptions {
                prop_assert_eq!(trie.insert(&p, h), model.insert((p, h)));
            }
            for s in &subjects {
                prop_assert_eq!(trie.matches(s), naive(&model, s), "subject {}", s);
            }
            // The batch matcher answers each subject as the single one does (outs start dirty).
            let mut outs = vec![vec![99_u8]; subjects.len()];
            trie.match_batch(&subjects, &mut outs);
            for (s, out) in subjects.iter().zip(&outs) {
                prop_assert_eq!(out, &naive(&model, s), "subject {} in a batch", s);
            }
        }

        #[test]
        fn insert_and_remove_leave_the_trie_equal_to_a_model(
            operations in prop::collection::vec((any::<bool>(), random_pattern(), 0..4_u8), 1..80),
            subjects in prop::collection::vec(random_subject(), 1..10),
        ) {
            let mut trie = SubjectTrie::new();
            let mut model = BTreeSet::new();
            for (insert, p, h) in operations {
                if insert {
                    prop_assert_eq!(trie.insert(&p, h), model.insert((p, h)));
                } else {
                    prop_assert_eq!(trie.remove(&p, &h), model.remove(&(p, h)));
                }
                prop_assert_eq!(trie.len(), model.len());
            }
            let mut listed = BTreeSet::new();
            trie.for_each(|text, &h| { listed.insert((pattern(text), h)); });
            prop_assert_eq!(&listed, &model);
            for (p, h) in &model {
                prop_assert!(trie.contains(p, h));
            }
            for s in &subjects {
                prop_assert_eq!(trie.matches(s), naive(&model, s), "subject {}", s);
            }
            for (p, h) in &model {
                prop_assert!(trie.remove(p, h));
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 0);
        }
    }
}
