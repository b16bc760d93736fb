//! [`Answers`]: how the appenders of a written (and, under `always`, synced) group learn
//! their events' sequence numbers.
//!
//! Each append waits on a `oneshot` channel; answering it wakes the appender's task. Waking a
//! task from a thread outside its runtime (the writer or the syncer) puts it on the runtime's
//! shared queue and, when a worker sleeps, wakes that worker with a system call: repeated for
//! every appender of a group, this made answering take a third of the syncer's time under
//! `always` (`BENCHMARKS.md`). So the answers of each batch of groups the syncer (or the
//! writer) settles at once are sent from one task spawned on the runtime of one of their
//! appenders: one hand-over per batch, and each wake then goes to the local queue of the
//! worker running that task.
//!
//! **Which runtime.** Only a multi-threaded one: its workers run whatever else any thread
//! is doing. A current-thread runtime runs tasks only while its one thread drives it, and
//! that thread may be blocked waiting for this very append (`block_on` inside the runtime),
//! so answers for appenders there, or outside any runtime, are sent on the spot when no
//! appender of the batch has a multi-threaded runtime. Answers of different batches may
//! reach their appenders in any order; visibility to readers still follows sequence order.
//!
//! **On the spot.** A writer step that runs on an appender's own thread (a worker of its
//! runtime, see [`Pool::notify_or_run_here`](super::pool::Pool::notify_or_run_here))
//! answers there ([`Answers::send_here`]): the wakes go to that worker's local queue, and
//! the appender whose append ran the step finds its answer ready without waiting.
//!
//! **Never lost.** The answers are sent when [`Answers`] is dropped, wherever that happens:
//! in the spawned task, or, when the runtime has shut down and drops the task unrun, in the
//! thread that drops it.

use tokio::runtime::{Handle, RuntimeFlavor};
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
    /// Answers every request now, on this thread.
    pub(crate) fn send_here(done: Vec<Done>) {
        drop(Answers(done));
    }

    /// Answers every request: from a task on an appender's multi-threaded runtime when there
    /// is one (see the module's documentation), else here.
    pub(crate) fn send(done: Vec<Done>) {
        let runtime = done
            .iter()
            .filter_map(|d| d.runtime.as_ref())
            .find(|rt| rt.runtime_flavor() == RuntimeFlavor::MultiThread)
            .cloned();
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
        for Done {
            tx, slots, permit, ..
        } in self.0.drain(..)
        {
            // Room first, so that an appender that has its answer finds the room given back.
            drop(permit);
            // The appender may have gone (its future dropped): nothing to tell it then.
            let _ = tx.send(Ok(resolve(slots)));
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    /// A request for one written event with sequence `seq`, on `runtime`.
    fn done(
        seq: u64,
        runtime: Option<Handle>,
        room: &Arc<Semaphore>,
    ) -> (Done, oneshot::Receiver<Result<Vec<Stamp>, StorageError>>) {
        let (tx, rx) = oneshot::channel();
        let stamp = Stamp {
            sequence: seq,
            time_ns: 7,
            duplicate: false,
        };
        let d = Done {
            tx,
            slots: vec![Slot::Write(Some(stamp)), Slot::SameAs(0)],
            permit: room.clone().try_acquire_owned().unwrap(),
            runtime,
        };
        (d, rx)
    }

    fn sequences(rx: oneshot::Receiver<Result<Vec<Stamp>, StorageError>>) -> Vec<(u64, bool)> {
        let stamps = futures::executor::block_on(rx).unwrap().unwrap();
        stamps.iter().map(|s| (s.sequence, s.duplicate)).collect()
    }

    #[test]
    fn answers_are_handed_to_a_multi_threaded_runtime() {
        let room = Arc::new(Semaphore::new(1));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // Keep the runtime's only worker busy until told to go on.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        rt.spawn(async move {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        started_rx.recv().unwrap();
        let (a, mut ra) = done(1, Some(rt.handle().clone()), &room);
        Answers::send(vec![a]);
        // Handed over, not sent here: nothing arrives while the worker is busy.
        assert!(matches!(
            ra.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        go_tx.send(()).unwrap();
        assert_eq!(sequences(ra), [(1, false), (1, true)]);
        assert_eq!(room.available_permits(), 1);
    }

    #[test]
    fn answers_from_no_runtime_a_current_thread_one_and_one_shut_down() {
        let room = Arc::new(Semaphore::new(3));
        // A current-thread runtime that nobody drives (its thread could be blocked waiting
        // for this very answer): answered on the spot.
        let idle = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let gone = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let gone_handle = gone.handle().clone();
        drop(gone);

        let (a, mut ra) = done(1, Some(idle.handle().clone()), &room);
        let (b, mut rb) = done(2, None, &room);
        let (c, rc) = done(3, Some(gone_handle), &room);
        Answers::send(vec![a]);
        Answers::send(vec![b]);
        assert!(ra.try_recv().is_ok());
        assert!(rb.try_recv().is_ok());
        // The runtime is gone: the task is dropped unrun, and dropping it answers.
        Answers::send(vec![c]);
        assert_eq!(sequences(rc), [(3, false), (3, true)]);
        // Every request's room in the queue was given back.
        assert_eq!(room.available_permits(), 3);
    }
}
