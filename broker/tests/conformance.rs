//! Subject conformance: every row of the subject tables, checked against the grammar, the naive
//! matcher and the trie.
//!
//! The tables live in `tests/data/` (copies of the shared `subjects.tsv` and `invalid.tsv`, plus
//! bus's own `subjects-extra.tsv` and `invalid-extra.tsv`). When the environment variable
//! `BUS_CONFORMANCE_DIR` names a folder, its tables are read instead, so that `.ci/run` checks new
//! shared rows as they appear.
//!
//! Formats (tab-separated; `#` lines and blank lines are comments; `<empty>` is the empty string):
//!
//! - `subjects*.tsv`: `pattern<TAB>subject<TAB>match|nomatch`;
//! - `invalid*.tsv`: `subject|pattern<TAB>input<TAB>why`, inputs that must be rejected.
//!
//! Every failing row is reported with its file and line number, all at once.

use std::fs;
use std::path::{Path, PathBuf};

use bus_broker::subject::{Pattern, Subject};
use bus_broker::trie::SubjectTrie;

/// The environment variable naming another folder of tables.
const DIR_VARIABLE: &str = "BUS_CONFORMANCE_DIR";

/// One data row: where it came from and its columns.
struct Row {
    /// `file:line`, for failure messages.
    at: String,
    /// The tab-separated columns, with `<empty>` replaced by "".
    columns: Vec<String>,
}

/// The folder the tables are read from.
fn table_dir() -> PathBuf {
    match std::env::var_os(DIR_VARIABLE) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
    }
}

/// Every data row of the tables in the folder whose names start with `prefix` and end `.tsv`.
fn rows(prefix: &str) -> Vec<Row> {
    let dir = table_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing the table folder").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(prefix) && name.ends_with(".tsv")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {prefix}*.tsv in {}", dir.display());
    let mut rows = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        for (index, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let columns = line
                .split('\t')
                .map(|c| {
                    if c == "<empty>" {
                        String::new()
                    } else {
                        c.to_owned()
                    }
                })
                .collect();
            rows.push(Row {
                at: format!("{name}:{}", index + 1),
                columns,
            });
        }
    }
    rows
}

/// Panics listing every failure, if any.
fn report(what: &str, checked: usize, failures: &[String]) {
    assert!(
        checked > 0,
        "no {what} rows were read from {}",
        table_dir().display()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} {what} rows failed (tables in {}):\n{}",
        failures.len(),
        table_dir().display(),
        failures.join("\n")
    );
    eprintln!("{checked} {what} rows checked in {}", table_dir().display());
}

/// Checks one `pattern subject expected` row against both matchers.
fn check_match_row(row: &Row) -> Result<(), String> {
    let [pattern, subject, expected] = row.columns.as_slice() else {
        return Err(format!("want 3 columns, found {}", row.columns.len()));
    };
    let expected = match expected.as_str() {
        "match" => true,
        "nomatch" => false,
        other => {
            return Err(format!(
                "expected column is {other:?}, not match or nomatch"
            ));
        }
    };
    let pattern = Pattern::parse(pattern).map_err(|e| format!("pattern rejected: {e}"))?;
    let subject = Subject::parse(subject).map_err(|e| format!("subject rejected: {e}"))?;
    if pattern.matches(&subject) != expected {
        return Err(format!("naive matcher says {}", !expected));
    }
    let mut trie = SubjectTrie::new();
    trie.insert(&pattern, 1_u32);
    // A second subscriber on a pattern that matches nothing here must never show up.
    trie.insert(
        &Pattern::parse("zz-none.zz-none").map_err(|e| e.to_string())?,
        2,
    );
    let want: &[u32] = if expected { &[1] } else { &[] };
    let got = trie.matches(&subject);
    if got != want {
        return Err(format!("trie returned {got:?}, want {want:?}"));
    }
    if expected && !pattern.may_match_namespace(subject.namespace()) {
        return Err("matches, yet the pattern's namespace scope excludes the subject".into());
    }
    Ok(())
}

/// Checks one `kind input why` row: the input must be rejected, with a message.
fn check_invalid_row(row: &Row) -> Result<(), String> {
    let [kind, input, ..] = row.columns.as_slice() else {
        return Err(format!("want 2 or 3 columns, found {}", row.columns.len()));
    };
    let result = match kind.as_str() {
        "subject" => Subject::parse(input).map(|s| s.to_string()),
        "pattern" => Pattern::parse(input).map(|p| p.to_string()),
        other => return Err(format!("kind is {other:?}, not subject or pattern")),
    };
    match result {
        Ok(parsed) => Err(format!("{kind} {parsed:?} was accepted")),
        Err(e) if e.to_string().is_empty() => Err("rejected with an empty message".into()),
        Err(_) => Ok(()),
    }
}

#[test]
fn every_match_row_holds() {
    let rows = rows("subjects");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            check_match_row(row)
                .err()
                .map(|why| format!("{}: {:?}: {why}", row.at, row.columns))
        })
        .collect();
    report("match", rows.len(), &failures);
}

#[test]
fn every_invalid_row_is_rejected() {
    let rows = rows("invalid");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            check_invalid_row(row)
                .err()
                .map(|why| format!("{}: {:?}: {why}", row.at, row.columns))
        })
        .collect();
    report("invalid", rows.len(), &failures);
}

/// All match rows in one trie, each pattern under its own handle: the trie must return exactly
/// the handles the naive matcher picks, for every subject in the tables.
#[test]
fn one_trie_holding_every_pattern_agrees_with_the_naive_matcher() {
    let rows = rows("subjects");
    let mut patterns = Vec::new();
    let mut subjects = Vec::new();
    for row in &rows {
        if let [pattern, subject, _] = row.columns.as_slice()
            && let (Ok(p), Ok(s)) = (Pattern::parse(pattern), Subject::parse(subject))
        {
            patterns.push(p);
            subjects.push((row.at.clone(), s));
        }
    }
    let mut trie = SubjectTrie::new();
    for (handle, pattern) in patterns.iter().enumerate() {
        trie.insert(pattern, handle);
    }
    let failures: Vec<String> = subjects
        .iter()
        .filter_map(|(at, subject)| {
            let want: Vec<usize> = (0..patterns.len())
                .filter(|&h| patterns[h].matches(subject))
                .collect();
            let got = trie.matches(subject);
            (got != want).then(|| format!("{at}: {subject}: trie {got:?}, naive {want:?}"))
        })
        .collect();
    report("combined-trie", subjects.len(), &failures);
}
