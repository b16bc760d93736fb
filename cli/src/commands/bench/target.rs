//! [`Target`]: the broker a bench drives: the one at `--url`, or with `--embedded` a broker
//! started in this process on a temporary directory (removed afterwards) with the fsync
//! policy asked for, listening on a loopback port chosen by the system.

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::storage::FsyncPolicy;

use super::args::Common;
use super::connection::Endpoint;
use super::server_thread::ServerThread;
use crate::error::CliError;

/// The broker under test.
#[derive(Debug)]
pub struct Target {
    /// Where it listens.
    pub endpoint: Endpoint,
    /// `embedded` or the URL, for the report.
    pub name: String,
    /// The embedded broker, stopped when the target is dropped.
    embedded: Option<Embedded>,
}

#[derive(Debug)]
struct Embedded {
    server: ServerThread,
    /// Its data directory, deleted once the server has stopped (field order: after it).
    _dir: tempfile::TempDir,
}

impl Target {
    /// The broker `common` asks for: an embedded one, or the one at `url`.
    pub fn open(url: &str, common: &Common) -> Result<Target, CliError> {
        if !common.embedded {
            return Ok(Target {
                endpoint: Endpoint::parse(url)?,
                name: url.to_owned(),
                embedded: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("bus-bench-")
            .tempdir()
            .map_err(|e| CliError::with_cause("cannot create a temporary data directory", e))?;
        let mut config = Config {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.log.fsync = common.fsync.unwrap_or(FsyncPolicy::Always);
        config
            .validate()
            .map_err(|e| CliError::with_cause("invalid broker configuration", e))?;
        let server = ServerThread::spawn("embedded broker", move |stop, ready| async move {
            let (broker, _) = Broker::open(config)
                .await
                .map_err(|e| format!("cannot open its data directory: {e}"))?;
            let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                Ok(l) => l,
                Err(e) => {
                    broker.close().await;
                    return Err(format!("cannot listen: {e}"));
                }
            };
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            ready.listening(addr);
            let shutdown = async move {
                let _ = stop.await;
            };
            let served = bus_broker::server::run(listener, broker.clone(), shutdown).await;
            broker.close().await;
            served.map_err(|e| e.to_string())
        })?;
        Ok(Target {
            endpoint: Endpoint::local(server.addr),
            name: "embedded".to_owned(),
            embedded: Some(Embedded { server, _dir: dir }),
        })
    }

    /// Whether the broker runs in this process.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// The broker's URL.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// Stops an embedded broker (and removes its directory); nothing for `--url`.
    pub fn close(mut self) {
        if let Some(mut e) = self.embedded.take() {
            e.server.stop();
        }
    }
}
