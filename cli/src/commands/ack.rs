//! `bus ack <consumer> <id>...` and `bus nack <consumer> <id>... [--delay D]`: acknowledge
//! events a consumer delivered, all ids in one batch request.
//!
//! Each id is answered on its own: a line on stdout per success (`acked <id>`, or with
//! `--json` the broker's `{"id","status"}`), a `bus: <id>: <error>` line on stderr per
//! failure (with `--json` also its `{"id","error"}` on stdout). Any failure makes the exit
//! status 2, with a last line naming the ids that failed. Acking an event that was already
//! acked succeeds (`already acked <id>`).

use bus_client::{AckItem, AckOp};
use bus_proto::AckStatus;

use crate::error::{CliError, chain};
use crate::output::{Output, notice};

/// Runs `bus ack` (`op` [`AckOp::Ack`]) or `bus nack` ([`AckOp::Nack`]).
pub async fn run(
    url: &str,
    json: bool,
    consumer: &str,
    ids: Vec<String>,
    op: AckOp,
) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let items: Vec<AckItem> = ids.iter().map(|id| AckItem::new(id.clone(), op)).collect();
    let results = client
        .ack_batch(consumer, items)
        .await
        .map_err(CliError::client)?;
    let mut out = Output::new();
    let mut failed = Vec::new();
    for r in &results {
        match &r.result {
            Ok(status) => {
                if json {
                    let v = serde_json::json!({"id": r.id, "status": status.as_str()});
                    out.line(&v.to_string())?;
                } else {
                    out.line(&format!("{} {}", status_text(*status), r.id))?;
                }
            }
            Err(e) => {
                if json {
                    let (code, message) = e.api_error().map_or(("error", e.to_string()), |a| {
                        (a.code.as_str(), a.message.clone())
                    });
                    let v = serde_json::json!({"id": r.id, "error": {"code": code, "message": message}});
                    out.line(&v.to_string())?;
                }
                notice(&format!("{}: {}", r.id, chain(e)));
                failed.push(r.id.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::msg(format!(
        "{} of {} could not be {}: {}",
        failed.len(),
        crate::output::plural(results.len() as u64, "event"),
        match op {
            AckOp::Ack => "acked",
            AckOp::Nack(_) => "nacked",
            AckOp::InProgress => "marked in progress",
            AckOp::Term => "terminated",
        },
        failed.join(", ")
    )))
}

/// `acked`, `already acked`, ...
fn status_text(s: AckStatus) -> &'static str {
    match s {
        AckStatus::Acked => "acked",
        AckStatus::AlreadyAcked => "already acked",
        AckStatus::Nacked => "nacked",
        AckStatus::InProgress => "in progress",
        AckStatus::Terminated => "terminated",
        _ => "done",
    }
}
