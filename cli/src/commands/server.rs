//! `bus server`: run the broker until SIGINT or SIGTERM.
//!
//! Maps the flags onto [`Config`], validates it, opens the data directory (recovering every
//! namespace's log), binds the listener, logs one line saying what it serves, and runs the
//! HTTP server with a shutdown future that resolves on the first signal. After the signal,
//! open responses drain and the broker closes its logs; all of it is bounded so the process
//! exits within [`EXIT_DEADLINE`] of the signal.

use std::io::IsTerminal as _;
use std::time::Duration;

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::storage::{JetStreamOptions, OpenReport};
use bus_broker::tls::{Tls, TlsFiles};
use bus_broker::trusted_proxies::TrustedProxies;
use tokio::time::Instant;

use crate::args::{NatsArgs, ServerArgs};
use crate::error::CliError;

/// From the signal to the process's exit, at most (with a margin under the promised 10 s).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(9);

/// The broker settings the flags ask for.
pub fn config(args: &ServerArgs) -> Result<Config, CliError> {
    let mut config = Config {
        addr: args.addr,
        data_dir: args.data.clone(),
        namespaces: args.namespaces.clone(),
        cors_origins: args.cors_origins.clone(),
        max_connections: args.max_connections,
        max_connections_per_client: args.max_connections_per_client,
        limit_loopback_clients: args.limit_loopback,
        trusted_proxies: TrustedProxies::parse(&args.trusted_proxies)
            .map_err(|e| CliError::with_cause("invalid configuration", e))?,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        stalled_stream_timeout: args.stalled_stream_timeout,
        allowed_hosts: args.allowed_hosts.clone(),
        allow_anonymous: args.allow_anonymous,
        jetstream_consumers: args.jetstream_consumers,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        max_namespaces: args.max_namespaces,
        auth: match &args.auth {
            Some(path) => Some(std::sync::Arc::new(
                bus_broker::auth::Auth::load(path)
                    .map_err(|e| CliError::with_cause("invalid configuration", e))?,
            )),
            None => None,
        },
        ..Config::default()
    };
    // Before any log opens: the pools every namespace shares.
    bus_broker::storage::ThreadPools {
        writers: usize::from(args.write_threads),
        syncers: usize::from(args.sync_threads),
    }
    .apply();
    bus_broker::storage::open_files::set_max_open_files(args.max_open_files as usize);
    let log = &mut config.log;
    log.fsync = args.fsync.unwrap_or_default();
    log.segment_bytes = args.segment_size;
    log.max_payload_bytes = usize::try_from(args.max_payload)
        .map_err(|_| CliError::msg(format!("payload limit {} is too large", args.max_payload)))?;
    log.retention.max_age = args.retention_age;
    log.retention.max_bytes = args.retention_bytes;
    log.retention.max_events = args.retention_events;
    log.dedup_window = args.dedup_window;
    for (ns, o) in &args.ns_config {
        config
            .overrides
            .entry(ns.clone())
            .or_default()
            .merge(o.clone());
    }
    config
        .validate()
        .map_err(|e| CliError::with_cause("invalid configuration", e))?;
    Ok(config)
}

/// The JetStream options `--storage nats://...` asks for, or `None` for the disk engine.
/// An fsync policy (`--fsync`, or `fsync=` in `--ns-config`) is refused there: durability
/// is the NATS server's.
pub fn jetstream(args: &ServerArgs) -> Result<Option<JetStreamOptions>, CliError> {
    let n = &args.nats;
    let nats_flags = n.nats_user.is_some()
        || n.nats_token.is_some()
        || n.nats_creds.is_some()
        || n.nats_tls_ca.is_some()
        || n.nats_tls_required
        || n.nats_replicas != 1;
    let Some(url) = args.storage.as_deref() else {
        if nats_flags {
            return Err(CliError::msg(
                "--nats-* flags need --storage nats://host:4222 (the default storage is the data directory)",
            ));
        }
        return Ok(None);
    };
    if !url.split(',').all(|u| {
        let u = u.trim();
        u.starts_with("nats://") || u.starts_with("tls://")
    }) {
        return Err(CliError::msg(format!(
            "--storage {url:?}: expected nats://host:4222[,host2:4222] (leave it out for the data directory)"
        )));
    }
    let fsync_ns = args
        .ns_config
        .iter()
        .find(|(_, o)| o.fsync.is_some())
        .map(|(ns, _)| ns.clone());
    if args.fsync.is_some() || fsync_ns.is_some() {
        let what = match fsync_ns {
            Some(ns) if args.fsync.is_none() => format!("fsync for namespace {ns}"),
            _ => "--fsync".to_owned(),
        };
        return Err(CliError::msg(format!(
            "{what} cannot be used with --storage nats://: durability is JetStream's. An \
             acknowledged publish is on the stream's replicas, and on their disks after the \
             server's jetstream sync_interval (2 minutes by default; set sync_interval: \
             always on the servers to sync every write)"
        )));
    }
    let o = nats_options(url, &args.nats)?;
    Ok(Some(o))
}

/// The JetStream options for servers `url` with `n`'s credentials, TLS and replicas.
pub fn nats_options(url: &str, n: &NatsArgs) -> Result<JetStreamOptions, CliError> {
    let servers = JetStreamOptions::parse_servers(url)
        .map_err(|e| CliError::with_cause("invalid configuration", e))?;
    let mut o = JetStreamOptions::new(servers);
    o.user = n.nats_user.clone();
    o.password = n.nats_password.clone();
    o.token = n.nats_token.clone();
    o.creds = n.nats_creds.clone();
    o.tls_ca = n.nats_tls_ca.clone();
    o.tls_required = n.nats_tls_required;
    o.replicas = usize::from(n.nats_replicas);
    o.validate()
        .map_err(|e| CliError::with_cause("invalid configuration", e))?;
    Ok(o)
}

/// Runs `bus server`.
pub async fn run(args: ServerArgs) -> Result<(), CliError> {
    init_tracing(&args.log_level)?;
    let config = config(&args)?;
    let nats = jetstream(&args)?;
    let addr = config.addr;
    let data_dir = config.data_dir.clone();
    // Loaded before the data directory is opened, so that a bad file fails fast.
    let tls = match &config.tls {
        Some(files) => {
            Some(Tls::load(files).map_err(|e| CliError::with_cause("cannot load TLS", e))?)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };

    let storage = match &nats {
        Some(o) => format!("NATS JetStream at {}", o.servers.join(",")),
        None => format!("data directory {}", data_dir.display()),
    };
    let jetstream_storage = nats.is_some();
    let (broker, reports) = match nats {
        Some(o) => (
            Broker::on_jetstream(config, o)
                .await
                .map_err(|e| CliError::with_cause("cannot open JetStream storage", e))?,
            Vec::new(),
        ),
        None => Broker::open(config)
            .await
            .map_err(|e| CliError::with_cause("cannot open data directory", e))?,
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            broker.close().await;
            return Err(CliError::with_cause(format!("cannot listen on {addr}"), e));
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        addr = %local,
        storage = %storage,
        namespaces = %if jetstream_storage {
            streams(&broker)
        } else {
            recovered(&reports)
        },
        "bus listening on {scheme}://{local}"
    );
    if !local.ip().is_loopback() && !broker.config().credentials_configured() {
        tracing::warn!(
            addr = %local,
            "listening beyond loopback without credentials (--allow-anonymous): anyone who can reach {local} may publish, read and delete events"
        );
    }
    let auth = broker.config().auth.clone();
    if tls.is_some() || auth.is_some() {
        tokio::spawn(reload_on_sighup(tls.clone(), auth));
    }

    let (signalled_tx, mut signalled_rx) = tokio::sync::watch::channel(None::<Instant>);
    let shutdown = async move {
        let which = wait_for_signal().await;
        tracing::info!(signal = which, "shutting down");
        let _ = signalled_tx.send(Some(Instant::now()));
    };
    let mut server = tokio::spawn(bus_broker::server::run_with_tls(
        listener,
        broker.clone(),
        tls,
        shutdown,
    ));
    // The server returns after draining; past the deadline after a signal, stop waiting.
    let deadline = async {
        let at = loop {
            if let Some(at) = *signalled_rx.borrow_and_update() {
                break at;
            }
            if signalled_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::time::sleep_until(at + EXIT_DEADLINE - CLOSE_BUDGET).await;
        at
    };
    let served = tokio::select! {
        r = &mut server => r,
        at = deadline => {
            tracing::warn!(waited = ?at.elapsed(), "open connections did not drain in time; closing anyway");
            server.abort();
            Ok(Ok(()))
        }
    };
    let close_by = signalled_rx
        .borrow()
        .map_or(Instant::now() + CLOSE_BUDGET, |at| at + EXIT_DEADLINE);
    if tokio::time::timeout_at(close_by, broker.close())
        .await
        .is_err()
    {
        tracing::warn!("closing the logs took too long; exiting without a clean close");
    }
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::with_cause("the server failed", e)),
        Err(e) => Err(CliError::with_cause("the server task failed", e)),
    }
}

/// Reads the certificate and key, and the auth file, again on every SIGHUP; a bad file
/// keeps the old one.
async fn reload_on_sighup(tls: Option<Tls>, auth: Option<std::sync::Arc<bus_broker::auth::Auth>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot watch SIGHUP: the TLS certificate and auth file will not be reloaded"
        );
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; the old one stays")
                }
            }
        }
        if let Some(auth) = &auth {
            match auth.reload() {
                Ok(()) => tracing::info!(target: "bus::audit", "auth file reloaded"),
                Err(e) => tracing::error!(error = %e, "auth file not reloaded; the old one stays"),
            }
        }
    }
}

/// Time kept for closing the logs after the drain.
const CLOSE_BUDGET: Duration = Duration::from_secs(3);

/// Logs to stderr with `level` as the filter.
fn init_tracing(level: &str) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| CliError::with_cause(format!("invalid log level {level:?}"), e))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// `user: 42 events, rpc: 3 events (torn tail of 17 bytes cut at offset 4096)`.
/// The namespaces found in JetStream at start, with their event counts, for the startup
/// line.
fn streams(broker: &Broker) -> String {
    let names = broker.namespaces();
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("{}: {}", n.name, crate::output::plural(n.events, "event")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn recovered(reports: &[OpenReport]) -> String {
    if reports.is_empty() {
        return "none".to_owned();
    }
    reports
        .iter()
        .map(|r| {
            let mut s = format!(
                "{}: {}",
                r.namespace,
                crate::output::plural(r.events, "event")
            );
            if let Some(t) = &r.torn {
                s.push_str(&format!(
                    " (torn tail of {} bytes cut at offset {} of {})",
                    t.bytes_cut,
                    t.offset,
                    r.active_segment.display()
                ));
            }
            if let Some(rep) = &r.repaired {
                s.push_str(&format!(" (repaired: {rep:?})"));
            }
            if let Some(skipped) = &r.skipped {
                s.push_str(&format!(
                    " (sequences {}..={} skipped: they may have been handed out before the crash)",
                    skipped.start(),
                    skipped.end()
                ));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves on SIGINT or SIGTERM, naming it.
pub(crate) async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => {
            // Without signal handlers, only Ctrl-C can stop the server.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use bus_broker::storage::FsyncPolicy;
    use clap::Parser as _;

    fn server_args(args: &[&str]) -> ServerArgs {
        let cli = Cli::try_parse_from(["bus", "server"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Server(s) => s,
            _ => panic!("not server"),
        }
    }

    #[test]
    fn nats_storage_maps_its_flags_and_refuses_fsync() {
        assert!(jetstream(&server_args(&[])).unwrap().is_none());
        let o = jetstream(&server_args(&[
            "--storage",
            "nats://a:4222,nats://b:4222",
            "--nats-user",
            "u",
            "--nats-password",
            "p",
            "--nats-replicas",
            "3",
            "--nats-tls-required",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(
            (o.user.as_deref(), o.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(o.replicas, 3);
        assert!(o.tls_required);
        for refused in [
            &["--storage", "nats://a:4222", "--fsync", "always"][..],
            &[
                "--storage",
                "nats://a:4222",
                "--ns-config",
                "rpc:fsync=never",
            ][..],
        ] {
            let e = format!("{:?}", jetstream(&server_args(refused)).unwrap_err().error);
            assert!(e.contains("sync_interval"), "{e}");
        }
        let e = format!(
            "{:?}",
            jetstream(&server_args(&["--storage", "/var/lib/bus"]))
                .unwrap_err()
                .error
        );
        assert!(e.contains("nats://"), "{e}");
        assert!(jetstream(&server_args(&["--nats-replicas", "3"])).is_err());
    }

    #[test]
    fn maps_flags_onto_the_config() {
        let c = config(&server_args(&[
            "--data",
            "/tmp/x",
            "--namespaces",
            "user,rpc",
            "--fsync",
            "never",
            "--max-payload",
            "2MiB",
            "--segment-size",
            "1MiB",
            "--retention-events",
            "9",
            "--dedup-window",
            "5s",
            "--max-connections",
            "7",
            "--cors-origin",
            "*",
            "--ns-config",
            "rpc:fsync=never",
            "--ns-config",
            "rpc:retention-age=1h",
        ]))
        .unwrap();
        assert_eq!(c.data_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(c.namespaces, Some(vec!["user".into(), "rpc".into()]));
        assert_eq!(c.log.fsync, FsyncPolicy::Never);
        assert_eq!(c.log.max_payload_bytes, 2 << 20);
        assert_eq!(c.log.segment_bytes, 1 << 20);
        assert_eq!(c.log.retention.max_events, Some(9));
        assert_eq!(c.log.dedup_window, Duration::from_secs(5));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.cors_origins, ["*"]);
        // Two flags for one namespace merge key by key.
        let rpc = &c.overrides["rpc"];
        assert_eq!(rpc.fsync.as_deref(), Some("never"));
        assert_eq!(rpc.retention_age.as_deref(), Some("1h"));
    }

    #[test]
    fn a_network_address_needs_allow_anonymous_and_says_so() {
        let e = config(&server_args(&["--addr", "0.0.0.0:2021"])).unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains("--allow-anonymous"), "{text}");
        let c = config(&server_args(&[
            "--addr",
            "0.0.0.0:2021",
            "--allow-anonymous",
        ]))
        .unwrap();
        assert!(c.allow_anonymous);
        let c = config(&server_args(&[
            "--trusted-proxies",
            "172.17.0.1,10.0.0.0/8",
            "--allowed-hosts",
            "bus.example.com",
            "--header-timeout",
            "2s",
            "--stalled-stream-timeout",
            "1m",
            "--max-connections-per-client",
            "3",
            "--limit-loopback",
        ]))
        .unwrap();
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(c.allowed_hosts, ["bus.example.com"]);
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.stalled_stream_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections_per_client, 3);
        assert!(c.limit_loopback_clients);
    }

    #[test]
    fn refuses_an_invalid_config() {
        for args in [
            &["--max-connections", "0"][..],
            &["--segment-size", "1KiB"],
            &["--namespaces", "a.b"],
            &["--addr", "0.0.0.0:2021"],
            &["--addr", "[::]:2021"],
            &["--header-timeout", "0s"],
            &["--trusted-proxies", "proxy.local"],
            &["--allowed-hosts", "http://x"],
        ] {
            assert!(config(&server_args(args)).is_err(), "{args:?}");
        }
    }
}
