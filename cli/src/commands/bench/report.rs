//! [`Report`]: what a bench prints at the end — the machine (cores), the bus version, the
//! broker's version and fsync policy, the parameters and the figures — as a table, one JSON
//! object (`--json`) or CSV (`--csv`: a header line and one row, nested figures flattened
//! as `latency_us_p50`).

use serde_json::{Map, Value, json};

use crate::error::CliError;
use crate::output::Output;

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned lines for people.
    Table,
    /// One JSON object.
    Json,
    /// A header line and one row.
    Csv,
}

/// What the figures were measured on.
#[derive(Debug, Clone)]
pub struct Info {
    /// This `bus`'s version.
    pub version: &'static str,
    /// The broker's version, from its `bus_info`.
    pub broker_version: Option<String>,
    /// The broker's fsync policy, from its `bus_info`.
    pub fsync: Option<String>,
    /// Cores of this machine.
    pub cores: usize,
    /// `embedded` or the broker's URL.
    pub target: String,
}

/// One bench's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// `pub`, `sub`, `ack` or `req`.
    pub mode: &'static str,
    /// What it ran on.
    pub info: Info,
    /// Its parameters, in order.
    pub params: Vec<(String, Value)>,
    /// Its figures, in order; nested objects (percentiles) one level deep.
    pub results: Vec<(String, Value)>,
}

impl Report {
    /// The report as one JSON object.
    pub fn json(&self) -> Value {
        json!({
            "mode": self.mode,
            "version": self.info.version,
            "broker_version": self.info.broker_version,
            "fsync": self.info.fsync,
            "cores": self.info.cores,
            "target": self.info.target,
            "params": self.params.iter().cloned().collect::<Map<_, _>>(),
            "results": self.results.iter().cloned().collect::<Map<_, _>>(),
        })
    }

    /// The report's text in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.json().to_string(),
            Format::Csv => self.csv(),
            Format::Table => self.table(),
        }
    }

    /// Prints the report on stdout.
    pub fn print(&self, format: Format) -> Result<(), CliError> {
        Output::new().line(self.render(format).trim_end())
    }

    /// The columns: the fixed ones, then the parameters and the figures flattened.
    fn columns(&self) -> Vec<(String, Value)> {
        let mut cols = vec![
            ("mode".to_owned(), json!(self.mode)),
            ("version".to_owned(), json!(self.info.version)),
            ("broker_version".to_owned(), json!(self.info.broker_version)),
            ("fsync".to_owned(), json!(self.info.fsync)),
            ("cores".to_owned(), json!(self.info.cores)),
            ("target".to_owned(), json!(self.info.target)),
        ];
        for (k, v) in self.params.iter().chain(self.results.iter()) {
            flatten(k, v, &mut cols);
        }
        cols
    }

    fn csv(&self) -> String {
        let cols = self.columns();
        let header: Vec<String> = cols.iter().map(|(k, _)| csv_field(k)).collect();
        let row: Vec<String> = cols.iter().map(|(_, v)| csv_field(&scalar(v))).collect();
        format!("{}\n{}\n", header.join(","), row.join(","))
    }

    fn table(&self) -> String {
        let i = &self.info;
        let mut out = format!(
            "bus bench {}: bus {}, broker {}, fsync {}, {} cores, {}\n",
            self.mode,
            i.version,
            i.broker_version.as_deref().unwrap_or("unknown"),
            i.fsync.as_deref().unwrap_or("unknown"),
            i.cores,
            i.target
        );
        let width = self
            .params
            .iter()
            .chain(self.results.iter())
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in self.params.iter().chain(self.results.iter()) {
            if v.is_null() {
                continue;
            }
            let text = match v {
                Value::Object(o) => ordered(o)
                    .into_iter()
                    .map(|(k, v)| format!("{k} {}", scalar(v)))
                    .collect::<Vec<_>>()
                    .join("  "),
                v => scalar(v),
            };
            out.push_str(&format!("  {k:<width$}  {text}\n"));
        }
        out
    }
}

/// `key` and `value`, an object's fields as `key_field` (recursively).
fn flatten(key: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(o) => {
            for (k, v) in ordered(o) {
                flatten(&format!("{key}_{k}"), v, out);
            }
        }
        v => out.push((key.to_owned(), v.clone())),
    }
}

/// An object's fields, percentiles first in their order (`p50`, `p90`, `p99`, `p99_9`,
/// `max`, `mean`), then the others by name.
fn ordered(o: &Map<String, Value>) -> Vec<(&String, &Value)> {
    const FIRST: [&str; 6] = ["p50", "p90", "p99", "p99_9", "max", "mean"];
    let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
    let mut fields: Vec<_> = o.iter().collect();
    fields.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
    fields
}

/// A value as a table or CSV cell: strings bare, `null` empty.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let params = vec![("connections".into(), json!(2))];
        let results = vec![
            ("events".into(), json!(10)),
            ("latency_us".into(), json!({"p50": 1.5, "max": 3.0})),
        ];
        Report {
            mode: "pub",
            info: Info {
                version: "0.1.0",
                broker_version: Some("0.1.0".into()),
                fsync: Some("interval:5".into()),
                cores: 2,
                target: "http://h:1,2".into(),
            },
            params,
            results,
        }
    }

    #[test]
    fn csv_has_a_header_and_one_row_with_nested_figures_flattened() {
        let csv = report().render(Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "mode,version,broker_version,fsync,cores,target,connections,events,latency_us_p50,latency_us_max",
                "pub,0.1.0,0.1.0,interval:5,2,\"http://h:1,2\",2,10,1.5,3.0",
            ]
        );
    }

    #[test]
    fn json_and_table_carry_the_machine_and_the_policy() {
        let r = report();
        let v: Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
        assert_eq!(v["fsync"], "interval:5");
        assert_eq!(v["results"]["latency_us"]["p50"], 1.5);
        let t = r.render(Format::Table);
        assert!(
            t.starts_with("bus bench pub: bus 0.1.0, broker 0.1.0, fsync interval:5, 2 cores"),
            "{t}"
        );
        assert!(t.contains("latency_us   p50 1.5  max 3.0"), "{t}");
    }
}
