//! Storage on whichever backend the environment selects (see `support::db`).

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use keygate::audit::{NewAuditEvent, Outcome};
use keygate::storage::{
    hash_token, new_id, AuditQuery, Backend, InvitationFilter, InvitationKind, InvitationState,
    NewCredential, NewInvitation, NewUser, OidcClient, OidcGrant, RefreshTokenRecord, Role,
    SessionRecord, SignInWrite, Storage, StorageError, UserStatus,
};

use crate::support::db::{
    backend_name, test_storage, test_storage_unmigrated, test_storage_with_pool, TestDb,
};

const NOW: i64 = 1_764_000_000;

pub(crate) fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        id: new_id().unwrap(),
        email: email.to_owned(),
        display_name: format!("Name of {email}"),
        role,
        created_at: NOW,
    }
}

pub(crate) fn new_credential(user_id: &str, credential_id: &[u8]) -> NewCredential {
    NewCredential {
        id: new_id().unwrap(),
        user_id: user_id.to_owned(),
        credential_id: credential_id.to_vec(),
        public_key_cose: vec![0xa5, 0x01, 0x02, 0x03, 0x26],
        alg: -7,
        sign_count: 0,
        aaguid: "cb69481e-8ff7-4039-93ec-0a2729a154a8".into(),
        model: Some("YubiKey 5 Series".into()),
        fips: false,
        firmware: Some("5.4.3".into()),
        fmt: "packed".into(),
        attestation_kind: "basic".into(),
        trust_anchor: Some("Yubico FIDO Root CA Serial 450203556".into()),
        trust_anchor_sha256: Some("ab".repeat(32)),
        leaf_sha256: Some("cd".repeat(32)),
        chain_json: r#"["MIIB","MIIC"]"#.into(),
        attestation_object: vec![0u8, 1, 2, 255, 254],
        client_data_json: br#"{"type":"webauthn.create"}"#.to_vec(),
        user_verified: true,
        backup_eligible: false,
        phishing_resistant: true,
        policy_version: 3,
        decision_json: r#"{"accepted":true}"#.into(),
        nickname: "Primary".into(),
        enrolled_at: NOW,
        enrolled_by: "admin".into(),
    }
}

fn new_invitation(token: &str, kind: InvitationKind, expires_at: i64) -> NewInvitation {
    NewInvitation {
        id: new_id().unwrap(),
        token_hash: hash_token(token),
        kind,
        email: "New.Person@Example.com".into(),
        display_name: "New Person".into(),
        role: Role::Member,
        created_by: Some("admin".into()),
        created_at: NOW,
        expires_at,
    }
}

/// The migration folders of a backend, in order.
fn migration_dirs(backend: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn storage_migrations_apply_once_and_are_idempotent() {
    let db = test_storage_unmigrated(None);
    let expected = match db.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(expected, backend_name());
    let on_disk = migration_dirs(expected);
    assert!(on_disk.len() >= 2, "{on_disk:?}");
    assert_eq!(db.pending_migrations().unwrap(), on_disk);
    let applied = db.migrate().unwrap();
    assert_eq!(applied, on_disk);
    assert_eq!(db.migrate().unwrap(), Vec::<String>::new());
    assert!(db.pending_migrations().unwrap().is_empty());
    assert_eq!(Storage::migration_names(db.backend()).unwrap(), on_disk);
    db.ping().unwrap();
}

#[test]
fn storage_concurrent_migrations_apply_once() {
    let db = test_storage_unmigrated(Some(4));
    let applied: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let storage = db.storage.clone();
                scope.spawn(move || storage.migrate().unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: Vec<String> = applied.into_iter().flatten().collect();
    assert_eq!(
        total,
        migration_dirs(backend_name()),
        "each applied exactly once"
    );
    assert_eq!(db.count_users().unwrap(), 0);
}

#[test]
fn storage_sqlite_connections_use_wal_and_foreign_keys() {
    let db = test_storage();
    let Some(path) = db.url.strip_prefix("sqlite://") else {
        crate::support::skip::in_other_pass(&format!(
            "SQLite only (this pass is on {})",
            backend_name()
        ));
        return;
    };
    db.insert_user(&new_user("wal@example.com", Role::Member))
        .unwrap();
    assert!(
        std::path::Path::new(&format!("{path}-wal")).exists(),
        "journal_mode=WAL"
    );
    assert_eq!(
        db.insert_credential(&new_credential("missing-user", b"fk")),
        Err(StorageError::Conflict("foreign_key".into())),
        "foreign_keys=ON"
    );
}

#[test]
fn storage_migration_folders_hold_the_same_names() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let names = |backend: &str| -> BTreeSet<String> {
        std::fs::read_dir(root.join(backend))
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let path = entry.path();
                assert!(path.join("up.sql").is_file(), "{path:?} lacks up.sql");
                assert!(path.join("down.sql").is_file(), "{path:?} lacks down.sql");
                entry.file_name().to_string_lossy().into_owned()
            })
            .collect()
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
}

#[test]
fn storage_rejects_unknown_url_schemes_without_creating_files() {
    let dir = tempfile::tempdir().unwrap();
    let typo = format!("sqlit://{}", dir.path().join("x.db").display());
    let err = Storage::connect(&typo, None).unwrap_err();
    assert!(err.to_string().contains("\"sqlit\""), "{err}");
    let err = Storage::connect("postgress://u:hunter2@localhost/db", None).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(matches!(
        Storage::connect("sqlite://:memory:", None),
        Err(StorageError::Backend(_))
    ));
}

#[test]
fn storage_users_crud() {
    let db = test_storage();
    assert_eq!(db.count_users().unwrap(), 0);
    let admin = db
        .insert_user(&new_user("Admin@Example.COM ", Role::Admin))
        .unwrap();
    assert_eq!(admin.email, "admin@example.com");
    let member = db
        .insert_user(&new_user("member@example.com", Role::Member))
        .unwrap();

    assert_eq!(db.user_by_id(&admin.id).unwrap(), Some(admin.clone()));
    assert_eq!(
        db.user_by_email("ADMIN@example.com").unwrap(),
        Some(admin.clone())
    );
    assert_eq!(db.user_by_id("nobody").unwrap(), None);
    assert_eq!(db.user_by_email("nobody@example.com").unwrap(), None);
    assert_eq!(db.count_users().unwrap(), 2);
    assert_eq!(db.count_admins().unwrap(), 1);

    db.insert_credential(&new_credential(&member.id, b"k1"))
        .unwrap();
    let k2 = db
        .insert_credential(&new_credential(&member.id, b"k2"))
        .unwrap();
    db.insert_credential(&new_credential(&member.id, b"k3"))
        .unwrap();
    assert!(db.revoke_credential(&k2.id, &admin.id, NOW + 5).unwrap());
    let listed = db.list_users().unwrap();
    let counts: Vec<(&str, i64)> = listed
        .iter()
        .map(|u| (u.user.email.as_str(), u.active_keys))
        .collect();
    assert_eq!(
        counts,
        vec![("admin@example.com", 0), ("member@example.com", 2)]
    );

    assert!(db.set_user_status(&admin.id, UserStatus::Disabled).unwrap());
    assert_eq!(db.count_admins().unwrap(), 0);
    assert!(!db.set_user_status("nobody", UserStatus::Disabled).unwrap());
    assert!(db.set_user_role(&member.id, Role::Admin).unwrap());
    let member = db.user_by_id(&member.id).unwrap().unwrap();
    assert_eq!(
        (member.role, member.status),
        (Role::Admin, UserStatus::Active)
    );
    assert_eq!(db.count_admins().unwrap(), 1);
}

#[test]
fn storage_unique_violations_are_conflicts() {
    let db = test_storage();
    let user = db
        .insert_user(&new_user("a@example.com", Role::Member))
        .unwrap();
    assert_eq!(
        db.insert_user(&new_user("A@example.com", Role::Admin)),
        Err(StorageError::Conflict("users.email".into()))
    );
    let mut same_id = new_user("b@example.com", Role::Member);
    same_id.id.clone_from(&user.id);
    assert_eq!(
        db.insert_user(&same_id),
        Err(StorageError::Conflict("users.id".into()))
    );

    db.insert_credential(&new_credential(&user.id, b"cred"))
        .unwrap();
    assert_eq!(
        db.insert_credential(&new_credential(&user.id, b"cred")),
        Err(StorageError::Conflict("credentials.credential_id".into()))
    );
    assert_eq!(
        db.insert_credential(&new_credential("no-such-user", b"other")),
        Err(StorageError::Conflict("foreign_key".into()))
    );

    db.insert_invitation(&new_invitation("t", InvitationKind::Invite, NOW + 60))
        .unwrap();
    assert_eq!(
        db.insert_invitation(&new_invitation("t", InvitationKind::Invite, NOW + 60)),
        Err(StorageError::Conflict("invitations.token_hash".into()))
    );
}

#[test]
fn storage_credentials_crud() {
    let db = test_storage();
    let user = db
        .insert_user(&new_user("k@example.com", Role::Member))
        .unwrap();
    let other = db
        .insert_user(&new_user("o@example.com", Role::Member))
        .unwrap();
    let new = new_credential(&user.id, &[0xde, 0xad, 0xbe, 0xef]);
    let stored = db.insert_credential(&new).unwrap();
    assert_eq!(stored.id, new.id);
    assert!(stored.is_active());

    let found = db
        .credential_by_credential_id(&[0xde, 0xad, 0xbe, 0xef])
        .unwrap()
        .unwrap();
    assert_eq!(found, stored, "every column round-trips");
    assert_eq!(
        db.credential_by_id(&stored.id).unwrap(),
        Some(stored.clone())
    );
    assert_eq!(db.credential_by_credential_id(b"missing").unwrap(), None);

    let mut second = new_credential(&user.id, b"second");
    second.enrolled_at = NOW + 10;
    second.model = None;
    second.fips = true;
    second.firmware = None;
    let second = db.insert_credential(&second).unwrap();
    let theirs = db
        .insert_credential(&new_credential(&other.id, b"theirs"))
        .unwrap();

    let ids = |creds: Vec<keygate::storage::Credential>| -> Vec<String> {
        creds.into_iter().map(|c| c.id).collect()
    };
    assert_eq!(
        ids(db.credentials_for_user(&user.id, true).unwrap()),
        vec![stored.id.clone(), second.id.clone()]
    );
    assert!(db
        .update_sign_count_and_last_used(&second.id, 42, NOW + 20)
        .unwrap());
    let second = db.credential_by_id(&second.id).unwrap().unwrap();
    assert_eq!(
        (second.sign_count, second.last_used_at),
        (42, Some(NOW + 20))
    );
    assert_eq!(
        (second.model, second.fips, second.firmware),
        (None, true, None)
    );
    // The counter only goes up: the same value again, a lower one, or 0 once a counter
    // was seen write nothing.
    for regressed in [42, 41, 0] {
        assert!(!db
            .update_sign_count_and_last_used(&second.id, regressed, NOW + 25)
            .unwrap());
    }
    assert_eq!(
        db.credential_by_id(&second.id)
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(NOW + 20)
    );
    // A key without a counter reports 0 every time.
    assert_eq!(theirs.sign_count, 0);
    for at in [NOW + 21, NOW + 22] {
        assert!(db
            .update_sign_count_and_last_used(&theirs.id, 0, at)
            .unwrap());
    }
    // The sign-in's lookup: the key and its member in one query; unknown ids find nothing.
    let (key, member) = db
        .with_conn(|tx| tx.sign_in_key(b"theirs"))
        .unwrap()
        .expect("enrolled key");
    assert_eq!(
        (key.id, key.last_used_at),
        (theirs.id.clone(), Some(NOW + 22))
    );
    assert_eq!(member.id, other.id);
    assert!(db
        .with_conn(|tx| tx.sign_in_key(b"nobody's"))
        .unwrap()
        .is_none());

    assert!(db
        .revoke_credential(&stored.id, "admin-1", NOW + 30)
        .unwrap());
    assert!(!db
        .revoke_credential(&stored.id, "admin-2", NOW + 40)
        .unwrap());
    let revoked = db.credential_by_id(&stored.id).unwrap().unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.revoked_by.as_deref()),
        (Some(NOW + 30), Some("admin-1"))
    );
    assert!(!revoked.is_active());
    assert!(!db
        .update_sign_count_and_last_used(&stored.id, 7, NOW + 50)
        .unwrap());

    assert_eq!(
        ids(db.credentials_for_user(&user.id, true).unwrap()),
        vec![second.id.clone()]
    );
    assert_eq!(db.credentials_for_user(&user.id, false).unwrap().len(), 2);
    assert_eq!(db.list_credentials().unwrap().len(), 3);
}

#[test]
fn storage_invitations_lifecycle() {
    let db = test_storage();
    let pending = db
        .insert_invitation(&new_invitation(
            "pending",
            InvitationKind::Invite,
            NOW + 3600,
        ))
        .unwrap();
    assert_eq!(pending.email, "new.person@example.com");
    let expired = db
        .insert_invitation(&new_invitation("expired", InvitationKind::Invite, NOW - 1))
        .unwrap();
    let revoked = db
        .insert_invitation(&new_invitation(
            "revoked",
            InvitationKind::Recovery,
            NOW + 3600,
        ))
        .unwrap();
    let used = db
        .insert_invitation(&new_invitation("used", InvitationKind::Invite, NOW + 3600))
        .unwrap();

    assert_eq!(
        db.invitation_by_token_hash(&hash_token("pending")).unwrap(),
        Some(pending.clone())
    );
    assert_eq!(
        db.invitation_by_token_hash(&hash_token("nope")).unwrap(),
        None
    );
    assert_eq!(
        db.invitation_by_id(&expired.id).unwrap(),
        Some(expired.clone())
    );

    assert!(db.revoke_invitation(&revoked.id, NOW).unwrap());
    assert!(!db.revoke_invitation(&revoked.id, NOW).unwrap());
    assert!(db.mark_invitation_used(&used.id, "user-1", NOW).unwrap());
    assert!(
        !db.mark_invitation_used(&used.id, "user-2", NOW).unwrap(),
        "single use"
    );
    assert!(
        !db.mark_invitation_used(&expired.id, "user-3", NOW).unwrap(),
        "expired"
    );
    assert!(
        !db.mark_invitation_used(&revoked.id, "user-4", NOW).unwrap(),
        "revoked"
    );
    assert!(
        !db.revoke_invitation(&used.id, NOW).unwrap(),
        "used ones stay used"
    );

    let used = db.invitation_by_id(&used.id).unwrap().unwrap();
    assert_eq!(
        (used.used_at, used.used_by.as_deref()),
        (Some(NOW), Some("user-1"))
    );
    assert_eq!(used.state(NOW), InvitationState::Used);

    let listed = |filter| -> Vec<String> {
        let mut ids: Vec<String> = db
            .list_invitations(filter, NOW)
            .unwrap()
            .into_iter()
            .map(|inv| {
                assert_eq!(
                    inv.state(NOW),
                    match filter {
                        InvitationFilter::Pending => InvitationState::Pending,
                        InvitationFilter::Used => InvitationState::Used,
                        InvitationFilter::Expired => InvitationState::Expired,
                        InvitationFilter::Revoked => InvitationState::Revoked,
                        InvitationFilter::All => inv.state(NOW),
                    }
                );
                inv.id
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(listed(InvitationFilter::Pending), vec![pending.id.clone()]);
    assert_eq!(listed(InvitationFilter::Used), vec![used.id.clone()]);
    assert_eq!(listed(InvitationFilter::Expired), vec![expired.id.clone()]);
    assert_eq!(listed(InvitationFilter::Revoked), vec![revoked.id.clone()]);
    assert_eq!(listed(InvitationFilter::All).len(), 4);

    let bootstrap = db
        .insert_invitation(&new_invitation("boot", InvitationKind::Bootstrap, NOW + 60))
        .unwrap();
    assert_eq!(
        db.revoke_pending_invitations(InvitationKind::Bootstrap, NOW)
            .unwrap(),
        1
    );
    assert_eq!(
        db.invitation_by_id(&bootstrap.id)
            .unwrap()
            .unwrap()
            .state(NOW),
        InvitationState::Revoked
    );
    assert_eq!(
        db.invitation_by_id(&pending.id)
            .unwrap()
            .unwrap()
            .state(NOW),
        InvitationState::Pending
    );
}

#[test]
fn storage_invitation_is_single_use_under_concurrency() {
    const RACERS: usize = 8;
    let db = test_storage_with_pool(Some(RACERS as u32));
    let invitation = db
        .insert_invitation(&new_invitation("race", InvitationKind::Invite, NOW + 60))
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let storage = db.storage.clone();
                let id = invitation.id.clone();
                scope.spawn(move || {
                    barrier.wait();
                    storage
                        .transaction(|tx| tx.mark_invitation_used(&id, &format!("racer-{i}"), NOW))
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(winners, 1, "exactly one racer may use the invitation");
    let used = db.invitation_by_id(&invitation.id).unwrap().unwrap();
    assert!(used.used_by.unwrap().starts_with("racer-"));
}

#[test]
fn storage_transaction_rollback_leaves_nothing() {
    let db = test_storage();
    let user = new_user("rollback@example.com", Role::Member);

    let result: Result<(), StorageError> = db.transaction(|tx| {
        tx.insert_user(&user)?;
        tx.insert_credential(&new_credential(&user.id, b"rolled-back"))?;
        tx.put_setting("policy", "{}", NOW)?;
        Err(StorageError::Conflict("caller changed its mind".into()))
    });
    assert_eq!(
        result,
        Err(StorageError::Conflict("caller changed its mind".into()))
    );
    assert_eq!(db.user_by_id(&user.id).unwrap(), None);
    assert_eq!(
        db.credential_by_credential_id(b"rolled-back").unwrap(),
        None
    );
    assert_eq!(db.get_setting("policy").unwrap(), None);

    // A failing statement part-way rolls back the writes before it.
    let existing = db
        .insert_user(&new_user("taken@example.com", Role::Member))
        .unwrap();
    let result = db.transaction(|tx| {
        tx.insert_user(&user)?;
        tx.insert_user(&new_user(&existing.email, Role::Member))?;
        Ok(())
    });
    assert_eq!(result, Err(StorageError::Conflict("users.email".into())));
    assert_eq!(db.user_by_id(&user.id).unwrap(), None);

    // And a committed transaction keeps everything.
    db.transaction(|tx| {
        tx.insert_user(&user)?;
        tx.insert_credential(&new_credential(&user.id, b"kept"))?;
        Ok(())
    })
    .unwrap();
    assert!(db.user_by_id(&user.id).unwrap().is_some());
    assert!(db.credential_by_credential_id(b"kept").unwrap().is_some());
}

#[test]
fn storage_times_round_trip_exactly() {
    let db = test_storage();
    // Unix seconds as BIGINT: no sub-second part to truncate, no range to clip.
    for (i, at) in [0_i64, 1, NOW, 4_102_444_800, -86_400, i64::MAX / 2]
        .into_iter()
        .enumerate()
    {
        let mut user = new_user(&format!("t{i}@example.com"), Role::Member);
        user.created_at = at;
        let stored = db.insert_user(&user).unwrap();
        assert_eq!(db.user_by_id(&stored.id).unwrap().unwrap().created_at, at);
        db.put_setting(&format!("t{i}"), "v", at).unwrap();
    }
    let now = keygate::storage::unix_now();
    assert!(now > NOW, "clock returns unix seconds");
}

#[test]
fn storage_settings_get_put_delete() {
    let db = test_storage();
    assert_eq!(db.get_setting("policy").unwrap(), None);
    db.put_setting("policy", r#"{"v":1}"#, NOW).unwrap();
    assert_eq!(
        db.get_setting("policy").unwrap().as_deref(),
        Some(r#"{"v":1}"#)
    );
    db.put_setting("policy", r#"{"v":2}"#, NOW + 1).unwrap();
    assert_eq!(
        db.get_setting("policy").unwrap().as_deref(),
        Some(r#"{"v":2}"#)
    );
    db.transaction(|tx| tx.put_setting("policy", "{}", NOW + 2))
        .unwrap();
    assert_eq!(db.get_setting("policy").unwrap().as_deref(), Some("{}"));
    assert!(db.delete_setting("policy").unwrap());
    assert!(!db.delete_setting("policy").unwrap());
    assert_eq!(db.get_setting("policy").unwrap(), None);
}

#[tokio::test]
async fn storage_run_uses_the_blocking_pool() {
    let db = test_storage();
    let user = new_user("async@example.com", Role::Admin);
    let id = user.id.clone();
    let stored = db
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_user(&user)?;
                tx.user_by_id(&user.id)
            })
        })
        .await
        .unwrap();
    assert_eq!(stored.map(|u| u.id), Some(id));
    let missing = db.run(|s| s.user_by_id("none")).await.unwrap();
    assert_eq!(missing, None);
}

/// A sign-in to record for `key` at `sign_count`, with its own session.
fn sign_in(user_id: &str, key: &str, sign_count: i64, at: i64) -> SignInWrite {
    let event = |action: &str, outcome| {
        NewAuditEvent::new(
            format!("user:{user_id}"),
            action,
            format!("user:{user_id}"),
            outcome,
        )
        .with_details(serde_json::json!({ "key": key, "sign_count": sign_count }))
    };
    SignInWrite {
        key_id: key.to_owned(),
        sign_count,
        at,
        session: SessionRecord {
            id: new_id().unwrap(),
            user_id: user_id.to_owned(),
            token_hash: hash_token(&new_id().unwrap()),
            key_id: Some(key.to_owned()),
            user_verified: true,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            created_at: at,
            expires_at: at + 3600,
            ended_at: None,
            ended_by: None,
        },
        success: event("signin.success", Outcome::Success),
        refused: event("signin.refused", Outcome::Refused).with_reason("possible_cloned_key"),
    }
}

#[test]
fn storage_sign_ins_of_one_batch_are_recorded_as_if_one_after_the_other() {
    let db = test_storage_with_pool(Some(4));
    let user = db
        .insert_user(&new_user("batch@example.com", Role::Member))
        .unwrap();
    let key = |n: &str| {
        db.insert_credential(&new_credential(&user.id, n.as_bytes()))
            .unwrap()
            .id
    };
    let (twice, regressed, stepped, revoked, counterless) = (
        key("twice"),
        key("regressed"),
        key("stepped"),
        key("revoked"),
        key("counterless"),
    );
    assert!(db
        .update_sign_count_and_last_used(&regressed, 10, NOW)
        .unwrap());
    assert!(db.revoke_credential(&revoked, "admin", NOW).unwrap());
    let at = NOW + 60;
    // (write, whether it must be recorded; None where the batch's order decides)
    let cases = [
        (sign_in(&user.id, &twice, 5, at), None),
        (sign_in(&user.id, &twice, 5, at), None),
        (sign_in(&user.id, &regressed, 9, at), Some(false)),
        (sign_in(&user.id, &stepped, 3, at), None),
        (sign_in(&user.id, &stepped, 4, at), Some(true)),
        (sign_in(&user.id, &revoked, 1, at), Some(false)),
        (sign_in(&user.id, &counterless, 0, at), Some(true)),
        (sign_in(&user.id, &counterless, 0, at), Some(true)),
    ];
    // A first job holds the committer while the sign-ins queue up behind it, so they
    // are written as one batch.
    let outcomes = in_one_batch(
        &db,
        cases
            .iter()
            .map(|(write, _)| {
                let (storage, write) = (db.storage.clone(), write.clone());
                move || {
                    storage
                        .audited_blocking(move |tx| tx.record_sign_in(write.clone()))
                        .unwrap()
                }
            })
            .collect(),
    );
    let mut recorded_sessions = BTreeSet::new();
    for ((write, expected), (ticket, records)) in cases.iter().zip(&outcomes) {
        let recorded = ticket.recorded();
        if let Some(expected) = expected {
            assert_eq!(
                recorded, *expected,
                "key {} at {}",
                write.key_id, write.sign_count
            );
        }
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        let action = if recorded {
            "signin.success"
        } else {
            "signin.refused"
        };
        assert_eq!(
            actions,
            [action],
            "key {} at {}",
            write.key_id,
            write.sign_count
        );
        if recorded {
            recorded_sessions.insert(write.session.id.clone());
        }
    }
    // The same counter twice at once: exactly one of the two.
    assert!(outcomes[0].0.recorded() ^ outcomes[1].0.recorded());
    let stored = |id: &str| db.credential_by_id(id).unwrap().unwrap();
    assert_eq!(
        (stored(&twice).sign_count, stored(&twice).last_used_at),
        (5, Some(at))
    );
    assert_eq!(
        (
            stored(&regressed).sign_count,
            stored(&regressed).last_used_at
        ),
        (10, Some(NOW))
    );
    assert_eq!(stored(&stepped).sign_count, 4);
    assert_eq!(
        (stored(&revoked).sign_count, stored(&revoked).last_used_at),
        (0, None)
    );
    assert_eq!(stored(&counterless).last_used_at, Some(at));
    // A session row for each recorded sign-in, and none for a refused one.
    let live: BTreeSet<String> = db
        .live_sessions(&user.id, at)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, recorded_sessions);
    let ok = db.verify_audit_chain().unwrap().unwrap();
    assert_eq!(ok.count, cases.len() as u64);
}

#[test]
fn storage_sign_in_outside_a_group_commit_is_written_at_once() {
    let db = test_storage();
    let user = db
        .insert_user(&new_user("single@example.com", Role::Member))
        .unwrap();
    let key = db
        .insert_credential(&new_credential(&user.id, b"single"))
        .unwrap()
        .id;
    let first = db
        .transaction(|tx| tx.record_sign_in(sign_in(&user.id, &key, 2, NOW)))
        .unwrap();
    let again = db
        .transaction(|tx| tx.record_sign_in(sign_in(&user.id, &key, 2, NOW + 1)))
        .unwrap();
    assert!(first.recorded());
    assert!(!again.recorded());
    assert_eq!(db.live_sessions(&user.id, NOW).unwrap().len(), 1);
    assert_eq!(db.verify_audit_chain().unwrap().unwrap().count, 2);
    // A session naming another key than the one signing in is refused, nothing written.
    let mut odd = sign_in(&user.id, &key, 3, NOW + 2);
    odd.session.key_id = Some("another".into());
    assert!(db.transaction(|tx| tx.record_sign_in(odd.clone())).is_err());
    assert_eq!(db.credential_by_id(&key).unwrap().unwrap().sign_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_concurrent_key_lookups_each_find_their_own_key() {
    let db = test_storage();
    let mut expected = Vec::new();
    for i in 0..6 {
        let user = db
            .insert_user(&new_user(&format!("lookup{i}@example.com"), Role::Member))
            .unwrap();
        let cid = format!("lookup-key-{i}").into_bytes();
        let key = db
            .insert_credential(&new_credential(&user.id, &cid))
            .unwrap();
        expected.push((cid, Some((key.id, user.id))));
    }
    expected.push((b"nobody".to_vec(), None));
    // Each id several times, all at once: batched lookups answer every caller, duplicates
    // and unknown ids included.
    let tasks: Vec<_> = (0..8)
        .flat_map(|_| expected.clone())
        .map(|(cid, want)| {
            let storage = db.storage.clone();
            tokio::spawn(async move {
                let found = storage.sign_in_key(cid.clone()).await.unwrap();
                (cid, want, found.map(|(key, user)| (key.id, user.id)))
            })
        })
        .collect();
    for task in tasks {
        let (cid, want, got) = task.await.unwrap();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&cid));
    }
}

/// On PostgreSQL each batched-lookup thread keeps a connection of its own (set to generic
/// plans); the pool has room for them, so with a pool of one the lookups and every other
/// use of the storage still get a connection, over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_lookup_threads_keep_their_connections_beside_the_pool() {
    let db = test_storage_with_pool(Some(1));
    let user = db
        .insert_user(&new_user("pool@example.com", Role::Member))
        .unwrap();
    db.insert_credential(&new_credential(&user.id, b"pool-key"))
        .unwrap();
    for round in 0..3 {
        let key = db.storage.sign_in_key(b"pool-key".to_vec()).await.unwrap();
        assert_eq!(key.map(|(_, u)| u.id).as_deref(), Some(user.id.as_str()));
        assert!(db
            .storage
            .find_oidc_client("nobody".into())
            .await
            .unwrap()
            .is_none());
        // With both lookup threads holding their connections, the pool's one is free.
        let storage = db.storage.clone();
        let id = user.id.clone();
        let found = tokio::task::spawn_blocking(move || storage.with_conn(|tx| tx.user_by_id(&id)))
            .await
            .unwrap()
            .unwrap();
        assert!(found.is_some(), "round {round}");
        db.append_audit(
            &NewAuditEvent::new("test", "pool.checked", &user.id, Outcome::Success),
            NOW,
        )
        .unwrap();
    }
}

/// PostgreSQL ends every connection of a storage (a restart, a failover, an operator's
/// `pg_terminate_backend`): the lookups and the reads fail at most once each, then work
/// again on new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_recovers_when_postgresql_ends_its_connections() {
    let db = test_storage();
    if backend_name() != "postgres" {
        return;
    }
    let name = format!("kg_{}", crate::support::db::random_hex(6));
    let storage =
        Storage::connect(&format!("{}&application_name={name}", db.url), Some(2)).unwrap();
    let look = |storage: Storage| async move {
        let client = storage
            .find_oidc_client("nobody".into())
            .await
            .map(|c| c.is_none());
        let id = "nobody".to_string();
        let read = tokio::task::spawn_blocking(move || storage.with_conn(|tx| tx.user_by_id(&id)))
            .await
            .unwrap()
            .map(|u| u.is_none());
        (client, read)
    };
    assert_eq!(look(storage.clone()).await, (Ok(true), Ok(true)));
    db.debug_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}'"
    ))
    .unwrap();
    // The first try may meet the ended connections; the second must not.
    let mut tries = Vec::new();
    for _ in 0..2 {
        tries.push(look(storage.clone()).await);
    }
    assert_eq!(tries.last(), Some(&(Ok(true), Ok(true))), "{tries:?}");
}

fn grant(id: &str, user_id: &str) -> OidcGrant {
    OidcGrant {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        client_id: "batch-client".into(),
        session_id: Some(new_id().unwrap()),
        key_id: None,
        auth_time: NOW,
        acr: "phrh".into(),
        amr: vec!["hwk".into(), "user".into()],
        created_at: NOW,
        revoked_at: None,
        revoked_reason: None,
    }
}

/// The client `grant` names.
fn insert_grant_client(db: &TestDb) {
    db.transaction(|tx| {
        tx.insert_oidc_client(&OidcClient {
            client_id: "batch-client".into(),
            name: "Batch".into(),
            secret_sha256: None,
            redirect_uris: vec!["https://rp.example/cb".into()],
            post_logout_redirect_uris: vec![],
            allowed_scopes: vec!["openid".into()],
            id_token_alg: "ES256".into(),
            workspace_id: None,
            required_acr: vec![],
            source: "admin".into(),
            created_at: NOW,
            disabled_at: None,
            jwks: None,
        })
    })
    .unwrap();
}

#[test]
fn storage_a_reused_code_revokes_or_reserves_its_grant_however_the_writers_interleave() {
    const RACERS: usize = 6;
    let db = test_storage_with_pool(Some(RACERS as u32 + 1));
    let user = db
        .insert_user(&new_user("reuse@example.com", Role::Member))
        .unwrap();
    insert_grant_client(&db);
    let revoked = |id: &str| OidcGrant {
        revoked_at: Some(NOW),
        revoked_reason: Some("code_reuse".into()),
        amr: vec![],
        ..grant(id, &user.id)
    };
    // Several replays of one code at once, before its exchange wrote anything: each
    // succeeds, one revoked placeholder remains.
    let id = new_id().unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|_| {
                let (barrier, storage, placeholder) =
                    (Arc::clone(&barrier), db.storage.clone(), revoked(&id));
                scope.spawn(move || {
                    barrier.wait();
                    storage.transaction(|tx| {
                        tx.revoke_or_reserve_grant(&placeholder, "code_reuse", NOW)
                    })
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let stored = db.transaction(|tx| tx.oidc_grant(&id)).unwrap().unwrap();
    assert_eq!(stored.revoked_reason.as_deref(), Some("code_reuse"));
    assert!(stored.amr.is_empty(), "the placeholder");
    assert!(db
        .transaction(|tx| tx.insert_oidc_grant(&grant(&id, &user.id)))
        .is_err());
    // A replay while the exchange's transaction has written the grant and not committed:
    // it waits for that transaction, then revokes the exchange's grant.
    let id = new_id().unwrap();
    let (written, wait) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let (storage, exchanged) = (db.storage.clone(), grant(&id, &user.id));
        let exchange = scope.spawn(move || {
            storage.transaction(|tx| {
                tx.insert_oidc_grant(&exchanged)?;
                written.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
        });
        wait.recv().unwrap();
        db.transaction(|tx| tx.revoke_or_reserve_grant(&revoked(&id), "code_reuse", NOW))
            .unwrap();
        exchange.join().unwrap().unwrap();
    });
    let stored = db.transaction(|tx| tx.oidc_grant(&id)).unwrap().unwrap();
    assert_eq!(stored.revoked_reason.as_deref(), Some("code_reuse"));
    assert_eq!(stored.amr, ["hwk", "user"], "the exchange's grant");
}

#[test]
fn storage_grants_of_one_batch_are_inserted_together_and_a_conflict_fails_only_its_job() {
    let db = test_storage_with_pool(Some(4));
    let user = db
        .insert_user(&new_user("grants@example.com", Role::Member))
        .unwrap();
    insert_grant_client(&db);
    // One batch of three fresh grants, then one where a code used twice left a revoked
    // placeholder under the second grant's id first.
    let fresh: Vec<String> = (0..3).map(|_| new_id().unwrap()).collect();
    let outcomes = issue_in_one_batch(&db, &user.id, &fresh);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let taken = new_id().unwrap();
    db.transaction(|tx| tx.insert_oidc_grant(&grant(&taken, &user.id)))
        .unwrap();
    let ids: Vec<String> = vec![new_id().unwrap(), taken.clone(), new_id().unwrap()];
    let outcomes = issue_in_one_batch(&db, &user.id, &ids);
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(StorageError::Conflict(_))),
        "{outcomes:?}"
    );
    for (i, id) in fresh.iter().chain(&ids).enumerate() {
        let stored = db.transaction(|tx| tx.oidc_grant(id)).unwrap().unwrap();
        assert_eq!(stored.amr, ["hwk", "user"]);
        let token = db
            .transaction(|tx| tx.refresh_token(&hash_token(id)))
            .unwrap();
        // Each batch's first and third came with a refresh token.
        assert_eq!(token.is_some(), (i % 3) % 2 == 0, "grant {i}");
    }
    // Only the five grants written were audited.
    assert_eq!(db.verify_audit_chain().unwrap().unwrap().count, 5);
}

/// Issues a grant for each of `ids` (with a refresh token for every other one) while a
/// first job holds the committer, so they are written as one batch.
fn issue_in_one_batch(
    db: &TestDb,
    user_id: &str,
    ids: &[String],
) -> Vec<Result<((), Vec<keygate::storage::AuditRecord>), StorageError>> {
    let jobs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (storage, g) = (db.storage.clone(), grant(id, user_id));
            let refresh = RefreshTokenRecord {
                digest: hash_token(id),
                grant_id: id.clone(),
                client_id: "batch-client".into(),
                user_id: user_id.to_owned(),
                scope: "openid offline_access".into(),
                record: "{}".into(),
                created_at: NOW,
                expires_at: NOW + 3600,
                used_at: None,
                revoked_at: None,
            };
            let issued =
                NewAuditEvent::new("user:x", "oidc.token_issued", "user:x", Outcome::Success)
                    .with_details(serde_json::json!({ "grant": id }));
            move || {
                storage.audited_blocking(move |tx| {
                    let r = (i % 2 == 0).then(|| refresh.clone());
                    tx.insert_issued_grant(g.clone(), r)?;
                    tx.queue_audit(&issued, NOW)
                })
            }
        })
        .collect();
    in_one_batch(db, jobs)
}

/// Runs each of `jobs` on a thread of its own while a first job holds the committer, so
/// the writes they submit meanwhile are committed as one batch; returns their results.
fn in_one_batch<T: Send, F: FnOnce() -> T + Send>(db: &TestDb, jobs: Vec<F>) -> Vec<T> {
    let (started, running) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let blocker = db.storage.clone();
        scope.spawn(move || {
            blocker
                .audited_blocking(move |_tx| {
                    let _ = started.send(());
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .unwrap();
        });
        running.recv().unwrap();
        let handles: Vec<_> = jobs.into_iter().map(|job| scope.spawn(job)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_concurrent_client_lookups_each_find_their_own_client() {
    let db = test_storage();
    let mut expected = Vec::new();
    for i in 0..4 {
        let client = OidcClient {
            client_id: format!("lookup-client-{i}"),
            name: format!("Client {i}"),
            secret_sha256: None,
            redirect_uris: vec![format!("https://rp{i}.example/cb")],
            post_logout_redirect_uris: vec![],
            allowed_scopes: vec!["openid".into()],
            id_token_alg: "ES256".into(),
            workspace_id: None,
            required_acr: vec![],
            source: "admin".into(),
            created_at: NOW,
            disabled_at: (i == 3).then_some(NOW),
            jwks: (i == 1).then(|| r#"{"keys":[]}"#.to_string()),
        };
        db.transaction(|tx| tx.insert_oidc_client(&client)).unwrap();
        expected.push((client.client_id.clone(), Some(client)));
    }
    expected.push(("nobody".into(), None));
    let tasks: Vec<_> = (0..8)
        .flat_map(|_| expected.clone())
        .map(|(id, want)| {
            let storage = db.storage.clone();
            tokio::spawn(async move {
                let got = storage.find_oidc_client(id.clone()).await.unwrap();
                (id, want, got)
            })
        })
        .collect();
    for task in tasks {
        let (id, want, got) = task.await.unwrap();
        assert_eq!(got, want, "{id}");
    }
}

/// Dropping the last handle stops and joins the storage's own threads (the committer and
/// the SQLite checkpointer), so every connection is closed when the drop returns: SQLite
/// then checkpoints and removes its log. (SQLite only, whatever the backend under test.)
#[test]
fn storage_dropping_the_last_handle_closes_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.db");
    let storage = Storage::connect(&format!("sqlite://{}", path.display()), Some(1)).unwrap();
    storage.migrate().unwrap();
    let event = NewAuditEvent::new("user:x", "signin.success", "user:x", Outcome::Success);
    let clone = storage.clone();
    clone.append_audit(&event, 1_700_000_000).unwrap();
    assert_eq!(storage.list_audit(&AuditQuery::default()).unwrap().len(), 1);
    let log = dir.path().join("keygate.db-wal");
    assert!(log.exists(), "a write-ahead log while connections are open");
    drop(clone);
    assert!(log.exists(), "another handle still holds the storage");
    drop(storage);
    assert!(
        !log.exists(),
        "the log is removed as the last connection closes"
    );

    // Opened again, everything is there.
    let storage = Storage::connect(&format!("sqlite://{}", path.display()), None).unwrap();
    assert_eq!(storage.list_audit(&AuditQuery::default()).unwrap().len(), 1);
}

/// With several pooled connections, r2d2 opens them on a thread of its own for checkouts
/// that found none idle, and an opening can outlive its checkout (another connection came
/// back first). The last handle waits for such openings and closes every connection where
/// it is dropped, so the log is gone when the drop returns, every time.
#[test]
fn storage_dropping_the_last_handle_waits_for_connections_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.db");
    let url = format!("sqlite://{}", path.display());
    Storage::connect(&url, Some(1)).unwrap().migrate().unwrap();
    let log = dir.path().join("keygate.db-wal");
    for round in 0..40 {
        let storage = Storage::connect(&url, Some(8)).unwrap();
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let storage = storage.clone();
                std::thread::spawn(move || storage.list_audit(&AuditQuery::default()).unwrap())
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
        assert!(
            log.exists(),
            "round {round}: a log while connections are open"
        );
        drop(storage);
        assert!(
            !log.exists(),
            "round {round}: a connection outlived the storage"
        );
    }
}
