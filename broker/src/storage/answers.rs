//! [`Answers`]: how the appenders of a written (and, under `always`, synced) group learn
//! their events' sequence numbers.
//!
//! Each append waits on a `oneshot` channel; answering it wakes the appender's task. Waking a
//! task from a thread outside its runtime (the writer or the syncer) puts it on the runtime's
//! shared queue and, when a worker sleeps, wakes that worker with a system call: repeated for
//! every appender of a group, this made answering take a third of the syncer's time under
//! `always` (`BENCHMARKS.md`). So a group's answers are sent from a task spawned on the
//! runtime of one of its appenders (the first that has one): one hand-over per group, and
//! each wake then goes to the local queue of the worker running that task.
//!
//! **Never lost.** The answers are sent when [`Answers`] is dropped, wherever that happens:
//! in the spawned task, or, when the runtime has shut down and drops the task unrun, in the
//! thread that drops it. Appends made outside any runtime are answered on the spot.

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::StorageError;

/// What the writer answers for one event; the appender turns it into a
/// [`Receipt`](super::Receipt).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub sequence: u64,
    pub time_ns: u64,
    pub duplicate: bool,
}

/// How one event of a request is answered.
pub(crate) enum Slot {
    /// Written: the stamp is filled in when the event is encoded.
    Write(Option<Stamp>),
    /// A dedup id seen within the window.
    Duplicate(Stamp),
    /// The same dedup id as an earlier event of the same request.
    SameAs(usize),
}

/// Where an appender waits for its answer.
pub(crate) type Reply = oneshot::Sender<Result<Vec<Stamp>, StorageError>>;

/// A request whose events are encoded and that waits for its group's write (and sync).
pub(crate) struct Done {
    pub tx: Reply,
    pub slots: Vec<Slot>,
    /// Room in the queue, held until the request is answered: this is what bounds the
    /// groups written but not yet synced.
    pub permit: OwnedSemaphorePermit,
    /// The runtime the appender runs on, if any.
    pub runtime: Option<Handle>,
}

/// The successful answers of written groups, sent when dropped.
pub(crate) struct Answers(Vec<Done>);

impl Answers {
    /// Answers every request: from a task on an appender's runtime when there is one (see
    /// the module's documentation), else here.
    pub(crate) fn send(done: Vec<Done>) {
        let runtime = done.iter().find_map(|d| d.runtime.clone());
        let answers = Answers(done);
        match runtime {
            Some(rt) => {
                rt.spawn(async move { drop(answers) });
            }
            None => drop(answers),
        }
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        for d in self.0.drain(..) {
            // The appender may have gone (its future dropped): nothing to tell it then.
            let _ = d.tx.send(Ok(resolve(d.slots)));
            drop(d.permit);
        }
    }
}

/// The stamps of a request, in event order.
fn resolve(slots: Vec<Slot>) -> Vec<Stamp> {
    let mut out: Vec<Stamp> = Vec::with_capacity(slots.len());
    for slot in slots {
        let r = match slot {
            Slot::Write(Some(r)) | Slot::Duplicate(r) => r,
            Slot::SameAs(i) => Stamp {
                duplicate: true,
                ..out[i]
            },
            // Every written slot is filled before its group is flushed.
            Slot::Write(None) => continue,
        };
        out.push(r);
    }
    out
}
