//! `bus migrate`: move a stopped broker's data directory into NATS JetStream.
//!
//! Opens the data directory (locking it, so a running broker makes this fail), refuses one
//! with damaged namespaces (repair them first with `bus inspect --repair`), connects to
//! JetStream and runs `bus_broker::storage::jetstream::migrate`, printing each namespace as
//! it is done. Nothing in the data directory changes; nothing in JetStream is overwritten.

use std::sync::Arc;

use bus_broker::storage::jetstream::{JetStreamStorage, migrate};
use bus_broker::storage::{DiskStorage, Storage, StorageOptions};

use crate::args::MigrateArgs;
use crate::commands::server::nats_options;
use crate::error::CliError;

/// Runs `bus migrate`.
pub async fn run(args: MigrateArgs) -> Result<(), CliError> {
    if !args.data.is_dir() {
        return Err(CliError::msg(format!(
            "{} is not a data directory",
            args.data.display()
        )));
    }
    let options = nats_options(&args.to, &args.nats)?;
    let dir = args.data.clone();
    let (disk, _) =
        tokio::task::spawn_blocking(move || DiskStorage::open(StorageOptions::new(dir)))
            .await
            .map_err(|e| CliError::msg(format!("open task failed: {e}")))?
            .map_err(|e| CliError::with_cause("cannot open data directory", e))?;
    let disk: Arc<dyn Storage> = Arc::new(disk);
    let damaged = disk.recovery().damaged;
    if let Some((ns, d)) = damaged.iter().next() {
        return Err(CliError::msg(format!(
            "namespace {ns} is damaged ({}); repair it first: bus inspect --repair {}",
            d.corruption,
            args.data.display()
        )));
    }
    let js = JetStreamStorage::connect(options)
        .await
        .map_err(|e| CliError::with_cause("cannot reach JetStream", e))?;
    let report = migrate(&*disk, &js, |ns, n| {
        println!("{ns}: {}", crate::output::plural(n, "event"));
    })
    .await
    .map_err(|e| CliError::with_cause("migration failed", e))?;
    println!(
        "moved {} and {} to {}",
        crate::output::plural(report.namespaces.len() as u64, "namespace"),
        crate::output::plural(report.state_keys, "state key"),
        args.to
    );
    let _ = disk.close().await;
    js.close()
        .await
        .map_err(|e| CliError::with_cause("closing JetStream", e))?;
    Ok(())
}
