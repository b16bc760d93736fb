//! [`Scrape`]: the broker's `GET /metrics` read once, and the figures the bench takes from
//! it: `bus_info` (version and fsync policy), `process_cpu_seconds_total` and unlabelled
//! counters.

use super::connection::{Endpoint, get_text};
use crate::error::CliError;

/// One reading of `/metrics`.
#[derive(Debug, Clone)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    /// Reads the broker's `/metrics`.
    pub async fn read(endpoint: &Endpoint) -> Result<Scrape, CliError> {
        let text = get_text(endpoint, "/metrics").await?;
        Ok(Scrape { text })
    }

    /// A scrape of `text` (tests).
    #[cfg(test)]
    pub fn of(text: &str) -> Scrape {
        Scrape {
            text: text.to_owned(),
        }
    }

    /// The value of the sample named exactly `name` (labels included, if any).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    /// The broker's CPU seconds so far (Linux brokers report it).
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.value("process_cpu_seconds_total")
    }

    /// A label of `bus_info`: `version` or `fsync`; `None` from a broker without it.
    pub fn info(&self, label: &str) -> Option<String> {
        let line = self.text.lines().find(|l| l.starts_with("bus_info{"))?;
        let labels = &line["bus_info{".len()..line.find('}')?];
        labels.split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == label).then(|| v.trim().trim_matches('"').to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_labels_and_values() {
        let s = Scrape::of(
            "# HELP bus_info x\nbus_info{version=\"0.1.0\",fsync=\"interval:5\"} 1\nprocess_cpu_seconds_total 1.25\nbus_acks_total 7\n",
        );
        assert_eq!(s.info("version").as_deref(), Some("0.1.0"));
        assert_eq!(s.info("fsync").as_deref(), Some("interval:5"));
        assert_eq!(s.cpu_seconds(), Some(1.25));
        assert_eq!(s.value("bus_acks_total"), Some(7.0));
        assert_eq!(s.value("bus_acks"), None);
        assert_eq!(Scrape::of("").info("fsync"), None);
    }
}
