//! One guard for tests that cannot run everywhere, so that a green local run says what it
//! did not run. Two kinds:
//! - [`unless_available`]: the test needs a tool this machine may lack (Chromium, a Python
//!   package, `redis-server`). Under `CI=true` a missing tool fails the test; elsewhere the
//!   test is skipped.
//! - [`in_other_pass`]: the test belongs to the other backend pass (SQLite-only checks, or
//!   replicas that need PostgreSQL + Redis); `scripts/test` runs both.
//!
//! Each skip is printed and, when `KEYGATE_TEST_SKIPPED` names a file, appended to it as
//! `kind<TAB>test<TAB>why`; `scripts/test` lists them after each pass.

use std::io::Write;

fn record(kind: &str, why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed)")
        .to_string();
    eprintln!("note: {test} skipped: {why}");
    if let Ok(path) = std::env::var("KEYGATE_TEST_SKIPPED") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{kind}\t{test}\t{why}");
        }
    }
}

/// `true` when the calling test must stop because `what` is not available here (and it is
/// not CI, where that is a failure).
#[track_caller]
pub fn unless_available(available: bool, what: &str) -> bool {
    if available {
        return false;
    }
    if crate::support::db::in_ci() {
        panic!("{what} is missing, and CI=true needs it: run scripts/setup");
    }
    record("missing", &format!("{what} is missing (run scripts/setup)"));
    true
}

/// Records that the calling test is left to the other backend pass, for `why`.
pub fn in_other_pass(why: &str) {
    record("other-pass", why);
}
