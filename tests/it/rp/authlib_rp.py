"""An independent OpenID Connect relying party (Authlib) for keygate's tests.

Line protocol on stdin/stdout, one JSON object per line:
  in:  {"issuer", "client_id", "client_secret" or "private_key" (PEM), "redirect_uri", "scope"}
  out: {"authorization_url", "state"}            the browser is sent there
  in:  {"callback"}                              where the browser was sent back to
  out: {"claims", "userinfo", "token_type", "scope"}  or {"error"} (exit status 1)

Discovery, the authorization URL (PKCE S256, nonce), the code exchange
(client_secret_basic, or private_key_jwt signed RS256 with "private_key"), ID-token validation against the JWKS named by discovery (iss, aud,
exp, iat, nonce, at_hash) and userinfo are all Authlib's and requests' own code.
"""
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from lineproto import discover, receive, run, send


def main():
    cfg = receive()
    meta = discover(cfg["issuer"])
    key_jwt = "private_key" in cfg
    if key_jwt and "private_key_jwt" not in meta["token_endpoint_auth_methods_supported"]:
        raise ValueError("discovery does not offer private_key_jwt")
    session = OAuth2Session(
        cfg["client_id"],
        cfg["private_key"] if key_jwt else cfg["client_secret"],
        scope=cfg["scope"],
        redirect_uri=cfg["redirect_uri"],
        code_challenge_method="S256",
        token_endpoint_auth_method="private_key_jwt" if key_jwt else "client_secret_basic",
    )
    if key_jwt:
        session.register_client_auth_method(PrivateKeyJWT(meta["token_endpoint"]))
    verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    send({"authorization_url": url, "state": state})

    callback = receive()["callback"]
    query = parse_qs(urlparse(callback).query)
    # RFC 9207: the authorization response names its issuer.
    if query.get("iss") != [meta["issuer"]]:
        raise ValueError("the authorization response names another issuer")
    token = session.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={
            "nonce": nonce,
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
            "scope": token.get("scope"),
        }
    )


if __name__ == "__main__":
    run(main)
