//! Subject trie benchmark: matches per second on one core, and memory per subscription.
//!
//! Run with `cargo bench -p bus-broker --bench trie`. For 10,000 and 1,000,000 subscriptions it
//! builds a [`SubjectTrie`] from a mix of literal, `*` and `>` patterns over `user.<id>.<event>`
//! subjects, designed so that each subject matches about ten subscriptions, then matches over at
//! least 1,000,000 distinct subjects in a shuffled order (so neither a cache nor the CPU's caches
//! can stand in for the trie), several rounds, and reports the median and the spread.
//!
//! Memory is measured, not estimated: a counting global allocator records the bytes the trie
//! asks for (and how many allocations, since the system allocator adds a few bytes to each).
//! That allocator needs `unsafe impl GlobalAlloc`, the one reason for `unsafe` here; the
//! workspace denies unsafe code everywhere else.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bus_broker::subject::{Pattern, Subject};
use bus_broker::trie::{SharedSubjectTrie, SubjectTrie};

/// Passes every call to the system allocator and keeps running totals.
struct CountingAllocator;

/// Bytes currently allocated.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Allocations currently live.
static LIVE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees carry over unchanged; the counters are plain atomics and never touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes and allocations live right now.
fn heap() -> (usize, usize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCATIONS.load(Ordering::Relaxed),
    )
}

/// How many timed rounds of matching each scenario runs.
const ROUNDS: usize = 5;

/// A deterministic pseudo-random generator (SplitMix64): the same tries and subjects every run.
struct Rng(u64);

impl Rng {
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One benchmark setting: the subject space and how many subscriptions of each shape.
struct Scenario {
    /// Name in the report.
    name: &'static str,
    /// Distinct `<id>` values: subjects are `user.<id>.<event>`.
    ids: usize,
    /// Distinct `<event>` values.
    events: usize,
    /// `user.<id>.*` subscriptions, on random ids.
    per_id_wildcard: usize,
    /// `user.<id>.>` subscriptions, on random ids.
    per_id_tail: usize,
    /// `user.*.<event>` subscriptions per event.
    per_event: usize,
    /// Total subscriptions; those not of the other shapes (but for the two global ones, `>` and
    /// `user.>`) are literal `user.<id>.<event>` on random ids and events.
    total: usize,
}

impl Scenario {
    /// The subscriptions, each with its own handle.
    fn patterns(&self, rng: &mut Rng) -> Vec<(Pattern, u64)> {
        let parse = |text: String| Pattern::parse(&text).expect("benchmark patterns are valid");
        let mut out = Vec::with_capacity(self.total);
        out.push(parse(">".to_owned()));
        out.push(parse("user.>".to_owned()));
        for event in 0..self.events {
            for _ in 0..self.per_event {
                out.push(parse(format!("user.*.{}", event_name(event))));
            }
        }
        for _ in 0..self.per_id_wildcard {
            out.push(parse(format!("user.{}.*", id_name(rng.below(self.ids)))));
        }
        for _ in 0..self.per_id_tail {
            out.push(parse(format!("user.{}.>", id_name(rng.below(self.ids)))));
        }
        while out.len() < self.total {
            let (id, event) = (rng.below(self.ids), rng.below(self.events));
            out.push(parse(format!("user.{}.{}", id_name(id), event_name(event))));
        }
        out.into_iter().zip(0..).collect()
    }

    /// Every subject of the space, in a shuffled order. The subjects are allocated in that
    /// order, so reading the next subject is cheap, as for a broker that has just parsed it from
    /// a request; the trie is still walked in random order.
    fn subjects(&self, rng: &mut Rng) -> Vec<Subject> {
        let mut order: Vec<(u32, u32)> = (0..self.ids as u32)
            .flat_map(|id| (0..self.events as u32).map(move |event| (id, event)))
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        order
            .into_iter()
            .map(|(id, event)| {
                let text = format!(
                    "user.{}.{}",
                    id_name(id as usize),
                    event_name(event as usize)
                );
                Subject::parse(&text).expect("benchmark subjects are valid")
            })
            .collect()
    }
}

/// The text of user id `id`: what a real id looks like (digits, several bytes).
fn id_name(id: usize) -> String {
    format!("{}", 10_000_000 + id * 7)
}

/// The text of event `event`.
fn event_name(event: usize) -> String {
    const NAMED: [&str; 8] = [
        "created", "updated", "deleted", "login", "logout", "viewed", "shared", "paid",
    ];
    match NAMED.get(event) {
        Some(name) => (*name).to_owned(),
        None => format!("event-{event}"),
    }
}

/// Median, min and max of `values` (not empty).
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Times `rounds` passes of `match_one` over `subjects`; returns lookups/s per round and the
/// total matches of the last round.
fn time_rounds(
    subjects: &[Subject],
    mut match_one: impl FnMut(&Subject) -> usize,
) -> (Vec<f64>, usize) {
    let mut rates = Vec::with_capacity(ROUNDS);
    let mut matched = 0;
    for _ in 0..ROUNDS {
        matched = 0;
        let start = Instant::now();
        for subject in subjects {
            matched += match_one(black_box(subject));
        }
        rates.push(subjects.len() as f64 / start.elapsed().as_secs_f64());
    }
    (rates, matched)
}

/// Subjects per `match_batch` call.
const BATCH: usize = 32;

/// Times `rounds` passes of `match_chunk` over `subjects` in chunks of [`BATCH`]; returns
/// lookups/s per round and the total matches of the last round.
fn time_batches(
    subjects: &[Subject],
    mut match_chunk: impl FnMut(&[Subject]) -> usize,
) -> (Vec<f64>, usize) {
    let mut rates = Vec::with_capacity(ROUNDS);
    let mut matched = 0;
    for _ in 0..ROUNDS {
        matched = 0;
        let start = Instant::now();
        for chunk in subjects.chunks(BATCH) {
            matched += match_chunk(black_box(chunk));
        }
        rates.push(subjects.len() as f64 / start.elapsed().as_secs_f64());
    }
    (rates, matched)
}

/// Builds, measures and times one scenario, printing the report lines.
fn run(scenario: &Scenario) {
    let mut rng = Rng(0x5EED_0000 + scenario.total as u64);
    let patterns = scenario.patterns(&mut rng);
    let subjects = scenario.subjects(&mut rng);

    let (bytes_before, allocations_before) = heap();
    let start = Instant::now();
    let mut trie = SubjectTrie::new();
    for (pattern, handle) in &patterns {
        trie.insert(pattern, *handle);
    }
    let build = start.elapsed();
    let (bytes_after, allocations_after) = heap();
    let bytes = bytes_after - bytes_before + size_of::<SubjectTrie<u64>>();
    let allocations = allocations_after - allocations_before;
    let per_subscription = bytes as f64 / patterns.len() as f64;

    let mut buffer = Vec::new();
    let (mut rates, matched) = time_rounds(&subjects, |subject| {
        trie.match_into(subject, &mut buffer);
        buffer.len()
    });
    let (median, min, max) = spread(&mut rates);
    let mean_matches = matched as f64 / subjects.len() as f64;

    println!("== {}", scenario.name);
    println!(
        "subscriptions {}, trie nodes {}, distinct subjects {}, mean matches per subject {mean_matches:.2}",
        trie.len(),
        trie.node_count(),
        subjects.len(),
    );
    println!("build {:.2} s", build.as_secs_f64());
    println!(
        "SubjectTrie::match_into: {:.2} M lookups/s median (min {:.2}, max {:.2}, {ROUNDS} rounds), {:.1} M matched subscriptions/s",
        median / 1e6,
        min / 1e6,
        max / 1e6,
        median * mean_matches / 1e6,
    );

    let mut outs = vec![Vec::new(); BATCH];
    let (mut rates, batch_matched) = time_batches(&subjects, |chunk| {
        trie.match_batch(chunk, &mut outs);
        outs[..chunk.len()].iter().map(Vec::len).sum()
    });
    assert_eq!(
        batch_matched, matched,
        "match_batch finds what match_into does"
    );
    let (median, min, max) = spread(&mut rates);
    println!(
        "SubjectTrie::match_batch ({BATCH} subjects per call): {:.2} M lookups/s median (min {:.2}, max {:.2}), {:.1} M matched subscriptions/s",
        median / 1e6,
        min / 1e6,
        max / 1e6,
        median * mean_matches / 1e6,
    );
    drop(outs);

    let shared = SharedSubjectTrie::new();
    for (pattern, handle) in &patterns {
        shared.insert(pattern, *handle);
    }
    let (mut rates, _) = time_rounds(&subjects, |subject| {
        shared.match_into(subject, &mut buffer);
        buffer.len()
    });
    let (median, min, max) = spread(&mut rates);
    println!(
        "SharedSubjectTrie::match_into (read lock per match): {:.2} M lookups/s median (min {:.2}, max {:.2})",
        median / 1e6,
        min / 1e6,
        max / 1e6,
    );
    drop(shared);
    drop(buffer);

    println!(
        "memory {:.1} MB: {per_subscription:.1} bytes per subscription (requested bytes, nodes plus handles), {:.2} allocations per subscription",
        bytes as f64 / 1e6,
        allocations as f64 / patterns.len() as f64,
    );

    let start = Instant::now();
    for (pattern, handle) in &patterns {
        trie.remove(pattern, handle);
    }
    let (bytes_left, _) = heap();
    println!(
        "removed all in {:.2} s: {} subscriptions, {} nodes, {} bytes left",
        start.elapsed().as_secs_f64(),
        trie.len(),
        trie.node_count(),
        bytes_left as i64 - bytes_before as i64,
    );
}

fn main() {
    // `cargo bench -p bus-broker --bench trie -- 1,000,000` runs only the scenarios whose name
    // holds one of the arguments (cargo's own `--bench` flag is ignored).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |scenario: &Scenario| {
        if filters.is_empty() || filters.iter().any(|f| scenario.name.contains(f.as_str())) {
            run(scenario);
        }
    };
    // 1000 ids x 1024 events = 1,024,000 subjects. Per subject: 3 `user.<id>.*`, 2 `user.<id>.>`,
    // 3 `user.*.<event>`, `>` and `user.>`: about 10.
    run(&Scenario {
        name: "10,000 subscriptions",
        ids: 1_000,
        events: 1_024,
        per_id_wildcard: 3_000,
        per_id_tail: 2_000,
        per_event: 3,
        total: 10_000,
    });
    // 250,000 ids x 8 events = 2,000,000 subjects. Per subject: 0.3 literal, 1 `user.<id>.*`,
    // 0.6 `user.<id>.>`, 6 `user.*.<event>`, `>` and `user.>`: about 10.
    run(&Scenario {
        name: "1,000,000 subscriptions",
        ids: 250_000,
        events: 8,
        per_id_wildcard: 250_000,
        per_id_tail: 150_000,
        per_event: 6,
        total: 1_000_000,
    });
}
