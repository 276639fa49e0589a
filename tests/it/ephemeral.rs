//! The ephemeral store contract: one suite, run on the in-process store and on Redis
//! (`KEYGATE_TEST_REDIS_URL`; skipped with a note when unset, a failure under `CI=true`).

use std::sync::Arc;
use std::time::Duration;

use keygate::ephemeral::{
    connect, with_marks, Counted, Entry, EphemeralError, EphemeralStore, Limit, MemoryStore,
    RedisStore, Then,
};

use crate::support::db::{test_prefix, test_redis, test_redis_with_prefix, REDIS_URL_VAR};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(60);

fn limit(key: &str, window: Duration, max: u64) -> Limit {
    Limit {
        key: key.into(),
        window,
        max,
    }
}

/// Takes `key` leaving `marks` (`Then::TakeMarking`, no limit).
async fn take_marking(
    store: &dyn EphemeralStore,
    key: &str,
    marks: &[(&str, Duration)],
) -> Result<Option<Vec<u8>>, EphemeralError> {
    match store.counted(&[], Then::TakeMarking { key, marks }).await? {
        Counted::Done(taken) => Ok(taken),
        Counted::Limited => panic!("limited without a limit"),
    }
}

/// Counts once at `key` (no maximum) and returns the count stored there.
async fn count(store: &dyn EphemeralStore, key: &str, window: Duration) -> u64 {
    let done = store
        .counted(&[limit(key, window, u64::MAX)], Then::Nothing)
        .await
        .unwrap();
    assert_eq!(done, Counted::Done(None));
    let stored = store.get(key).await.unwrap().expect("a counter");
    String::from_utf8(stored).unwrap().parse().unwrap()
}

/// Long enough for a `SHORT` entry to be gone (Redis expires within ~1 ms of the TTL).
async fn past_short() {
    tokio::time::sleep(SHORT + Duration::from_millis(250)).await;
}

async fn set_get_delete(store: &dyn EphemeralStore) {
    assert_eq!(store.get("sgd:missing").await.unwrap(), None);
    store.set_ex("sgd:k", b"one", LONG).await.unwrap();
    assert_eq!(store.get("sgd:k").await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(
        store.get("sgd:k").await.unwrap(),
        Some(b"one".to_vec()),
        "get does not consume"
    );
    store.set_ex("sgd:k", b"two", LONG).await.unwrap();
    assert_eq!(store.get("sgd:k").await.unwrap(), Some(b"two".to_vec()));
    store.delete("sgd:k").await.unwrap();
    assert_eq!(store.get("sgd:k").await.unwrap(), None);
    store.delete("sgd:k").await.unwrap();

    let binary: Vec<u8> = (0..=255).collect();
    store.set_ex("sgd:bin", &binary, LONG).await.unwrap();
    assert_eq!(store.get("sgd:bin").await.unwrap(), Some(binary));
    store.set_ex("sgd:empty", b"", LONG).await.unwrap();
    assert_eq!(store.get("sgd:empty").await.unwrap(), Some(Vec::new()));
    store.ping().await.unwrap();
}

async fn ttl_expiry(store: &dyn EphemeralStore) {
    store.set_ex("ttl:k", b"v", SHORT).await.unwrap();
    store.set_ex("ttl:long", b"v", LONG).await.unwrap();
    store.set_ex("ttl:renewed", b"old", SHORT).await.unwrap();
    store.set_ex("ttl:renewed", b"new", LONG).await.unwrap();
    assert_eq!(store.get("ttl:k").await.unwrap(), Some(b"v".to_vec()));
    past_short().await;
    assert_eq!(store.get("ttl:k").await.unwrap(), None);
    assert_eq!(store.take("ttl:k").await.unwrap(), None);
    assert_eq!(store.get("ttl:long").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        store.get("ttl:renewed").await.unwrap(),
        Some(b"new".to_vec())
    );

    assert_eq!(
        store.set_ex("ttl:zero", b"v", Duration::ZERO).await,
        Err(EphemeralError::InvalidTtl)
    );
    assert_eq!(
        store.set_nx_ex("ttl:zero", b"v", Duration::ZERO).await,
        Err(EphemeralError::InvalidTtl)
    );
    assert_eq!(
        store
            .counted(&[limit("ttl:zero", Duration::ZERO, 5)], Then::Nothing)
            .await,
        Err(EphemeralError::InvalidTtl)
    );
    assert_eq!(store.get("ttl:zero").await.unwrap(), None);
}

async fn take_is_single_use(store: &dyn EphemeralStore) {
    store.set_ex("take:k", b"challenge", LONG).await.unwrap();
    assert_eq!(
        store.take("take:k").await.unwrap(),
        Some(b"challenge".to_vec())
    );
    assert_eq!(store.take("take:k").await.unwrap(), None);
    assert_eq!(store.get("take:k").await.unwrap(), None);
    assert_eq!(store.take("take:missing").await.unwrap(), None);
}

async fn concurrent_takes_have_one_winner(store: Arc<dyn EphemeralStore>) {
    for round in 0..5 {
        let key = format!("ctake:{round}");
        store.set_ex(&key, b"once", LONG).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = Arc::clone(&store);
                let key = key.clone();
                tokio::spawn(async move { store.take(&key).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if let Some(value) = task.await.unwrap() {
                assert_eq!(value, b"once");
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

async fn take_marking_leaves_its_marks(store: Arc<dyn EphemeralStore>) {
    let value = with_marks(&[b"{\"grant\":\"g1\"}", b"g1"], b"the code\nwith a line").unwrap();
    store.set_ex("tm:code", &value, LONG).await.unwrap();
    let marks = [("tm:used", LONG), ("tm:at", SHORT)];
    assert_eq!(
        take_marking(store.as_ref(), "tm:code", &marks)
            .await
            .unwrap(),
        Some(b"the code\nwith a line".to_vec())
    );
    assert_eq!(store.get("tm:code").await.unwrap(), None, "taken");
    assert_eq!(
        store.get("tm:used").await.unwrap(),
        Some(b"{\"grant\":\"g1\"}".to_vec())
    );
    assert_eq!(store.get("tm:at").await.unwrap(), Some(b"g1".to_vec()));
    assert_eq!(
        take_marking(store.as_ref(), "tm:code", &marks)
            .await
            .unwrap(),
        None,
        "single use"
    );

    // Nothing is marked for an absent value, nor for one stored without enough marks
    // (which is still taken).
    assert_eq!(
        take_marking(store.as_ref(), "tm:missing", &[("tm:m1", LONG)])
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get("tm:m1").await.unwrap(), None);
    store
        .set_ex("tm:plain", &with_marks(&[b"one"], b"").unwrap(), LONG)
        .await
        .unwrap();
    assert_eq!(
        take_marking(
            store.as_ref(),
            "tm:plain",
            &[("tm:p1", LONG), ("tm:p2", LONG)]
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(store.get("tm:plain").await.unwrap(), None);
    assert_eq!(store.get("tm:p1").await.unwrap(), None);
    assert_eq!(store.get("tm:p2").await.unwrap(), None);
    assert_eq!(
        take_marking(store.as_ref(), "tm:x", &[("tm:zero", Duration::ZERO)]).await,
        Err(EphemeralError::InvalidTtl)
    );

    // Each mark keeps its own time to live.
    past_short().await;
    assert_eq!(store.get("tm:at").await.unwrap(), None);
    assert!(store.get("tm:used").await.unwrap().is_some());

    // Of concurrent takes, exactly one gets the body; the marks are there once it has.
    store
        .set_ex("tm:race", &with_marks(&[b"m"], b"body").unwrap(), LONG)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let taken = take_marking(store.as_ref(), "tm:race", &[("tm:race-mark", LONG)])
                    .await
                    .unwrap();
                let mark = store.get("tm:race-mark").await.unwrap();
                (taken, mark)
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        let (taken, mark) = task.await.unwrap();
        if let Some(body) = taken {
            assert_eq!(body, b"body");
            assert_eq!(mark, Some(b"m".to_vec()));
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn set_nx_ex_is_a_replay_cache(store: Arc<dyn EphemeralStore>) {
    assert!(store.set_nx_ex("nx:id", b"first", SHORT).await.unwrap());
    assert!(!store.set_nx_ex("nx:id", b"replay", SHORT).await.unwrap());
    assert_eq!(store.get("nx:id").await.unwrap(), Some(b"first".to_vec()));
    past_short().await;
    assert!(
        store.set_nx_ex("nx:id", b"again", LONG).await.unwrap(),
        "free after expiry"
    );

    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.set_nx_ex("nx:race", &[i], LONG).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += usize::from(task.await.unwrap());
    }
    assert_eq!(stored, 1);
}

async fn counters_count_in_a_fixed_window(store: Arc<dyn EphemeralStore>) {
    let store_ref = store.as_ref();
    assert_eq!(count(store_ref, "rl:a", SHORT).await, 1);
    assert_eq!(count(store_ref, "rl:a", SHORT).await, 2);
    assert_eq!(
        count(store_ref, "rl:a", LONG).await,
        3,
        "later windows are ignored"
    );
    assert_eq!(count(store_ref, "rl:b", SHORT).await, 1, "keys count apart");
    past_short().await;
    assert_eq!(count(store_ref, "rl:a", SHORT).await, 1, "window expired");

    // Counting does not extend the window.
    count(store_ref, "rl:w", SHORT).await;
    tokio::time::sleep(SHORT / 2).await;
    assert_eq!(count(store_ref, "rl:w", SHORT).await, 2);
    tokio::time::sleep(SHORT / 2 + Duration::from_millis(250)).await;
    assert_eq!(count(store_ref, "rl:w", SHORT).await, 1);

    // Of 20 attempts at once against a limit of 8, exactly 8 pass; all 20 count.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .counted(&[limit("rl:race", LONG, 8)], Then::Nothing)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap() == Counted::Done(None));
    }
    assert_eq!(passed, 8);
    assert_eq!(store.get("rl:race").await.unwrap(), Some(b"20".to_vec()));

    store
        .set_ex("rl:text", b"not a number", LONG)
        .await
        .unwrap();
    assert!(matches!(
        store
            .counted(&[limit("rl:text", LONG, 5)], Then::Nothing)
            .await,
        Err(EphemeralError::Backend(_))
    ));
}

/// Limits, then a write or a take, in one step; past a limit only the counters change.
async fn counted_writes_and_takes_within_limits(store: &dyn EphemeralStore) {
    let entry = |key, value| Entry {
        key,
        value,
        ttl: LONG,
    };
    // A write: deletes, then sets, once both limits allow it.
    store.set_ex("cw:old", b"old", LONG).await.unwrap();
    let limits = [limit("cw:n1", LONG, 1), limit("cw:n2", LONG, 5)];
    let write = Then::Write {
        delete: &["cw:old", "cw:absent"],
        set: &[entry("cw:s", b"session"), entry("cw:c", b"challenge")],
    };
    assert_eq!(
        store.counted(&limits, write).await.unwrap(),
        Counted::Done(None)
    );
    assert_eq!(store.get("cw:old").await.unwrap(), None);
    assert_eq!(store.get("cw:s").await.unwrap(), Some(b"session".to_vec()));
    assert_eq!(
        store.get("cw:c").await.unwrap(),
        Some(b"challenge".to_vec())
    );

    // Past the first limit: nothing written or deleted, yet both counters counted.
    let write = Then::Write {
        delete: &["cw:s"],
        set: &[entry("cw:c", b"changed"), entry("cw:new", b"x")],
    };
    assert_eq!(
        store.counted(&limits, write).await.unwrap(),
        Counted::Limited
    );
    assert_eq!(store.get("cw:s").await.unwrap(), Some(b"session".to_vec()));
    assert_eq!(
        store.get("cw:c").await.unwrap(),
        Some(b"challenge".to_vec())
    );
    assert_eq!(store.get("cw:new").await.unwrap(), None);
    assert_eq!(store.get("cw:n1").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get("cw:n2").await.unwrap(), Some(b"2".to_vec()));

    // A take, allowed then refused: a refused take leaves the value.
    let within = [limit("ct:n", LONG, 1)];
    assert_eq!(
        store.counted(&within, Then::Take("cw:c")).await.unwrap(),
        Counted::Done(Some(b"challenge".to_vec()))
    );
    store.set_ex("cw:c", b"again", LONG).await.unwrap();
    assert_eq!(
        store.counted(&within, Then::Take("cw:c")).await.unwrap(),
        Counted::Limited
    );
    assert_eq!(store.get("cw:c").await.unwrap(), Some(b"again".to_vec()));
    assert_eq!(
        store.counted(&[], Then::Take("cw:c")).await.unwrap(),
        Counted::Done(Some(b"again".to_vec()))
    );
    assert_eq!(
        store.counted(&[], Then::Take("cw:c")).await.unwrap(),
        Counted::Done(None),
        "single use"
    );

    // A take with marks, refused then allowed.
    let marked = with_marks(&[b"used"], b"code").unwrap();
    store.set_ex("ct:code", &marked, LONG).await.unwrap();
    let marks = [("ct:used", LONG)];
    let take = Then::TakeMarking {
        key: "ct:code",
        marks: &marks,
    };
    assert_eq!(
        store.counted(&within, take).await.unwrap(),
        Counted::Limited
    );
    assert_eq!(store.get("ct:used").await.unwrap(), None);
    assert_eq!(
        store
            .counted(&[limit("ct:m", LONG, 1)], take)
            .await
            .unwrap(),
        Counted::Done(Some(b"code".to_vec()))
    );
    assert_eq!(store.get("ct:used").await.unwrap(), Some(b"used".to_vec()));
    assert_eq!(store.get("ct:code").await.unwrap(), None);

    // A maximum of zero refuses the first attempt; a zero time to live anywhere is
    // refused before anything changes.
    assert_eq!(
        store
            .counted(&[limit("cz:n", LONG, 0)], Then::Nothing)
            .await
            .unwrap(),
        Counted::Limited
    );
    let bad = Then::Write {
        delete: &["cw:s"],
        set: &[Entry {
            key: "cz:v",
            value: b"v",
            ttl: Duration::ZERO,
        }],
    };
    assert_eq!(
        store.counted(&[limit("cz:m", LONG, 5)], bad).await,
        Err(EphemeralError::InvalidTtl)
    );
    assert_eq!(store.get("cz:m").await.unwrap(), None);
    assert_eq!(store.get("cw:s").await.unwrap(), Some(b"session".to_vec()));

    // Without limits (Redis runs these without its script): a write deletes and sets at
    // once, a zero time to live still changes nothing, and nothing to do is done.
    store.set_ex("cu:old", b"old", LONG).await.unwrap();
    let write = Then::Write {
        delete: &["cu:old", "cu:absent"],
        set: &[entry("cu:a", b"a"), entry("cu:b", b"b")],
    };
    assert_eq!(
        store.counted(&[], write).await.unwrap(),
        Counted::Done(None)
    );
    assert_eq!(store.get("cu:old").await.unwrap(), None);
    assert_eq!(store.get("cu:a").await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(store.get("cu:b").await.unwrap(), Some(b"b".to_vec()));
    let bad = Then::Write {
        delete: &["cu:a"],
        set: &[Entry {
            key: "cu:c",
            value: b"c",
            ttl: Duration::ZERO,
        }],
    };
    assert_eq!(
        store.counted(&[], bad).await,
        Err(EphemeralError::InvalidTtl)
    );
    assert_eq!(store.get("cu:a").await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(store.get("cu:c").await.unwrap(), None);
    let only_sets = Then::Write {
        delete: &[],
        set: &[entry("cu:d", b"d")],
    };
    assert_eq!(
        store.counted(&[], only_sets).await.unwrap(),
        Counted::Done(None)
    );
    assert_eq!(store.get("cu:d").await.unwrap(), Some(b"d".to_vec()));
    assert_eq!(
        store.counted(&[], Then::Nothing).await.unwrap(),
        Counted::Done(None)
    );
}

/// Two stores over one backend with different prefixes (or two memory stores) do not
/// see each other's keys.
async fn stores_are_isolated(a: &dyn EphemeralStore, b: &dyn EphemeralStore) {
    a.set_ex("iso:k", b"a", LONG).await.unwrap();
    assert_eq!(b.get("iso:k").await.unwrap(), None);
    assert_eq!(b.take("iso:k").await.unwrap(), None);
    assert!(b.set_nx_ex("iso:k", b"b", LONG).await.unwrap());
    assert_eq!(count(b, "iso:n", LONG).await, 1);
    assert_eq!(count(a, "iso:n", LONG).await, 1);
    b.delete("iso:k").await.unwrap();
    assert_eq!(a.get("iso:k").await.unwrap(), Some(b"a".to_vec()));

    // Marks land in the taking store's own key space.
    let marked = with_marks(&[b"x"], b"").unwrap();
    a.set_ex("iso:mk", &marked, LONG).await.unwrap();
    let marks = [("iso:mark", LONG)];
    assert_eq!(take_marking(b, "iso:mk", &marks).await.unwrap(), None);
    assert_eq!(
        take_marking(a, "iso:mk", &marks).await.unwrap(),
        Some(Vec::new())
    );
    assert_eq!(b.get("iso:mark").await.unwrap(), None);
    assert_eq!(a.get("iso:mark").await.unwrap(), Some(b"x".to_vec()));
}

/// The whole contract on one store.
async fn contract(store: Arc<dyn EphemeralStore>) {
    set_get_delete(store.as_ref()).await;
    take_is_single_use(store.as_ref()).await;
    concurrent_takes_have_one_winner(Arc::clone(&store)).await;
    tokio::join!(
        ttl_expiry(store.as_ref()),
        set_nx_ex_is_a_replay_cache(Arc::clone(&store)),
        take_marking_leaves_its_marks(Arc::clone(&store)),
        counters_count_in_a_fixed_window(Arc::clone(&store)),
        counted_writes_and_takes_within_limits(store.as_ref()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_contract_memory() {
    contract(Arc::new(MemoryStore::new())).await;
    stores_are_isolated(&MemoryStore::new(), &MemoryStore::new()).await;
    let via_connect = connect(Some("memory://"), "unused:").await.unwrap();
    contract(via_connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_contract_redis() {
    let Some(store) = test_redis().await else {
        return;
    };
    contract(Arc::new(store)).await;

    let url = std::env::var(REDIS_URL_VAR).unwrap();
    let via_connect = connect(Some(&url), &test_prefix()).await.unwrap();
    contract(via_connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_redis_prefixes_isolate_keys() {
    let prefix = test_prefix();
    let Some(a) = test_redis_with_prefix(&prefix).await else {
        return;
    };
    let b = test_redis().await.unwrap();
    stores_are_isolated(&a, &b).await;

    // The key really lives under the prefix.
    let bare = test_redis_with_prefix("").await.unwrap();
    a.set_ex("raw", b"value", LONG).await.unwrap();
    assert_eq!(
        bare.get(&format!("{prefix}raw")).await.unwrap(),
        Some(b"value".to_vec())
    );
    assert_eq!(bare.get("raw").await.unwrap(), None);
    bare.delete(&format!("{prefix}raw")).await.unwrap();
    for key in ["iso:k", "iso:n"] {
        bare.delete(&format!("{prefix}{key}")).await.unwrap();
    }
}

#[tokio::test]
async fn ephemeral_unreachable_redis_is_unavailable() {
    let started = std::time::Instant::now();
    let result = RedisStore::connect("redis://127.0.0.1:1", "kgtest:").await;
    assert!(
        matches!(result, Err(EphemeralError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(
        connect(Some("memcache://127.0.0.1"), "kgtest:").await,
        Err(EphemeralError::InvalidUrl(_))
    ));
}

/// After a Redis restart or a fail-over its script cache is empty: the scripts are loaded
/// again on their next call, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_redis_scripts_survive_an_emptied_script_cache() {
    let Some(store) = test_redis().await else {
        return;
    };
    let marked = with_marks(&[b"mark"], b"body").unwrap();
    assert_eq!(count(&store, "flush:n", LONG).await, 1);
    store.set_ex("flush:v", &marked, LONG).await.unwrap();
    let marks = [("flush:m", LONG)];
    assert!(take_marking(&store, "flush:v", &marks)
        .await
        .unwrap()
        .is_some());

    let url = std::env::var(REDIS_URL_VAR).unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    assert_eq!(count(&store, "flush:n", LONG).await, 2);
    store.set_ex("flush:v", &marked, LONG).await.unwrap();
    assert_eq!(
        take_marking(&store, "flush:v", &marks).await.unwrap(),
        Some(b"body".to_vec())
    );
    assert_eq!(store.get("flush:m").await.unwrap(), Some(b"mark".to_vec()));
}

/// An HTTP worker's Redis store opens a connection of its own on the worker's runtime at
/// its first use, and sees the entries every other store of the deployment sees; the
/// in-process store has no per-worker form (its workers must share the one map).
#[test]
fn ephemeral_worker_stores_share_the_entries() {
    assert!(MemoryStore::new().for_worker().is_none());
    let prefix = test_prefix();
    let start_up = tokio::runtime::Runtime::new().unwrap();
    let Some(store) = start_up.block_on(test_redis_with_prefix(&prefix)) else {
        return;
    };
    let worker = store
        .for_worker()
        .expect("a Redis store has a per-worker form");
    // The start-up runtime ends, and with it the connection it opened: a worker store that
    // used that connection would fail from here on.
    drop(store);
    drop(start_up);
    // As actix runs a worker: a thread with a single-threaded runtime of its own.
    std::thread::spawn(move || {
        let own = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        own.block_on(async {
            worker
                .set_ex("worker:k", b"from the worker", LONG)
                .await
                .unwrap();
            contract(Arc::clone(&worker)).await;
        });
    })
    .join()
    .unwrap();
    let other = tokio::runtime::Runtime::new().unwrap();
    other.block_on(async {
        let store = test_redis_with_prefix(&prefix).await.unwrap();
        assert_eq!(
            store.take("worker:k").await.unwrap(),
            Some(b"from the worker".to_vec())
        );
    });
}
