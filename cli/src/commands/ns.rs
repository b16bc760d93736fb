//! `bus ns`: the namespaces and their figures, as a table or (`--json`) a JSON array.

use crate::error::CliError;
use crate::output::{Output, namespace_table, notice};

/// Runs `bus ns`.
pub async fn run(url: &str, json: bool) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let list = client
        .namespaces()
        .await
        .map_err(|e| CliError::client_context("cannot list the namespaces", e))?;
    let mut out = Output::new();
    if json {
        let text = serde_json::to_string(&list)
            .map_err(|e| CliError::with_cause("cannot encode the namespaces", e))?;
        return out.line(&text);
    }
    if list.is_empty() {
        notice("no namespaces yet");
        return Ok(());
    }
    out.line(&namespace_table(&list))
}
