//! [`raise_open_files`]: at start the disk engine raises its soft `RLIMIT_NOFILE` to the hard
//! limit, once per process, and logs both, so that many namespaces do not run into a low
//! default soft limit (often 1,024) while the hard one allows more.
//!
//! **What holds a descriptor.** Each open namespace keeps its active segment open (one
//! descriptor); the broker's state log one more; the data directory lock one. Sealed
//! segments are memory-mapped and their file closed once mapped: a map holds no descriptor
//! (it counts against `vm.max_map_count` instead). Readers of the active segment share the
//! writer's descriptor. Sockets hold one each, bounded by `--max-connections`.

use std::sync::OnceLock;

/// The soft and hard open-file limits after the raise (`None` where unlimited), or `None`
/// when they could not be read.
static RAISED: OnceLock<Option<(Option<u64>, Option<u64>)>> = OnceLock::new();

/// Raises the soft open-file limit to the hard one (once per process) and returns the soft
/// and hard limits in force (`None` for unlimited).
pub fn raise_open_files() -> Option<(Option<u64>, Option<u64>)> {
    *RAISED.get_or_init(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let before = getrlimit(Resource::Nofile);
        if before.current != before.maximum {
            let raised = rustix::process::Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(from = ?before.current, to = ?before.maximum, "raised the open-file limit (RLIMIT_NOFILE) to the hard limit")
                }
                Err(e) => {
                    tracing::warn!(soft = ?before.current, hard = ?before.maximum, error = %e, "could not raise the open-file limit")
                }
            }
        }
        let now = getrlimit(Resource::Nofile);
        tracing::debug!(soft = ?now.current, hard = ?now.maximum, "open-file limit");
        Some((now.current, now.maximum))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise_open_files().expect("limits read");
        assert_eq!(soft, hard);
    }
}
