//! `bus consumers [list | info NAME | set NAME ... | seek NAME --to START | delete NAME]`: the
//! consumers as a table (with their settings: ack mode, ack wait, max deliver, max in
//! flight) or (`--json`) a JSON array; one consumer; changing, moving or deleting one.
//!
//! `set` sends `PATCH /v1/consumers/{name}` with only the settings given
//! ([`bus_client::Client::update_consumer`]) and prints the consumer as the broker answered
//! it.

use std::time::Duration;

use bus_proto::{ConsumerInfo, ConsumerUpdate};

use crate::args::{Backoff, ConsumersAction, MaxDeliver};
use crate::error::CliError;
use crate::output::{Output, consumer_table, notice};

/// Runs `bus consumers`.
pub async fn run(url: &str, json: bool, action: Option<ConsumersAction>) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let mut out = Output::new();
    match action.unwrap_or(ConsumersAction::List) {
        ConsumersAction::List => {
            let list = client.consumers().await.map_err(CliError::client)?;
            if json {
                return out.line(&encode(&list)?);
            }
            if list.is_empty() {
                notice("no consumers");
                return Ok(());
            }
            out.line(&consumer_table(&list))
        }
        ConsumersAction::Info { name } => {
            let c = client.consumer(&name).await.map_err(CliError::client)?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Set {
            name,
            ack_wait,
            max_deliver,
            backoff,
            max_in_flight,
        } => {
            let update = settings(ack_wait, max_deliver, backoff, max_in_flight);
            let c = client
                .update_consumer(&name, &update)
                .await
                .map_err(CliError::client)?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Seek { name, to } => {
            let c = client
                .seek_consumer(&name, to)
                .await
                .map_err(CliError::client)?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Delete { name } => {
            client
                .delete_consumer(&name)
                .await
                .map_err(CliError::client)?;
            if json {
                out.line(&serde_json::json!({ "deleted": name }).to_string())
            } else {
                out.line(&format!("deleted consumer {name}"))
            }
        }
    }
}

/// What `set` changes: only the settings given; `--max-deliver unlimited` as `Some(None)`.
fn settings(
    ack_wait: Option<Duration>,
    max_deliver: Option<MaxDeliver>,
    backoff: Option<Backoff>,
    max_in_flight: Option<u64>,
) -> ConsumerUpdate {
    ConsumerUpdate {
        ack_wait,
        max_deliver: max_deliver.map(|m| match m {
            MaxDeliver::Limit(n) => Some(n),
            MaxDeliver::Unlimited => None,
        }),
        backoff: backoff.map(|b| b.0),
        max_in_flight,
    }
}

/// One consumer: its JSON, or a table of one row.
fn show(out: &mut Output, json: bool, c: &ConsumerInfo) -> Result<(), CliError> {
    if json {
        out.line(&encode(c)?)
    } else {
        out.line(&consumer_table(std::slice::from_ref(c)))
    }
}

fn encode(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string(v).map_err(|e| CliError::with_cause("cannot encode the consumers", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sends_only_what_was_given() {
        let json = |u: &ConsumerUpdate| serde_json::to_value(u).unwrap();
        assert_eq!(
            json(&settings(None, None, None, Some(100))),
            serde_json::json!({"max_in_flight": 100})
        );
        let b = Backoff(vec![Duration::from_secs(1), Duration::from_millis(1500)]);
        assert_eq!(
            json(&settings(
                Some(Duration::from_secs(30)),
                Some(MaxDeliver::Unlimited),
                Some(b),
                None,
            )),
            serde_json::json!({"ack_wait":"30000ms","max_deliver":null,"backoff":["1000ms","1500ms"]})
        );
        assert_eq!(
            json(&settings(
                None,
                Some(MaxDeliver::Limit(5)),
                Some(Backoff(vec![])),
                None
            )),
            serde_json::json!({"backoff":[],"max_deliver":5})
        );
    }
}
