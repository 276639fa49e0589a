#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (docs/fuzzing.md).

Seeds come from the real YubiKey registrations and assertions in tests/fixtures, from the
README's config blocks, and from AuthnRequests and SP metadata made by pysaml2 (the
independent SP the tests use; scripts/setup installs it). The SAML requests are signed by a
throwaway SP key made here: its certificate goes to fuzz/keys/saml-sp-signing.pem, the key
itself is deleted. Run from anywhere: python3 fuzz/seeds.py
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"
# 2026-11-25T12:00:00Z: the NOW of every target.
INSTANT = "2026-11-25T12:00:00Z"
ISSUER = "https://id.example.com"
AUDIENCE = "vendor-portal"
NOW = 1_764_072_000
IDP_SSO = "https://idp.example/saml/sso"


def b64u(s):
    s = s.rstrip("=")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u_enc(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def cbor_item(b, i):
    """(end offset, value) of the CBOR item at i; enough of CBOR for attestation objects."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        arg = info
    else:
        n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        arg = int.from_bytes(b[i:i + n], "big")
        i += n
    if major in (0, 1, 7):
        return i, arg
    if major == 2:
        return i + arg, bytes(b[i:i + arg])
    if major == 3:
        return i + arg, bytes(b[i:i + arg]).decode()
    if major == 4:
        out = []
        for _ in range(arg):
            i, v = cbor_item(b, i)
            out.append(v)
        return i, out
    if major == 5:
        out = {}
        for _ in range(arg):
            i, k = cbor_item(b, i)
            i, v = cbor_item(b, i)
            out[k] = v
        return i, out
    raise ValueError("unsupported CBOR major type %d" % major)


def registrations():
    return [(p, json.loads(p.read_text())) for p in sorted((FIXTURES / "yubikey" / "registration").glob("*.json"))]


def pem_ders(text):
    return [base64.b64decode("".join(m.group(1).split()))
            for m in re.finditer(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)]


def webauthn():
    for i, (p, v) in enumerate(registrations()):
        stem = p.stem
        resp = v["credential"]["response"]
        obj = b64u(resp["attestationObject"])
        _, decoded = cbor_item(obj, 0)
        auth_data = bytes(decoded["authData"])
        cose = b64u(v["expected"]["credential_public_key_cose_b64url"])
        write("webauthn_cbor", stem + ".attestation-object", obj)
        write("webauthn_cbor", stem + ".auth-data", auth_data)
        write("webauthn_cbor", stem + ".cose-key", cose)
        write("client_data", stem + ".json", b64u(resp["clientDataJSON"]))
        # attestation: the mode byte names the fixture (same order as the target's list).
        write("attestation", stem + ".registration", bytes([i]) + obj)
        x5c = decoded["attStmt"].get("x5c", [])
        chain = b"".join(len(c).to_bytes(2, "big") + bytes(c) for c in x5c)
        write("attestation", stem + ".x5c", b"\x80" + chain)
    for p in sorted((FIXTURES / "yubikey" / "authentication").glob("*.json")):
        v = json.loads(p.read_text())
        resp = v["credential"]["response"]
        write("webauthn_cbor", p.stem + ".auth-data", b64u(resp["authenticatorData"]))
        write("client_data", p.stem + ".json", b64u(resp["clientDataJSON"]))
    leaf = pem_ders((FIXTURES / "yubikey" / "certs" / "yubikey-5ci-fw5.7.1-enterprise-attestation-leaf.pem").read_text())[0]
    inter = pem_ders((FIXTURES / "intermediates" / "yubico-intermediate.pem").read_text())
    write("attestation", "fw5.7.1-enterprise-leaf.x5c", b"\x80" + len(leaf).to_bytes(2, "big") + leaf)
    # An intermediate presented as the leaf, with a second one after it.
    write("attestation", "yubico-intermediates.x5c",
          b"\x80" + b"".join(len(c).to_bytes(2, "big") + c for c in inter[:2]))


def jwt():
    def pair(header, claims):
        return (json.dumps(header, separators=(",", ":")) + "\n" + json.dumps(claims, separators=(",", ":"))).encode()
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600, "iat": NOW,
              "scope": "openid email", "client_id": AUDIENCE, "jti": "j1"}
    write("jwt", "signed-access-token", pair({"alg": "ES256", "kid": "KID", "typ": "at+jwt"}, claims))
    write("jwt", "signed-aud-array-nbf", pair({"alg": "ES256", "kid": "KID"},
                                              dict(claims, aud=["x", AUDIENCE], nbf=NOW - 5, exp=NOW + 0.5)))
    write("jwt", "signed-crit", pair({"alg": "ES256", "kid": "KID", "crit": ["exp"]}, claims))
    write("jwt", "signed-typ-media-type", pair({"alg": "ES256", "kid": "KID", "typ": "application/AT+JWT"}, claims))
    # A compact token as received, signed by another P-256 key (the target's key is its own).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    key = ec.generate_private_key(ec.SECP256R1())
    h = b64u_enc(json.dumps({"alg": "ES256", "kid": "k1", "typ": "JWT"}).encode())
    c = b64u_enc(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256())))
    write("jwt", "compact-es256", f"{h}.{c}.{b64u_enc(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
    none = b64u_enc(b'{"alg":"none","kid":"k"}')
    write("jwt", "compact-alg-none", f"{none}.{c}.")


def form():
    write("form", "token-request",
          "grant_type=authorization_code&code=kgc_x&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier=v+w")
    write("form", "authorize-query",
          "response_type=code&client_id=vendor-portal&scope=openid+email&state=%C3%A9t%C3%A9&nonce=n&"
          "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
    write("form", "not-utf8-escape", "state=%FF%FE&a=&&b")
    write("form", "saml-relay", "SAMLRequest=fZJBb9swDIX%2F&RelayState=%2Fapp%3Fx%3D1%26y%3D2")


def config():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    for i, block in enumerate(blocks):
        write("config", "readme-block-%02d.toml" % i, block)
    write("config", "minimal.toml", '[database]\nurl = "sqlite://k.db"\n\n[organisation]\nname = "Org"\n')
    write("config", "inline-secret.toml", '[database]\nurl = "postgres://kg:secret@db/kg"\n')


def saml():
    tmp = Path(tempfile.mkdtemp())
    try:
        key, crt = tmp / "sp.key", tmp / "sp.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(crt), "-days", "36500", "-subj", "/CN=keygate fuzz SP"],
                       check=True, capture_output=True)
        (FUZZ / "keys").mkdir(exist_ok=True)
        shutil.copy(crt, FUZZ / "keys" / "saml-sp-signing.pem")
        cert_b64 = "".join(l for l in crt.read_text().splitlines() if not l.startswith("-----"))
        idp_md = tmp / "idp.xml"
        idp_md.write_text(
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            'entityID="https://idp.example/saml/metadata"><md:IDPSSODescriptor '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/>'
            f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{IDP_SSO}"/>'
            '</md:IDPSSODescriptor></md:EntityDescriptor>')
        sys.path.insert(0, str(ROOT / "tests" / "it" / "sp"))
        import saml2.entity
        saml2.entity.instant = lambda *a, **k: INSTANT
        import pysaml2_sp
        base = {"entity_id": "https://sp.example/metadata", "acs_urls": ["https://sp.example/acs"],
                "idp_metadata_file": str(idp_md), "idp_entity_id": "https://idp.example/saml/metadata",
                "key_file": str(key), "cert_file": str(crt), "relay_state": "/app?x=1"}
        for binding in ("redirect", "post"):
            for signed in (False, True):
                args = dict(base, binding=binding, sign=signed, force_authn=signed,
                            contexts=["https://refeds.org/profile/mfa"] if signed else None,
                            comparison="minimum")
                out = pysaml2_sp.request(args)
                name = "pysaml2-%s" % ("signed" if signed else "unsigned")
                if binding == "redirect":
                    query = urlsplit(out["url"]).query
                    write("saml_redirect", name + ".query", query)
                    for part in query.split("&"):
                        if part.startswith("SAMLRequest="):
                            from urllib.parse import unquote
                            xml = zlib.decompress(base64.b64decode(unquote(part[12:])), -15)
                            write("saml_redirect", name + ".xml", xml)
                else:
                    write("saml_post", name + ".xml", out["xml"])
                    write("saml_post", name + ".b64", out["form"]["SAMLRequest"])
        write("saml_post", "doctype.xml", '<!DOCTYPE x [<!ENTITY e "&e;&e;">]><x>&e;</x>')
        from saml2.config import SPConfig
        from saml2.metadata import create_metadata_string
        conf = SPConfig()
        conf.load({"entityid": "https://sp.example/metadata", "key_file": str(key), "cert_file": str(crt),
                   "xmlsec_binary": shutil.which("xmlsec1"),
                   "service": {"sp": {"authn_requests_signed": True, "endpoints": {
                       "assertion_consumer_service": [
                           ("https://sp.example/acs", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
                           ("https://sp.example/acs2", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")]}}}})
        md = create_metadata_string(None, config=conf, valid=24 * 365 * 100)
        write("saml_metadata", "pysaml2-sp.xml", md)
        write("saml_metadata", "hand-written-sp.xml",
              '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
              'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://sp.example/metadata">'
              '<md:SPSSODescriptor AuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
              f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}'
              '</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
              '<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>'
              '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
              'Location="https://sp.example/acs" index="1" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>')
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    webauthn()
    jwt()
    form()
    config()
    saml()
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print("%-16s %2d seeds, %6d bytes" % (d.name, len(files), sum(f.stat().st_size for f in files)))
