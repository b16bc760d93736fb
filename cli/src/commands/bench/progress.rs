//! [`Progress`]: the bar on stderr while a bench runs (indicatif). It draws only when stderr
//! is a terminal, so `--json`, `--csv` and pipes see nothing of it.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A phase's progress: events done out of a known total, or counted under a time limit.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `phase`: out of `total` events, or (`None`, a timed run) a counter with
    /// the rate.
    pub fn new(phase: &str, total: Option<u64>) -> Progress {
        let bar = match total {
            Some(n) => {
                let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix:>10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix:>10} {spinner} {human_pos} {per_sec} {elapsed}",
                ) {
                    bar.set_style(style);
                }
                bar
            }
        };
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    /// `n` more events done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
