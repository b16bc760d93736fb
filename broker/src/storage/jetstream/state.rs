//! [`KvState`]: the broker's durable state ([`StateStore`]) in a JetStream KV bucket.
//!
//! KV keys take only `A-Z a-z 0-9 - _ / =` and dots between tokens, so a state key is
//! escaped: every other byte, and `=` itself, becomes `=XX` (two uppercase hex digits).
//! `list` reads the bucket's keys, keeps those with the prefix (decoded) and gets each, in
//! key order. Every write resolves after the server's PubAck.

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use async_nats::jetstream::kv::Store;

use super::log::remote;
use crate::storage::{StateStore, StorageError};

/// The state bucket.
pub struct KvState {
    /// The bucket.
    kv: Store,
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvState").finish_non_exhaustive()
    }
}

/// `key` as a KV key.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("=00");
    }
    out
}

/// The state key a KV key encodes, if it is one [`encode_key`] made.
pub fn decode_key(kv: &str) -> Option<String> {
    if kv == "=00" {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(kv.len());
    let b = kv.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            let hex = kv.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl KvState {
    /// The state in `kv`.
    pub fn new(kv: Store) -> Self {
        KvState { kv }
    }
}

impl StateStore for KvState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StorageError>> {
        Box::pin(async move {
            self.kv
                .get(encode_key(key))
                .await
                .map_err(|e| remote("reading state", e))
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, StorageError>> {
        Box::pin(async move {
            let mut keys = self
                .kv
                .keys()
                .await
                .map_err(|e| remote("listing state", e))?;
            let mut wanted = Vec::new();
            while let Some(k) = keys.next().await {
                let k = k.map_err(|e| remote("listing state", e))?;
                if let Some(d) = decode_key(&k)
                    && d.starts_with(prefix)
                {
                    wanted.push((d, k));
                }
            }
            wanted.sort();
            let mut out = Vec::with_capacity(wanted.len());
            for (d, k) in wanted {
                if let Some(v) = self
                    .kv
                    .get(k)
                    .await
                    .map_err(|e| remote("reading state", e))?
                {
                    out.push((d, v));
                }
            }
            Ok(out)
        })
    }

    fn put(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), StorageError>> {
        let kv = self.kv.clone();
        let key = encode_key(key);
        Box::pin(async move {
            kv.put(key, value)
                .await
                .map(|_| ())
                .map_err(|e| remote("writing state", e))
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StorageError>> {
        let kv = self.kv.clone();
        let key = encode_key(key);
        Box::pin(async move { kv.purge(key).await.map_err(|e| remote("deleting state", e)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_kv_alphabet() {
        for k in ["", "consumer/a", "c:ns@x+y=z", "dot.ted", "é", "=41"] {
            let e = encode_key(k);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b)),
                "{e}"
            );
            assert_eq!(decode_key(&e).as_deref(), Some(k));
        }
        assert_eq!(decode_key("=4"), None);
    }
}
