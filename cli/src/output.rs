//! What the commands print. Results go to stdout, a line at a time, flushed at once so a
//! pipe sees each as it comes; notices and errors go to stderr. Colour only when stdout is a
//! terminal and `NO_COLOR` is not set.

use std::io::{IsTerminal as _, Write as _};

use bus_client::Message;
use bus_proto::{ConsumerInfo, Gap, GapReason, NamespaceInfo};

use crate::error::CliError;

const BOLD_CYAN: &str = "\x1b[1;36m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Stdout, with the decision whether to colour.
#[derive(Debug)]
pub struct Output {
    /// Whether to write ANSI colours.
    color: bool,
}

impl Output {
    /// Colours when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn new() -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            color: std::io::stdout().is_terminal() && !no_color,
        }
    }

    /// Whether output is coloured.
    pub fn color(&self) -> bool {
        self.color
    }

    /// Writes `text` and a newline to stdout and flushes. A closed pipe becomes a quiet
    /// [`CliError`] with status 0.
    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(CliError::write)
    }
}

impl Output {
    /// Writes `data` to stdout as it is and flushes. A closed pipe is handled as by
    /// [`Output::line`].
    pub fn bytes(&mut self, data: &[u8]) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        out.write_all(data)
            .and_then(|()| out.flush())
            .map_err(CliError::write)
    }
}

/// `1 event`, `2 events`: `n` and `noun`, with an `s` unless `n` is 1.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Prints a notice on stderr, `bus: ` in front.
pub fn notice(text: &str) {
    notice_raw(&format!("bus: {text}"));
}

/// Tells on stderr that retention deleted events `g` covers before they were read.
pub fn gap_notice(g: &Gap) {
    notice(&format!(
        "gap in {}: events {} to {} {} (reason: {})",
        g.namespace,
        g.missed_from,
        g.resume_at.saturating_sub(1),
        match g.reason {
            GapReason::Retention => "were deleted by retention before they were read",
            GapReason::Damaged => "were lost to damage on disk (a repair salvaged around them)",
        },
        g.reason
    ));
}

/// Prints a line on stderr as it is.
pub fn notice_raw(line: &str) {
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One event for people: `subject #sequence time [headers] payload`; a consumer's
/// manual-ack delivery also shows the id to acknowledge and the delivery count:
/// `subject #sequence time id (delivery n) [headers] payload`.
pub fn format_event(m: &Message, color: bool) -> String {
    let (subj, dim, reset) = if color {
        (BOLD_CYAN, DIM, RESET)
    } else {
        ("", "", "")
    };
    let mut s = format!(
        "{subj}{}{reset} {dim}#{} {}{reset}",
        m.subject, m.sequence, m.time
    );
    if let Some(n) = m.delivery_count {
        s.push_str(&format!(" {} {dim}(delivery {n}){reset}", m.id));
    }
    if !m.headers.is_empty() || m.reply_to.is_some() {
        let mut parts: Vec<String> = m.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(r) = &m.reply_to {
            parts.push(format!("reply-to={r}"));
        }
        s.push_str(&format!(" {dim}[{}]{reset}", parts.join(" ")));
    }
    s.push(' ');
    match std::str::from_utf8(&m.payload) {
        Ok(text) => s.push_str(text),
        Err(_) => s.push_str(&format!(
            "{dim}<{} bytes of {}>{reset}",
            m.payload.len(),
            m.content_type.as_deref().unwrap_or("binary data")
        )),
    }
    s
}

/// One event for `bus tail`: a header line `subject #sequence 2s ago [headers]`, then the
/// payload indented by two spaces: JSON pretty-printed, other text as it is, binary data
/// described. The age is counted from `now_ns`.
pub fn format_tail_event(m: &Message, color: bool, now_ns: u64) -> String {
    let (subj, dim, reset) = if color {
        (BOLD_CYAN, DIM, RESET)
    } else {
        ("", "", "")
    };
    let mut s = format!(
        "{subj}{}{reset} {dim}#{} {}{reset}",
        m.subject,
        m.sequence,
        relative_time(m.time_ns, now_ns)
    );
    if !m.headers.is_empty() || m.reply_to.is_some() {
        let mut parts: Vec<String> = m.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(r) = &m.reply_to {
            parts.push(format!("reply-to={r}"));
        }
        s.push_str(&format!(" {dim}[{}]{reset}", parts.join(" ")));
    }
    let body = match std::str::from_utf8(&m.payload) {
        Ok("") => return s,
        Ok(text) => {
            let json_ct = m
                .content_type
                .as_deref()
                .is_none_or(bus_proto::event::is_json_content_type);
            if json_ct && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                pretty_json(text)
            } else {
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
        }
        Err(_) => format!(
            "{dim}<{} bytes of {}>{reset}",
            m.payload.len(),
            m.content_type.as_deref().unwrap_or("binary data")
        ),
    };
    for line in body.lines() {
        s.push_str("\n  ");
        s.push_str(line);
    }
    s
}

/// How long before `now_ns` the time `time_ns` was, for people: `just now` (under a second,
/// or in the future), `42s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn relative_time(time_ns: u64, now_ns: u64) -> String {
    let secs = now_ns.saturating_sub(time_ns) / 1_000_000_000;
    match secs {
        0 => "just now".to_owned(),
        1..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// `text`, valid JSON, indented by two spaces a level, one member or element a line. Only
/// whitespace outside strings changes: strings, numbers and the order of keys stay exactly as
/// they were. Iterative, so nesting depth costs no stack.
pub fn pretty_json(text: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                out.push(c);
                if let Some(&close @ ('}' | ']')) = chars.peek() {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The namespaces as an aligned table with a header row.
pub fn namespace_table(list: &[NamespaceInfo]) -> String {
    let header = [
        "NAMESPACE",
        "EVENTS",
        "SIZE",
        "FIRST",
        "LAST",
        "SEGMENTS",
        "SUBSCRIBERS",
        "FSYNC",
        "STATE",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.events.to_string(),
                human_size(n.bytes),
                n.first_sequence.to_string(),
                n.last_sequence.to_string(),
                n.segments.to_string(),
                n.subscribers.to_string(),
                n.fsync.clone(),
                match &n.read_only {
                    Some(why) => format!("read-only: {why}"),
                    None => "ok".to_owned(),
                },
            ]
        })
        .collect();
    table(&header, &rows, |i| (1..=6).contains(&i))
}

/// The consumers as an aligned table with a header row. `NEXT` is the next sequence to read
/// per namespace (`order:43`); `MAX DELIVER` is `-` when unlimited.
pub fn consumer_table(list: &[ConsumerInfo]) -> String {
    let header = [
        "CONSUMER",
        "KIND",
        "PATTERN",
        "ACK",
        "PENDING",
        "REDELIVERED",
        "MEMBERS",
        "LAG",
        "ACK WAIT",
        "MAX DELIVER",
        "MAX IN FLIGHT",
        "NEXT",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let next: Vec<String> = c
                .positions
                .iter()
                .map(|(ns, seq)| format!("{ns}:{seq}"))
                .collect();
            vec![
                c.name.clone(),
                c.kind.as_str().to_owned(),
                c.pattern.clone(),
                c.ack.as_str().to_owned(),
                c.pending.to_string(),
                c.redelivered.to_string(),
                c.members.to_string(),
                c.lag.to_string(),
                human_duration(c.ack_wait),
                c.max_deliver.map_or("-".to_owned(), |n| n.to_string()),
                c.max_in_flight.to_string(),
                if next.is_empty() {
                    "-".to_owned()
                } else {
                    next.join(",")
                },
            ]
        })
        .collect();
    table(&header, &rows, |i| (4..=10).contains(&i))
}

/// An aligned table: columns padded to their widest cell, those `numeric` says aligned
/// right, the last column unpadded, no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>], numeric: impl Fn(usize) -> bool) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &[&str]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            let w = *w;
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else if numeric(i) {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        push_row(&cells);
    }
    out.pop();
    out
}

/// `30s`, `1500ms`, `2m`, `1h`.
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `512 B`, `8.0 KiB`, `1.5 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_events_plain_and_coloured() {
        let m = Message::from_json(
            r#"{"id":"user-42-9f","subject":"user.created","namespace":"user","sequence":42,"time":"2026-11-23T13:22:11.123456789Z","headers":{"trace":"abc"},"payload":{"name":"ada"}}"#,
        )
        .unwrap();
        assert_eq!(
            format_event(&m, false),
            r#"user.created #42 2026-11-23T13:22:11.123456789Z [trace=abc] {"name":"ada"}"#
        );
        let coloured = format_event(&m, true);
        assert!(coloured.starts_with("\x1b[1;36muser.created\x1b[0m"));
        let bin = Message::from_json(
            r#"{"id":"b-1-0","subject":"b","namespace":"b","sequence":1,"time":"2026-11-23T13:22:11.123456789Z","payload":"AP8=","encoding":"base64"}"#,
        )
        .unwrap();
        assert!(format_event(&bin, false).ends_with("<2 bytes of binary data>"));
        let manual = Message::from_json(
            r#"{"id":"user-42-9f","subject":"user.created","namespace":"user","sequence":42,"time":"2026-11-23T13:22:11.123456789Z","delivery_count":2,"payload":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            format_event(&manual, false),
            "user.created #42 2026-11-23T13:22:11.123456789Z user-42-9f (delivery 2) x"
        );
    }

    #[test]
    fn pretty_prints_json_keeping_its_tokens() {
        assert_eq!(
            pretty_json(r#"{"b":1, "a":[1,2,{}],"s":"x, {y}: \"z\"","e":[ ]}"#),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2,\n    {}\n  ],\n  \"s\": \"x, {y}: \\\"z\\\"\",\n  \"e\": []\n}"
        );
        assert_eq!(pretty_json("7"), "7");
        assert_eq!(pretty_json(" \"a b\" "), "\"a b\"");
    }

    #[test]
    fn relative_times_for_people() {
        let s = 1_000_000_000u64;
        let now = 1_000_000 * s;
        for (ago, want) in [
            (0, "just now"),
            (2, "2s ago"),
            (59, "59s ago"),
            (60, "1m ago"),
            (3599, "59m ago"),
            (7200, "2h ago"),
            (3 * 86_400, "3d ago"),
        ] {
            assert_eq!(relative_time(now - ago * s, now), want);
        }
        assert_eq!(relative_time(now + 5 * s, now), "just now");
    }

    #[test]
    fn formats_tail_events() {
        let m = Message::from_json(
            r#"{"id":"user-42-9f","subject":"user.created","namespace":"user","sequence":42,"time":"2026-11-23T13:22:11Z","headers":{"trace":"abc"},"content_type":"application/json","payload":{"name":"ada"}}"#,
        )
        .unwrap();
        let now = m.time_ns + 2_500_000_000;
        assert_eq!(
            format_tail_event(&m, false, now),
            "user.created #42 2s ago [trace=abc]\n  {\n    \"name\": \"ada\"\n  }"
        );
        assert!(format_tail_event(&m, true, now).starts_with("\x1b[1;36muser.created\x1b[0m"));
        let text = Message::from_json(
            r#"{"id":"a-1-0","subject":"a.b","namespace":"a","sequence":1,"time":"2026-11-23T13:22:11Z","content_type":"text/plain","payload":"[1, 2]"}"#,
        )
        .unwrap();
        assert_eq!(
            format_tail_event(&text, false, now),
            "a.b #1 2s ago\n  [1, 2]"
        );
    }

    #[test]
    fn tabulates_consumers() {
        let list: Vec<ConsumerInfo> = serde_json::from_str(
            r#"[{"name":"orders","kind":"durable","pattern":"order.>","created":"2026-11-23T13:22:11.123456789Z",
                 "ack":"manual","ack_wait":"30000ms","max_deliver":5,"backoff":[],"max_in_flight":1000,
                 "positions":{"order":43,"b":1},"pending":2,"redelivered":1,"members":1,"lag":0},
                {"name":"~s-4","kind":"subscription","pattern":">","created":"2026-11-23T13:22:11.123456789Z",
                 "ack":"manual","ack_wait":"1500ms","max_deliver":null,"backoff":[],"max_in_flight":1,
                 "positions":{},"pending":0,"redelivered":0,"members":1,"lag":12}]"#,
        )
        .unwrap();
        let t = consumer_table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].starts_with("CONSUMER  KIND          PATTERN  ACK"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("orders    durable       order.>  manual"),
            "{t}"
        );
        assert!(
            lines[0].ends_with("ACK WAIT  MAX DELIVER  MAX IN FLIGHT  NEXT"),
            "{t}"
        );
        assert!(
            lines[1].ends_with("30s            5           1000  b:1,order:43"),
            "{t}"
        );
        assert!(
            lines[2].ends_with("1500ms            -              1  -"),
            "{t}"
        );
    }

    #[test]
    fn durations_for_people() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(human_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn tabulates_namespaces() {
        let list: Vec<NamespaceInfo> = serde_json::from_str(
            r#"[{"name":"user","events":42,"bytes":8192,"first_sequence":1,"last_sequence":42,"segments":1,"subscribers":2,"fsync":"always","read_only":null},
                {"name":"rpc","events":0,"bytes":0,"first_sequence":1,"last_sequence":0,"segments":1,"subscribers":0,"fsync":"never","read_only":"disk full"}]"#,
        )
        .unwrap();
        let t = namespace_table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAMESPACE  EVENTS"));
        assert!(
            lines[1].starts_with("user           42  8.0 KiB"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("never   read-only: disk full"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(64 << 20), "64.0 MiB");
    }
}
