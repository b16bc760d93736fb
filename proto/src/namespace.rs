//! [`NamespaceInfo`]: a namespace and its figures, the JSON of `GET /v1/namespaces` (an
//! array) and `GET /v1/namespaces/{name}`.

use serde::{Deserialize, Serialize};

/// A namespace and its figures. Every field is written; the ones added after the first
/// protocol version are read with defaults when absent.
///
/// ```
/// let n: bus_proto::NamespaceInfo = serde_json::from_str(
///     r#"{"name":"user","events":42,"bytes":8192,"first_sequence":1,"last_sequence":42}"#,
/// ).unwrap();
/// assert_eq!((n.segments, n.read_only), (0, None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// The namespace name.
    pub name: String,
    /// Events retained.
    pub events: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Oldest retained sequence (the next one when empty).
    pub first_sequence: u64,
    /// Newest sequence (0 when nothing was published).
    pub last_sequence: u64,
    /// Segment files.
    #[serde(default)]
    pub segments: u64,
    /// Live subscriptions whose pattern touches this namespace.
    #[serde(default)]
    pub subscribers: u64,
    /// The fsync policy in force (`always`, `never`, `interval:<ms>`).
    #[serde(default)]
    pub fsync: String,
    /// Why the namespace is read-only, when its storage failed (`null` otherwise).
    #[serde(default)]
    pub read_only: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_listing() {
        let json = r#"[{"name":"user","events":42,"bytes":8192,"first_sequence":1,"last_sequence":42,"segments":1,"subscribers":2,"fsync":"always","read_only":null}]"#;
        let n: Vec<NamespaceInfo> = serde_json::from_str(json).unwrap();
        assert_eq!(n[0].last_sequence, 42);
        assert_eq!(n[0].read_only, None);
        assert_eq!(serde_json::to_string(&n).unwrap(), json);
    }
}
