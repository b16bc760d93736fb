//! One file per subcommand. Each `run` returns `Ok(())` for exit status 0 or a
//! [`CliError`](crate::error::CliError) carrying the status and what to print.

pub mod ack;
pub mod auth;
pub mod bench;
pub mod consumers;
pub mod dump;
pub mod exec;
pub mod follow;
pub mod get;
pub mod health;
pub mod inspect;
pub mod migrate;
pub mod ns;
pub mod put;
pub mod reply;
pub mod req;
pub mod restore;
pub mod server;
pub mod tail;

use std::path::PathBuf;
use std::sync::OnceLock;

use bus_client::{Client, ConnectOptions};

use crate::error::CliError;

/// The global `--cacert` (`BUS_CACERT`), set once by `main` before any command runs.
static CACERT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Records the global `--cacert` for [`options`].
pub fn set_cacert(path: Option<PathBuf>) {
    let _ = CACERT.set(path);
}

/// The global `--token` (`BUS_TOKEN`), set once by `main`.
static TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// Records the global `--token` for [`options`].
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

/// The client settings every command starts from: the defaults, trusting `--cacert` and
/// sending `--token` when given.
pub fn options() -> Result<ConnectOptions, CliError> {
    let mut options = ConnectOptions::new();
    if let Some(token) = TOKEN.get().and_then(|t| t.as_deref()) {
        options = options.token(token).map_err(CliError::client)?;
    }
    match CACERT.get().and_then(|p| p.as_ref()) {
        Some(path) => options.cacert(path).map_err(CliError::client),
        None => Ok(options),
    }
}

/// Connects to the broker at `url`; fails within about the connect timeout (2 s) when
/// nothing listens there.
pub async fn connect(url: &str) -> Result<Client, CliError> {
    options()?.connect(url).await.map_err(CliError::client)
}
