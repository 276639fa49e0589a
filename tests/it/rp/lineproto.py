"""What the independent clients in this folder share: the line protocol with the Rust test
(one JSON object per line each way on stdin/stdout), discovery with its issuer check, and
the error report the Rust test shows."""
import json
import sys

import requests


def send(obj):
    print(json.dumps(obj), flush=True)


def receive():
    line = sys.stdin.readline()
    if not line:
        raise EOFError("no input")
    return json.loads(line)


def discover(issuer):
    """The provider's discovery document, refused when it names another issuer."""
    meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
    if meta["issuer"] != issuer:
        raise ValueError("discovery names another issuer: " + meta["issuer"])
    return meta


def run(main):
    """Runs `main`, reporting any failure to the Rust test as {"error"} with exit status 1."""
    try:
        main()
    except Exception as e:  # report to the Rust test, which shows it
        send({"error": "%s: %s" % (type(e).__name__, e)})
        sys.exit(1)
