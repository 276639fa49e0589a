//! The threads of a storage handle (the committer, the batched lookups, the SQLite
//! checkpointer): each fed through a channel, started on first use, and stopped and joined
//! when its owner is dropped. So once the last clone of a [`super::Storage`] is gone, no
//! thread of it still holds a database connection: its connections are closed before the
//! process goes on (or exits: libpq and OpenSSL are not torn down under a live connection),
//! and SQLite checkpoints and removes its log as the last one closes. (r2d2 may still be
//! opening one on its own thread for a request served meanwhile; it closes it once open.)

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

/// One thread and the channel that feeds it.
pub(super) struct Worker<T: Send + 'static> {
    started: OnceLock<Started<T>>,
}

struct Started<T> {
    sender: Mutex<mpsc::Sender<T>>,
    /// `None` when the thread could not be started.
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Worker<T> {
    pub(super) const fn new() -> Self {
        Worker {
            started: OnceLock::new(),
        }
    }

    /// Starts the thread, named `name`, unless it runs already: `make` gives what it runs,
    /// which receives until every sender is dropped (this worker's, when it is dropped).
    pub(super) fn start<F, R>(&self, name: &'static str, make: F) -> &Self
    where
        F: FnOnce() -> R,
        R: FnOnce(mpsc::Receiver<T>) + Send + 'static,
    {
        self.started.get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<T>();
            let run = make();
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(receiver));
            let thread = match thread {
                Ok(thread) => Some(thread),
                Err(err) => {
                    // The receiver is gone with the closure: every send fails at once.
                    tracing::error!(error = %err, thread = name, "cannot start a storage thread");
                    None
                }
            };
            Started {
                sender: Mutex::new(sender),
                thread,
            }
        });
        self
    }

    /// [`Worker::start`] for a thread that takes what is queued in batches: it waits for
    /// one item, adds whatever else is queued by then (at most `max_batch` in all), and
    /// gives the batch to what `make` returned.
    pub(super) fn start_batching<F, R>(
        &self,
        name: &'static str,
        max_batch: usize,
        make: F,
    ) -> &Self
    where
        F: FnOnce() -> R,
        R: FnMut(Vec<T>) + Send + 'static,
    {
        self.start(name, || {
            let mut handle = make();
            move |receiver: mpsc::Receiver<T>| {
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        match receiver.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    handle(batch);
                }
            }
        })
    }

    /// Sends `item` to the thread (see [`Worker::start`]); gives it back when there is no
    /// thread to take it.
    pub(super) fn send(&self, item: T) -> Result<(), T> {
        let Some(started) = self.started.get() else {
            return Err(item);
        };
        started
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(item)
            .map_err(|mpsc::SendError(item)| item)
    }
}

impl<T: Send + 'static> Drop for Worker<T> {
    fn drop(&mut self) {
        let Some(Started { sender, thread }) = self.started.take() else {
            return;
        };
        // The thread ends once it has taken what is queued and finds the channel closed.
        drop(sender);
        if let Some(thread) = thread {
            // The last handle may be dropped by the thread itself (a job that held one).
            if thread.thread().id() != std::thread::current().id() && thread.join().is_err() {
                tracing::error!("a storage thread panicked");
            }
        }
    }
}
