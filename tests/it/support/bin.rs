//! Running the real `keygate` binary from tests.

use std::process::{Command, Output, Stdio};

/// `keygate` with no `KEYGATE…` variables inherited: only what the test sets.
pub fn keygate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYGATE") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs it to the end: (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run keygate");
    if !status.success() && stderr.is_empty() {
        eprintln!(
            "keygate exited with {status} and no message; stdout: {}",
            String::from_utf8_lossy(&stdout)
        );
    }
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
