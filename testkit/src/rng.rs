//! [`Rng`]: a small deterministic generator (splitmix64) for tests that damage files or kill
//! processes at chosen places, so that a failing run can be replayed from its printed seed.
//! Not for anything that needs unpredictability.

/// Splitmix64 from a seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The seed of a seeded test: the environment variable `var` when set (to replay a
    /// run), else the clock; printed either way, with how to replay it.
    pub fn seed_from_env(var: &str, what: &str) -> u64 {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(bus_broker::storage::now_ns);
        println!("{what} seed {seed} (set {var}={seed} to replay)");
        seed
    }

    /// The next 64 bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
