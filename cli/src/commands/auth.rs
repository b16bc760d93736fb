//! `bus auth token NAME`: a new bearer token and the auth-file entry holding its digest;
//! `bus auth whoami`: who the broker takes `--token` for.

use bus_broker::auth::bearer_token::{TokenHash, generate};

use crate::args::AuthAction;
use crate::error::CliError;
use crate::output::Output;

/// Runs `bus auth …`.
pub async fn run(url: &str, json: bool, action: AuthAction) -> Result<(), CliError> {
    match action {
        AuthAction::Token { name } => token(&name, json),
        AuthAction::Whoami => whoami(url, json).await,
    }
}

fn token(name: &str, json: bool) -> Result<(), CliError> {
    let token = generate().map_err(CliError::msg)?;
    let stored = TokenHash::of(&token).to_stored();
    let mut out = Output::new();
    if json {
        let v = serde_json::json!({"principal": name, "token": token, "stored": stored});
        return out.line(&v.to_string());
    }
    out.line(&format!("token: {token}"))?;
    out.line("")?;
    out.line("Give the token to the client (--token or BUS_TOKEN); it is not shown again.")?;
    out.line("Add this to the auth file's principals (then SIGHUP the broker):")?;
    out.line("")?;
    out.line(&format!("  - name: {name}"))?;
    out.line(&format!("    tokens: [\"{stored}\"]"))?;
    out.line("    permissions: {}   # see proto-docs/security.md")
}

async fn whoami(url: &str, json: bool) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let me = client
        .whoami()
        .await
        .map_err(|e| CliError::client_context("cannot ask who I am", e))?;
    let mut out = Output::new();
    if json {
        let text = serde_json::to_string(&me)
            .map_err(|e| CliError::with_cause("cannot encode the answer", e))?;
        return out.line(&text);
    }
    if !me.auth {
        return out.line("the broker runs without --auth: every client may do everything");
    }
    out.line(&format!("principal: {}", me.principal))?;
    out.line(&format!("credential: {}", me.credential))?;
    if let Some(e) = &me.expires_at {
        out.line(&format!("expires: {e}"))?;
    }
    for (i, g) in me.grants.iter().enumerate() {
        out.line(&format!("grant {}: {g}", i + 1))?;
    }
    Ok(())
}
