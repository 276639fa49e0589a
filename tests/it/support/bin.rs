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

/// [`run`] for a command that might not end by itself (e.g. `serve` that should refuse to
/// start): killed after `limit`, which counts as a failure with "(killed after …)" added to
/// its stderr.
pub fn run_bounded(cmd: &mut Command, limit: std::time::Duration) -> (bool, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keygate");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let mut ended = false;
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait for keygate").is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = !ended;
    if killed {
        let _ = child.kill();
    }
    let status = child.wait().ok().filter(|_| !killed);
    let mut stderr = err.join().unwrap_or_default();
    if killed {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    (
        status.is_some_and(|s| s.success()),
        out.join().unwrap_or_default(),
        stderr,
    )
}
