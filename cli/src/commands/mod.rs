//! One file per subcommand. Each `run` returns `Ok(())` for exit status 0 or a
//! [`CliError`](crate::error::CliError) carrying the status and what to print.

pub mod ack;
pub mod consumers;
pub mod dump;
pub mod exec;
pub mod follow;
pub mod get;
pub mod inspect;
pub mod ns;
pub mod put;
pub mod reply;
pub mod req;
pub mod restore;
pub mod server;
pub mod tail;

use bus_client::Client;

use crate::error::CliError;

/// Connects to the broker at `url`; fails within about the connect timeout (2 s) when
/// nothing listens there.
pub async fn connect(url: &str) -> Result<Client, CliError> {
    Client::connect(url).await.map_err(CliError::client)
}
