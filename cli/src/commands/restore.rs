//! `bus restore [FILE] < file.ndjson`: republish a dump made by `bus dump`.
//!
//! Each line is one event JSON. It becomes a [`BatchItem`] with the event's subject,
//! headers, payload bytes, content type and reply subject, and a dedup id: the line's
//! `msg_id` when it has one, else the original event id. So restoring the same dump twice
//! stores every event once, as long as the second run comes within the target broker's
//! dedup window. Consecutive events of one namespace go in one atomic batch, of at most
//! [`BATCH_EVENTS`] events and [`BATCH_PAYLOAD_BYTES`] of payload.
//!
//! Two kinds of event go on their own, as single publishes: one with no content type (a
//! batch item always gets one, which would change the event) and one whose payload alone
//! exceeds the batch's bytes. Lines are read one at a time, each at most [`MAX_LINE_BYTES`],
//! so memory holds one batch, never the dump.

use std::io::{BufRead, BufReader, Read as _};

use bus_client::{BatchItem, Client, Message, PublishError, Receipt};

use crate::args::RestoreArgs;
use crate::error::{CliError, code_of};
use crate::output::{Output, notice};

/// Most events per batch (the broker takes up to 10,000).
const BATCH_EVENTS: usize = 1000;
/// Most payload bytes per batch; the broker takes batch bodies of up to 64 MiB, and a
/// payload's JSON form (escapes, base64) is at most about twice its size.
const BATCH_PAYLOAD_BYTES: usize = 8 << 20;
/// Longest line read: a 256 MiB payload (the largest a broker accepts) in base64, plus room
/// for the other fields.
const MAX_LINE_BYTES: u64 = 384 << 20;

/// The dump line's fields that the event JSON decoding leaves out.
#[derive(serde::Deserialize)]
struct Extra {
    /// The dedup id, when the dump carries it.
    #[serde(default)]
    msg_id: Option<String>,
}

/// Events of one namespace waiting to be sent, with where they came from.
#[derive(Debug, Default)]
struct Batch {
    /// The namespace of every item.
    namespace: String,
    items: Vec<BatchItem>,
    /// Payload bytes held.
    bytes: usize,
    /// The lines of the first and the last item.
    first_line: u64,
    last_line: u64,
}

/// What was restored.
#[derive(Debug, Default)]
struct Counts {
    stored: u64,
    duplicates: u64,
}

impl Counts {
    fn add(&mut self, receipts: &[Receipt]) {
        for r in receipts {
            if r.duplicate {
                self.duplicates += 1;
            } else {
                self.stored += 1;
            }
        }
    }

    fn line(&self, json: bool) -> String {
        let events = self.stored + self.duplicates;
        if json {
            serde_json::json!({"events": events, "stored": self.stored, "duplicates": self.duplicates})
                .to_string()
        } else {
            format!(
                "restored {}: {} stored, {}",
                crate::output::plural(events, "event"),
                self.stored,
                crate::output::plural(self.duplicates, "duplicate")
            )
        }
    }
}

/// Runs `bus restore`.
pub async fn run(url: &str, json: bool, args: RestoreArgs) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let input: Box<dyn std::io::Read> = match &args.file {
        Some(path) if path.as_os_str() != "-" => Box::new(
            std::fs::File::open(path)
                .map_err(|e| CliError::with_cause(format!("cannot open {}", path.display()), e))?,
        ),
        _ => Box::new(std::io::stdin()),
    };
    let mut counts = Counts::default();
    let result = restore(&client, BufReader::new(input), &mut counts).await;
    if result.is_err() && counts.stored + counts.duplicates > 0 {
        notice(&format!("before the failure: {}", counts.line(false)));
    }
    result?;
    Output::new().line(&counts.line(json))
}

async fn restore(
    client: &Client,
    mut input: impl BufRead,
    counts: &mut Counts,
) -> Result<(), CliError> {
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::with_cause("cannot read the dump", e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() as u64 > MAX_LINE_BYTES {
            return Err(CliError::msg(format!(
                "line {line_no} is longer than {} MiB",
                MAX_LINE_BYTES >> 20
            )));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|e| CliError::with_cause(format!("line {line_no} is not UTF-8"), e))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let item = parse_line(text)
            .map_err(|e| CliError::with_cause(format!("line {line_no} is not an event"), e))?;
        let namespace = item.subject.split('.').next().unwrap_or("").to_owned();
        let alone = item.content_type.is_none() || item.payload.len() > BATCH_PAYLOAD_BYTES;
        let fits = batch.namespace == namespace
            && batch.items.len() < BATCH_EVENTS
            && batch.bytes + item.payload.len() <= BATCH_PAYLOAD_BYTES;
        if alone || !fits {
            send(client, &mut batch, counts).await?;
        }
        if alone {
            let receipt = publish_one(client, item)
                .await
                .map_err(|e| publish_failed(format!("cannot restore line {line_no}"), e))?;
            counts.add(&[receipt]);
            continue;
        }
        if batch.items.is_empty() {
            batch.namespace = namespace;
            batch.first_line = line_no;
        }
        batch.last_line = line_no;
        batch.bytes += item.payload.len();
        batch.items.push(item);
    }
    send(client, &mut batch, counts).await
}

/// The batch item a dump line restores to.
fn parse_line(text: &str) -> Result<BatchItem, Box<dyn std::error::Error + Send + Sync>> {
    let m = Message::from_json(text)?;
    let extra: Extra = serde_json::from_str(text)?;
    let mut item = BatchItem::new(m.subject, m.payload);
    item.headers = m.headers;
    item.content_type = m.content_type;
    item.reply_to = m.reply_to;
    item.msg_id = Some(extra.msg_id.unwrap_or(m.id));
    Ok(item)
}

/// Publishes the batch, if it holds anything, and empties it.
async fn send(client: &Client, batch: &mut Batch, counts: &mut Counts) -> Result<(), CliError> {
    if batch.items.is_empty() {
        return Ok(());
    }
    let items = std::mem::take(&mut batch.items);
    let receipts = client.publish_batch(items).await.map_err(|e| {
        publish_failed(
            format!(
                "cannot restore lines {} to {} (namespace {})",
                batch.first_line, batch.last_line, batch.namespace
            ),
            e,
        )
    })?;
    batch.bytes = 0;
    counts.add(&receipts);
    Ok(())
}

/// Publishes one item on its own.
async fn publish_one(client: &Client, item: BatchItem) -> Result<Receipt, PublishError> {
    let mut p = client.publish(item.subject, item.payload);
    for (name, value) in item.headers {
        p = p.header(name, value);
    }
    if let Some(ct) = item.content_type {
        p = p.content_type(ct);
    }
    if let Some(r) = item.reply_to {
        p = p.reply_to(r);
    }
    if let Some(id) = item.msg_id {
        p = p.msg_id(id);
    }
    p.await
}

fn publish_failed(message: String, e: PublishError) -> CliError {
    CliError {
        code: code_of(e.kind()),
        ..CliError::with_cause(message, e)
    }
}
