//! Cursors: a position per namespace, carried as SSE `id:` and pull-page `cursor`, so that a
//! reconnecting client resumes exactly after the last event it saw in every namespace.
//!
//! A cursor is a comma-separated list of event-id-shaped positions, one per namespace: the
//! id of the last event delivered (or passed over) there, sequence `0` meaning "none yet".
//! An event id is a cursor of one namespace. Namespace names cannot hold commas.

use std::collections::BTreeMap;

use crate::event_id::parse_event_id;

/// Positions by namespace: namespace → (last sequence, the position's id text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Namespace → (last sequence delivered or passed over, the position as an id).
    pub positions: BTreeMap<String, (u64, String)>,
}

impl Cursor {
    /// Parses a cursor (or a single event id); `None` when it is not one.
    pub fn parse(s: &str) -> Option<Cursor> {
        let mut positions = BTreeMap::new();
        for part in s.split(',') {
            let part = part.trim();
            let (ns, sequence, _) = parse_event_id(part)?;
            if ns.is_empty()
                || positions
                    .insert(ns.to_owned(), (sequence, part.to_owned()))
                    .is_some()
            {
                return None;
            }
        }
        Some(Cursor { positions })
    }

    /// The cursor made of these position ids (namespaces in order).
    pub fn format<'a>(ids: impl Iterator<Item = &'a str>) -> String {
        let mut v: Vec<&str> = ids.collect();
        v.sort_unstable();
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cursors_and_rejects_garbage() {
        let c = Cursor::parse("user-42-0000000a,order-0-000000ff").unwrap();
        assert_eq!(c.positions["user"], (42, "user-42-0000000a".to_string()));
        assert_eq!(c.positions["order"].0, 0);
        assert_eq!(
            Cursor::format(["user-42-0000000a", "order-0-000000ff"].into_iter()),
            "order-0-000000ff,user-42-0000000a"
        );
        for bad in [
            "",
            "oldest",
            "user-1-0000000a,",
            "user-1-0000000a,user-2-0000000a",
            "2026-01-01T00:00:00Z",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
