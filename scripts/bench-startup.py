#!/usr/bin/env python3
"""Cold start to ready and idle memory of `keygate dev` (SPEC §9): starts the given binary on
a new SQLite directory, polls /readyz every 5 ms, reads VmRSS after 5 s idle, stops it with
SIGTERM, then starts it twice more on the same (now existing) database.

    cargo build --release && python3 scripts/bench-startup.py target/release/keygate
"""
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def start(binary, data_dir, port):
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [binary, "dev", "--data-dir", data_dir, "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(2000):  # at most ≈ 10 s
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, time.monotonic() - t0
        except OSError:
            time.sleep(0.005)
    proc.kill()
    raise SystemExit("keygate did not become ready within 10 s")


def rss_mib(proc):
    with open(f"/proc/{proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/keygate"
    data_dir = tempfile.mkdtemp(prefix="keygate-startup-")
    try:
        runs = (
            ("first start (empty database: migrations, signing keys)", 18481),
            ("restart (existing database)", 18482),
            ("restart again", 18483),
        )
        for label, port in runs:
            proc, ready = start(binary, data_dir, port)
            time.sleep(5)
            print(f"{label}: ready in {ready * 1000:.0f} ms; idle RSS after 5 s: {rss_mib(proc):.1f} MiB")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
