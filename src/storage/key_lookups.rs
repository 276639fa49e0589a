//! The sign-in's key lookup on PostgreSQL, batched: every lookup asked for while the
//! previous batch was on its way goes in the next one, as one query
//! (`credential_id = ANY($1)`) on one connection.
//!
//! Under load many sign-ins finish at once, and each lookup on its own would be a round
//! trip and a statement for PostgreSQL, whose fixed costs outweigh the indexed read
//! itself. One thread per [`super::Storage`] runs the batches; it ends when the last
//! clone of the storage handle is dropped. SQLite reads in place instead
//! ([`super::Storage::read`]).

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use diesel::prelude::*;
use diesel::r2d2::Pool;

use super::error::{db_err, StorageError};
use super::models::{SignInKey, User};
use super::schema::{credentials, users};
use super::users::UserRow;
use super::{DbConnection, Manager};

/// Most lookups in one query.
const MAX_BATCH: usize = 128;

pub(super) type Found = Result<Option<(SignInKey, User)>, StorageError>;

struct Lookup {
    credential_id: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Found>,
}

pub(super) struct KeyLookups {
    sender: OnceLock<Mutex<mpsc::Sender<Lookup>>>,
    pool: Pool<Manager>,
}

impl KeyLookups {
    pub(super) fn new(pool: Pool<Manager>) -> Self {
        KeyLookups {
            sender: OnceLock::new(),
            pool,
        }
    }

    /// The key with this WebAuthn credential id and its member, as
    /// [`super::Tx::sign_in_key`] finds them.
    pub(super) async fn find(&self, credential_id: Vec<u8>) -> Found {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sender = self.sender.get_or_init(|| Mutex::new(self.start()));
        let sent = sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(Lookup {
                credential_id,
                reply,
            });
        if sent.is_err() {
            return Err(StorageError::Unavailable(
                "the key lookup has stopped".into(),
            ));
        }
        answer
            .await
            .map_err(|_| StorageError::Unavailable("the key lookup has stopped".into()))?
    }

    fn start(&self) -> mpsc::Sender<Lookup> {
        let (sender, receiver) = mpsc::channel::<Lookup>();
        let pool = self.pool.clone();
        let spawned = std::thread::Builder::new()
            .name("keygate-key-lookup".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(lookup) => batch.push(lookup),
                            Err(_) => break,
                        }
                    }
                    answer(&pool, batch);
                }
            });
        if let Err(err) = spawned {
            // Without a thread every lookup is answered at once with an error.
            tracing::error!(error = %err, "cannot start the key lookup");
            let (dead, _) = mpsc::channel();
            return dead;
        }
        sender
    }
}

fn answer(pool: &Pool<Manager>, batch: Vec<Lookup>) {
    let mut ids: Vec<&[u8]> = batch.iter().map(|l| l.credential_id.as_slice()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = pool
        .get()
        .map_err(|err| StorageError::Unavailable(format!("no database connection: {err}")))
        .and_then(|mut conn| find_all(&mut conn, &ids));
    match found {
        Ok(found) => {
            for lookup in batch {
                // A credential id asked for twice in one batch is answered twice.
                let row = found.get(&lookup.credential_id).cloned();
                let _ = lookup.reply.send(Ok(row));
            }
        }
        Err(err) => {
            for lookup in batch {
                let _ = lookup.reply.send(Err(err.clone()));
            }
        }
    }
}

fn find_all(
    conn: &mut DbConnection,
    ids: &[&[u8]],
) -> Result<HashMap<Vec<u8>, (SignInKey, User)>, StorageError> {
    let DbConnection::Pg(pg) = conn else {
        return Err(StorageError::Backend(
            "batched key lookups are for PostgreSQL".into(),
        ));
    };
    let rows = credentials::table
        .inner_join(users::table)
        .filter(credentials::credential_id.eq_any(ids))
        .select((
            credentials::credential_id,
            super::credentials::SIGN_IN_KEY_COLUMNS,
            users::all_columns,
        ))
        .load::<(Vec<u8>, SignInKey, UserRow)>(pg)
        .map_err(db_err)?;
    rows.into_iter()
        .map(|(id, key, user)| Ok((id, (key, User::try_from(user)?))))
        .collect()
}
