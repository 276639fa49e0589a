"""An independent device-flow client (Authlib) for keygate's tests: RFC 8628 from the
device's side.

Line protocol on stdin/stdout, one JSON object per line:
  in:  {"issuer", "client_id", "scope"}
  out: {"user_code", "verification_uri", "verification_uri_complete", "interval"}
  ...  polls the token endpoint until the member decides (bounded: 60 s)
  out: {"claims", "userinfo", "token_type", "polls", "pending", "slow_down"}  or {"error"} (exit 1)

Discovery, the token polling (Authlib's OAuth2Session.fetch_token with the device_code
grant, its OAuthError for authorization_pending / slow_down), ID-token validation against
the JWKS named by discovery (iss, aud, exp, iat, at_hash) and userinfo are Authlib's and
requests' own code; the device authorization request is a plain form POST (Authlib has no
helper for it), checked field by field against RFC 8628 §3.2.
"""
import time

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from lineproto import discover, receive, run, send

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def main():
    cfg = receive()
    meta = discover(cfg["issuer"])
    if GRANT not in meta["grant_types_supported"]:
        raise ValueError("discovery does not offer the device grant")
    r = requests.post(
        meta["device_authorization_endpoint"],
        data={"client_id": cfg["client_id"], "scope": cfg["scope"]},
        timeout=10,
    )
    r.raise_for_status()
    grant = r.json()
    for field in ("device_code", "user_code", "verification_uri", "expires_in"):
        if field not in grant:
            raise ValueError("the device authorization response lacks " + field)
    interval = int(grant.get("interval", 5))
    send(
        {
            "user_code": grant["user_code"],
            "verification_uri": grant["verification_uri"],
            "verification_uri_complete": grant.get("verification_uri_complete"),
            "interval": interval,
        }
    )

    session = OAuth2Session(
        cfg["client_id"], scope=cfg["scope"], token_endpoint_auth_method="none"
    )
    polls = pending = slow = 0
    deadline = time.monotonic() + 60
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("no decision within 60 s")
        polls += 1
        try:
            token = session.fetch_token(
                meta["token_endpoint"],
                grant_type=GRANT,
                device_code=grant["device_code"],
            )
            break
        except OAuthError as e:
            if e.error == "authorization_pending":
                pending += 1
            elif e.error == "slow_down":
                slow += 1
                interval += 5
            else:
                raise
        time.sleep(interval)

    jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={
            "client_id": cfg["client_id"],
            "access_token": token["access_token"],
        },
    )
    claims.validate(leeway=60)
    userinfo = session.get(meta["userinfo_endpoint"], timeout=10)
    userinfo.raise_for_status()
    send(
        {
            "claims": dict(claims),
            "userinfo": userinfo.json(),
            "token_type": token["token_type"],
            "polls": polls,
            "pending": pending,
            "slow_down": slow,
        }
    )


if __name__ == "__main__":
    run(main)
