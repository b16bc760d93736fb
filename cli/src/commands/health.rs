//! `bus health`: whether the broker answers `GET /healthz`, by exit status (0 yes, 2 no), for
//! scripts and container health checks (the image has no curl). `/healthz` needs no credential.

use crate::error::CliError;
use crate::output::Output;

/// Runs `bus health`.
pub async fn run(url: &str, json: bool) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    client
        .health()
        .await
        .map_err(|e| CliError::client_context("the broker is not healthy", e))?;
    let mut out = Output::new();
    if json {
        return out.line(&serde_json::json!({"healthy": true, "url": url}).to_string());
    }
    out.line(&format!("{url}: healthy"))
}
