//! [`ProcessStats`]: the broker process's own CPU time and resident memory, for
//! `process_cpu_seconds_total` and `process_resident_memory_bytes` in `/metrics` (the names
//! Prometheus client libraries use, so dashboards and `bus bench` read them as usual).
//!
//! Read from `/proc/self/stat` (utime and stime, in the kernel's `USER_HZ` ticks, which
//! Linux fixes at 100 for `/proc`) and `/proc/self/statm` (pages; 4 KiB on the machines bus
//! supports). Where `/proc` is absent the figures are left out rather than made up.

/// The kernel's clock ticks per second in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;
/// Bytes per page in `/proc/<pid>/statm`.
const PAGE_BYTES: u64 = 4096;

/// What the process has used so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
}

impl ProcessStats {
    /// This process's figures, if `/proc` has them.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        Some(ProcessStats {
            cpu_seconds: cpu_seconds(&stat)?,
            resident_bytes: statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * PAGE_BYTES,
        })
    }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted from the
/// last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name_whatever_it_holds() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99";
        assert_eq!(cpu_seconds(line), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_has_figures_on_linux() {
        if cfg!(target_os = "linux") {
            let s = ProcessStats::read().expect("/proc/self is readable on Linux");
            assert!(s.resident_bytes > 0);
            assert!(s.cpu_seconds >= 0.0);
        }
    }
}
