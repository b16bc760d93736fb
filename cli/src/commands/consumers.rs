//! `bus consumers [list | info NAME | seek NAME --to START | delete NAME]`: the consumers
//! as a table or (`--json`) a JSON array; one consumer; moving or deleting one.

use bus_client::ConsumerInfo;

use crate::args::ConsumersAction;
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
