//! The pool's connections, counted, so that the last storage handle can close every one of
//! them on its own thread.
//!
//! r2d2 opens connections on a thread of its own (for a checkout that found none idle) and
//! never joins it; when such an opening outlives the checkout that asked for it (another
//! connection came back first), it goes on after the storage is dropped. A process that
//! exits meanwhile crashes in the TLS or Kerberos library under libpq (seen: a
//! `k5_mutex_lock` assertion as `keygate audit export` exited on PostgreSQL). And whichever
//! thread lets go of r2d2's pool last closes the connections left in it, which may be
//! that thread too.
//!
//! So the [`super::Manager`] counts the connections being opened and those open (an open
//! one is counted until it is closed), and when the last storage handle is dropped,
//! [`Drain`] waits until nothing is being opened and every open connection is in the pool,
//! then takes the idle ones out and closes them where it runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::{self, CustomizeConnection, Pool};

use super::{DbConnection, Manager};

#[derive(Debug, Default)]
pub(super) struct Census {
    /// Connections being opened.
    opening: AtomicUsize,
    /// Connections opened and not yet closed.
    open: AtomicUsize,
    /// The storage is going away: a connection given back is closed, not kept.
    closing: AtomicBool,
}

/// Counts one connection being opened until dropped.
pub(super) struct Opening<'a>(&'a Census);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Census {
    /// Counts an opening until the guard is dropped; [`Census::opened`] before that if it
    /// succeeded.
    pub(super) fn opening(&self) -> Opening<'_> {
        self.opening.fetch_add(1, Ordering::SeqCst);
        Opening(self)
    }

    pub(super) fn opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Nothing is being opened, and every open connection is in the pool (r2d2 counts a
    /// connection there once it has put it in, and stops counting it before closing it).
    fn settled(&self, in_pool: u32) -> bool {
        self.opening.load(Ordering::SeqCst) == 0
            && self.open.load(Ordering::SeqCst) == in_pool as usize
    }
}

/// r2d2 hands every connection it closes to this customizer.
#[derive(Debug)]
pub(super) struct CountCloses(pub(super) Arc<Census>);

impl CustomizeConnection<DbConnection, r2d2::Error> for CountCloses {
    fn on_release(&self, conn: DbConnection) {
        drop(conn);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held by every storage handle; dropped with the last one, after the storage's own
/// threads were joined (it is the handle's last field).
pub(super) struct Drain {
    pub(super) pool: Pool<Manager>,
    pub(super) census: Arc<Census>,
    /// How long to wait for r2d2's thread (an opening gives up after the checkout timeout).
    pub(super) patience: Duration,
}

impl Drop for Drain {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.patience;
        while !self.census.settled(self.pool.state().connections) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "a database connection was still being opened as the storage closed"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.census.closing.store(true, Ordering::SeqCst);
        // Each idle connection taken out and given back is closed here (as broken). One
        // still checked out (by the thread that dropped this handle) closes as it returns.
        while let Some(conn) = self.pool.try_get() {
            drop(conn);
        }
    }
}
