//! `bus inspect <data dir | namespace dir | segment file>`: read a log offline.
//!
//! Without flags it prints the events (as `bus get` does, or with `--json` in the event
//! JSON), from `--from SEQ` and at most `--count N` in each namespace. `--verify` checks every
//! segment instead and prints one report per namespace; `--repair` also repairs each damaged
//! namespace, keeping every record that still verifies. Segments are checked by [`NamespaceDir`] with the broker's
//! own code, so inspect and the broker agree on what is a torn tail and what is damage.
//!
//! Printing and `--verify` take no lock and write nothing, so they work while a broker runs on
//! the directory (they see the files as they were when read). `--repair` takes the data
//! directory's lock first and refuses to run while a broker holds it. It is the broker's own
//! repair ([`NamespaceDir::repair`]): each damaged segment is rewritten as a version-2
//! segment holding the records that still verify, with their sequences; nothing later is
//! deleted; the sequences lost are reported as ranges, and readers get them as a gap with the
//! reason `damaged`.
//!
//! Exit status: 0 healthy or repaired, 1 damage found, 2 an error.

use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bus_broker::event::to_json;
use bus_broker::storage::{Corruption, StorageError, TornTail};
use bus_client::Message;

use crate::args::InspectArgs;
use crate::error::CliError;
use crate::namespace_dir::{
    DataDir, DirLock, NamespaceDir, NamespaceRepair, Scanned, SegmentFile, failed,
    segment_first_seq,
};
use crate::output::{Output, human_size, notice, plural};

/// Below this many bytes of segments `--verify` shows no progress: it is over at once.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;
/// Least time between two progress updates.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// What the path names.
#[derive(Debug)]
struct Target {
    /// The namespaces to read, in name order (`.state` last, when verifying a data dir).
    namespaces: Vec<NamespaceDir>,
    /// For a segment file: its first sequence, the only segment read.
    only: Option<u64>,
    /// The data directory whose lock `--repair` takes.
    data_dir: PathBuf,
}

/// Runs `bus inspect`.
pub fn run(json: bool, args: InspectArgs) -> Result<(), CliError> {
    let path = args.path.to_string_lossy();
    if path.starts_with("nats://") || path.starts_with("tls://") {
        return Err(CliError::msg(format!(
            "bus inspect reads a data directory's segment files; {path} is NATS JetStream \
             storage, which has none: inspect its streams (BUS_<namespace>) with the nats CLI \
             (nats stream info, nats stream view)"
        )));
    }
    let checking = args.verify || args.repair;
    let target = resolve(&args.path, checking)?;
    if !checking {
        return print_events(json, &args, &target);
    }
    // Taken before any segment is read, and held until the repair is done.
    let lock = if args.repair {
        Some(lock(&target.data_dir)?)
    } else {
        None
    };
    let reports = verify(&target)?;
    let mut out = Output::new();
    for r in &reports {
        out.line(&if json { r.json() } else { r.human() })?;
    }
    let damaged: Vec<&Report> = reports.iter().filter(|r| r.damage.is_some()).collect();
    let Some(first) = damaged.first().and_then(|r| r.damage.as_ref()) else {
        return Ok(());
    };
    let Some(lock) = &lock else {
        return Err(CliError::negative(format!(
            "damage found in {} of {}; first: {first}",
            damaged.len(),
            plural(reports.len() as u64, "namespace")
        )));
    };
    for r in damaged {
        let repaired = repair(r.ns, lock)?;
        out.line(&if json {
            repaired.json()
        } else {
            repaired.human()
        })?;
    }
    Ok(())
}

/// Works out what `path` is: a segment file, a namespace directory (it holds segments) or a
/// data directory (it holds namespace directories, or its lock file).
fn resolve(path: &Path, with_state: bool) -> Result<Target, CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::with_cause(format!("cannot read {}", path.display()), e))?;
    let parent = |p: &Path| {
        p.parent()
            .map_or_else(|| PathBuf::from(".."), Path::to_owned)
    };
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(first) = segment_first_seq(name) else {
            return Err(CliError::msg(format!(
                "{} is not a segment file (<20 digits>.log)",
                path.display()
            )));
        };
        let dir = parent(path);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        return Ok(Target {
            data_dir: parent(&dir.canonicalize().unwrap_or_else(|_| dir.clone())),
            namespaces: vec![NamespaceDir::open(&dir).map_err(failed)?],
            only: Some(first),
        });
    }
    if NamespaceDir::holds_segments(path) {
        let full = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        return Ok(Target {
            data_dir: parent(&full),
            namespaces: vec![NamespaceDir::open(path).map_err(failed)?],
            only: None,
        });
    }
    let data_dir = DataDir::open(path).map_err(failed)?;
    if !data_dir.is_data_dir() {
        return Err(CliError::msg(format!(
            "{} is not a data directory, a namespace directory or a segment file",
            path.display()
        )));
    }
    Ok(Target {
        namespaces: data_dir.open_namespaces(with_state).map_err(failed)?,
        only: None,
        data_dir: path.to_owned(),
    })
}

/// The segments of `ns` to read.
fn selected(ns: &NamespaceDir, only: Option<u64>) -> impl Iterator<Item = (usize, &SegmentFile)> {
    ns.segments
        .iter()
        .enumerate()
        .filter(move |(_, s)| only.is_none_or(|f| s.first_seq == f))
}

/// Prints the events, stopping a namespace at its first damage.
fn print_events(json: bool, args: &InspectArgs, target: &Target) -> Result<(), CliError> {
    let color = Output::new().color();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let from = args.from.unwrap_or(1);
    let count = args.count.unwrap_or(u64::MAX);
    let mut damage: Vec<Corruption> = Vec::new();
    for ns in &target.namespaces {
        let mut printed = 0;
        for (_, seg) in selected(ns, target.only) {
            if printed == count {
                break;
            }
            if seg.next_first.is_some_and(|next| next <= from) {
                continue;
            }
            let (scan, damaged) = match ns.scan(seg).map_err(failed)? {
                Scanned::Healthy(scan) => (scan, None),
                Scanned::Damaged(c, before) => (before, Some(c)),
                Scanned::Gone => {
                    notice(&format!(
                        "{} was deleted while it was read (retention)",
                        seg.path.display()
                    ));
                    continue;
                }
            };
            // Record `i` holds `first + i` but in a version-2 segment, which may skip some.
            let skip = from.saturating_sub(seg.first_seq) as usize;
            let skip = if scan.record(skip).is_some_and(|r| r.event.sequence == from) {
                skip
            } else {
                0
            };
            for i in skip..scan.len() {
                if printed == count {
                    break;
                }
                let Some(record) = scan.record(i) else {
                    return Err(CliError::msg(format!(
                        "{} changed while it was read",
                        seg.path.display()
                    )));
                };
                if record.event.sequence < from {
                    continue;
                }
                let line = to_json(&record.event, ns.namespace(), None);
                let line = if json {
                    line
                } else {
                    let m = Message::from_json(&line)
                        .map_err(|e| CliError::with_cause("cannot format an event", e))?;
                    crate::output::format_event(&m, color)
                };
                out.write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(CliError::write)?;
                printed += 1;
            }
            if let Some(c) = damaged {
                damage.push(c);
                break;
            }
        }
    }
    out.flush().map_err(CliError::write)?;
    match damage.first() {
        None => Ok(()),
        Some(first) => {
            for c in &damage[1..] {
                notice(&format!("corrupt log: {c}"));
            }
            Err(CliError::negative(format!("corrupt log: {first}")))
        }
    }
}

/// What `--verify` found in one namespace.
#[derive(Debug)]
struct Report<'a> {
    /// The namespace directory.
    ns: &'a NamespaceDir,
    /// Segments read.
    segments: usize,
    /// Valid events before any damage.
    events: u64,
    /// The first and last valid sequence, when there is one.
    range: Option<(u64, u64)>,
    /// Segments that vanished while they were read.
    gone: usize,
    /// The torn tail of the active segment, which the broker cuts at start.
    torn: Option<(PathBuf, TornTail)>,
    /// The first damage.
    damage: Option<Corruption>,
}

impl Report<'_> {
    fn human(&self) -> String {
        let label = &self.ns.label;
        let held = match self.range {
            Some((a, b)) if b + 1 - a > self.events => format!(
                "{} ({a}..{b}, {} lost to damage)",
                plural(self.events, "event"),
                b + 1 - a - self.events
            ),
            Some((a, b)) => format!("{} ({a}..{b})", plural(self.events, "event")),
            None => "no events".to_owned(),
        };
        let segments = plural(self.segments as u64, "segment");
        let mut line = match &self.damage {
            Some(c) => format!("{label}: DAMAGED: {c}; {held} before it"),
            None => format!("{label}: ok, {held} in {segments}"),
        };
        if let Some((file, t)) = &self.torn {
            line.push_str(&format!(
                "; torn tail of {} bytes at {} offset {} (the broker cuts it at start)",
                t.bytes_cut,
                file.display(),
                t.offset
            ));
        }
        if self.gone > 0 {
            line.push_str(&format!(
                "; {} deleted while read (retention)",
                plural(self.gone as u64, "segment")
            ));
        }
        line
    }

    fn json(&self) -> String {
        let damage = self.damage.as_ref().map(|c| {
            serde_json::json!({
                "file": c.file, "offset": c.offset, "sequence": c.sequence, "reason": c.reason,
            })
        });
        let torn = self.torn.as_ref().map(
            |(file, t)| serde_json::json!({"file": file, "offset": t.offset, "bytes": t.bytes_cut}),
        );
        serde_json::json!({
            "namespace": self.ns.label,
            "dir": self.ns.dir,
            "ok": self.damage.is_none(),
            "segments": self.segments,
            "events": self.events,
            "first_sequence": self.range.map(|r| r.0),
            "last_sequence": self.range.map(|r| r.1),
            "torn_tail": torn,
            "damage": damage,
        })
        .to_string()
    }
}

/// Checks every selected segment of every namespace.
fn verify(target: &Target) -> Result<Vec<Report<'_>>, CliError> {
    let total: u64 = target
        .namespaces
        .iter()
        .flat_map(|ns| selected(ns, target.only).map(|(_, s)| s.bytes))
        .sum();
    let mut progress = Progress::new(total);
    let mut reports = Vec::new();
    for ns in &target.namespaces {
        let mut r = Report {
            ns,
            segments: 0,
            events: 0,
            range: None,
            gone: 0,
            torn: None,
            damage: None,
        };
        for (_, seg) in selected(ns, target.only) {
            r.segments += 1;
            match ns.scan(seg).map_err(failed)? {
                Scanned::Healthy(scan) => {
                    let n = scan.len() as u64;
                    // A version-2 segment may skip sequences: the records say which they hold.
                    let first = scan.record(0).map(|f| f.event.sequence);
                    let last = n.checked_sub(1).and_then(|i| scan.record(i as usize));
                    if let (Some(first), Some(last)) = (first, last) {
                        let last = last.event.sequence;
                        r.range = Some((r.range.map_or(first, |x| x.0), last));
                    }
                    r.events += n;
                    r.torn = scan.torn().map(|t| (seg.path.clone(), t.clone()));
                }
                Scanned::Damaged(c, before) => {
                    let n = before.len() as u64;
                    let first = before.record(0).map(|f| f.event.sequence);
                    let last = n.checked_sub(1).and_then(|i| before.record(i as usize));
                    if let (Some(first), Some(last)) = (first, last) {
                        let last = last.event.sequence;
                        r.range = Some((r.range.map_or(first, |x| x.0), last));
                    }
                    r.events += n;
                    r.damage = Some(c);
                    break;
                }
                Scanned::Gone => r.gone += 1,
            }
            progress.advance(seg.bytes);
        }
        reports.push(r);
    }
    progress.finish();
    Ok(reports)
}

/// Takes the data directory's lock for `--repair`.
fn lock(data_dir: &Path) -> Result<DirLock, CliError> {
    DirLock::acquire(data_dir).map_err(|e| match e {
        StorageError::Locked { .. } => {
            CliError::msg(format!("{e}; stop the broker before --repair"))
        }
        e => CliError::with_cause(
            format!("cannot lock {} for --repair", data_dir.display()),
            e,
        ),
    })
}

/// What `--repair` did to one namespace.
#[derive(Debug)]
struct Repaired<'a> {
    /// The namespace directory.
    ns: &'a NamespaceDir,
    /// What was salvaged and lost.
    done: NamespaceRepair,
}

/// Ranges as `2..4, 9` (a single sequence alone).
fn ranges_text(lost: &[RangeInclusive<u64>]) -> String {
    let parts: Vec<String> = lost
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}..{}", r.start(), r.end())
            }
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Repaired<'_> {
    fn human(&self) -> String {
        let d = &self.done;
        let kept: u64 = d.rewritten.iter().map(|s| s.kept).sum();
        let mut line = format!(
            "{}: repaired: lost {} (sequences {}); kept {} in the {} rewritten",
            self.ns.label,
            plural(d.events_lost(), "event"),
            ranges_text(&d.lost),
            plural(kept, "event"),
            plural(d.rewritten.len() as u64, "segment"),
        );
        for s in &d.rewritten {
            line.push_str(&format!("; rewrote {}", s.file.display()));
            if let Some(q) = &s.quarantined {
                line.push_str(&format!(" (original kept in {})", q.display()));
            }
        }
        if let Some(a) = &d.new_active {
            line.push_str(&format!("; new events go to {}", a.display()));
        }
        line
    }

    fn json(&self) -> String {
        let pairs = |lost: &[RangeInclusive<u64>]| -> Vec<[u64; 2]> {
            lost.iter().map(|r| [*r.start(), *r.end()]).collect()
        };
        let segments: Vec<_> = self
            .done
            .rewritten
            .iter()
            .map(|s| {
                serde_json::json!({
                    "file": s.file,
                    "quarantined": s.quarantined,
                    "kept": s.kept,
                    "lost": pairs(&s.lost),
                })
            })
            .collect();
        serde_json::json!({
            "namespace": self.ns.label,
            "repaired": {
                "lost": pairs(&self.done.lost),
                "events_lost": self.done.events_lost(),
                "segments": segments,
                "new_active": self.done.new_active,
            },
        })
        .to_string()
    }
}

/// Repairs `ns`, salvaging around its damage (see [`NamespaceDir::repair`]).
fn repair<'a>(ns: &'a NamespaceDir, lock: &DirLock) -> Result<Repaired<'a>, CliError> {
    let done = ns.repair(lock).map_err(failed)?;
    Ok(Repaired { ns, done })
}

/// The `--verify` progress line on stderr: only on a terminal, only for large logs.
#[derive(Debug)]
struct Progress {
    /// Bytes to read in all.
    total: u64,
    /// Bytes read so far.
    done: u64,
    /// Whether to draw at all.
    enabled: bool,
    /// When the line was last drawn.
    drawn: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            done: 0,
            enabled: total >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal(),
            drawn: None,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done = (self.done + bytes).min(self.total);
        if !self.enabled || self.drawn.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let pct = self.done * 100 / self.total.max(1);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kbus: verifying: {} of {} ({pct}%)",
            human_size(self.done),
            human_size(self.total)
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.enabled && self.drawn.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
