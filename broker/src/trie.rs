//! The subject trie (being written).
