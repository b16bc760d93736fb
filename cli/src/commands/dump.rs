//! `bus dump <pattern> [--from START] > file.ndjson`: back up events over the API.
//!
//! The dump first notes each namespace's newest sequence (`GET /v1/namespaces`), then pulls
//! pages from `--from` (default `oldest`) and writes each event at or before that mark as one
//! line of event JSON, exactly as the broker sent it. It stops once it is caught up with the
//! mark: when the page cursor is past the mark in every namespace the pattern can match, or
//! when a page comes back empty with its cursor unmoved (nothing more to read). Events
//! published meanwhile are left out, so a dump of a busy namespace still ends.
//!
//! The cursor is read for that check only (it is a list of event ids, one per namespace, of
//! the last event read); a cursor that cannot be read just leaves the second test to end the
//! dump. Gaps (events deleted by retention, or lost to damage, before they were read) are
//! reported on stderr with their reason.
//! Stdout is written through a buffer flushed once per page; the counts go to stderr.

use std::collections::HashMap;
use std::io::{BufWriter, Write as _};
use std::time::Duration;

use bus_broker::storage::parse_event_id;
use bus_broker::subject::Pattern;
use bus_client::Start;

use crate::args::DumpArgs;
use crate::error::CliError;
use crate::output::{gap_notice, notice};

/// Events asked for per page (the broker's most).
const PAGE_EVENTS: usize = 1000;

/// Runs `bus dump`.
pub async fn run(url: &str, args: DumpArgs) -> Result<(), CliError> {
    let pattern = Pattern::parse(&args.pattern)
        .map_err(|e| CliError::with_cause(format!("invalid pattern {:?}", args.pattern), e))?;
    let client = super::connect(url).await?;
    let marks: HashMap<String, u64> = client
        .namespaces()
        .await
        .map_err(|e| CliError::client_context("cannot list the namespaces", e))?
        .into_iter()
        .filter(|n| pattern.may_match_namespace(&n.name))
        .map(|n| (n.name, n.last_sequence))
        .collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut from = args.from;
    let mut last_cursor: Option<String> = None;
    let mut written: u64 = 0;
    loop {
        let page = client
            .pull(&args.pattern, from.clone(), PAGE_EVENTS, Duration::ZERO)
            .await
            .map_err(|e| CliError::client_context(format!("cannot read {}", args.pattern), e))?;
        page.gaps.iter().for_each(gap_notice);
        let empty = page.events.is_empty();
        for m in &page.events {
            if m.sequence <= marks.get(&m.namespace).copied().unwrap_or(0) {
                out.write_all(m.json().as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(CliError::write)?;
                written += 1;
            }
        }
        out.flush().map_err(CliError::write)?;
        let unmoved = last_cursor.as_deref() == Some(page.cursor.as_str());
        if (empty && unmoved) || caught_up(&page.cursor, &marks) {
            break;
        }
        from = Start::Cursor(page.cursor.clone());
        last_cursor = Some(page.cursor);
    }
    notice(&format!(
        "dumped {}",
        crate::output::plural(written, "event")
    ));
    Ok(())
}

/// Whether `cursor` is at or past the mark of every namespace in `marks` (`None` when it
/// cannot be read: not caught up as far as this test goes).
fn caught_up(cursor: &str, marks: &HashMap<String, u64>) -> bool {
    let mut at: HashMap<&str, u64> = HashMap::new();
    for part in cursor.split(',').filter(|p| !p.is_empty()) {
        let Some((ns, seq, _)) = parse_event_id(part) else {
            return false;
        };
        at.insert(ns, seq);
    }
    marks
        .iter()
        .all(|(ns, &mark)| mark == 0 || at.get(ns.as_str()).is_some_and(|&s| s >= mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_when_every_namespace_reached_its_mark() {
        let marks: HashMap<String, u64> = [
            ("user".to_owned(), 5),
            ("order".to_owned(), 2),
            ("empty".to_owned(), 0),
        ]
        .into_iter()
        .collect();
        assert!(caught_up("user-5-0000000a,order-3-0000000b", &marks));
        assert!(!caught_up("user-4-0000000a,order-3-0000000b", &marks));
        assert!(!caught_up("user-5-0000000a", &marks));
        assert!(!caught_up("not a cursor", &marks));
        assert!(caught_up("", &HashMap::new()));
    }
}
