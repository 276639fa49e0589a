"""pysaml2 as an independent SAML service provider for keygate's tests.

One JSON object on stdin, one on stdout. Commands:
  request:  build an AuthnRequest for keygate (HTTP-Redirect or HTTP-POST, signed or not)
  validate: check a SAMLResponse as a real SP does (signature against keygate's metadata,
            audience, destination, conditions, InResponseTo, decryption) and report what
            it says
pysaml2 calls the xmlsec1 program for every signature and decryption.
"""
import base64
import json
import shutil
import sys
import traceback

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.samlp import RequestedAuthnContext
from saml2.saml import AuthnContextClassRef
from saml2.xmldsig import SIG_RSA_SHA256, DIGEST_SHA256


def client(args):
    sp = {
        "endpoints": {
            "assertion_consumer_service": [(url, BINDING_HTTP_POST) for url in args["acs_urls"]],
        },
        "allow_unsolicited": args.get("allow_unsolicited", False),
        "authn_requests_signed": args.get("sign", False),
        "want_response_signed": args.get("want_response_signed", False),
        "want_assertions_signed": True,
        "want_assertions_or_response_signed": True,
        "name_id_format_allow_create": True,
    }
    conf = {
        "entityid": args["entity_id"],
        "service": {"sp": sp},
        "metadata": {"local": [args["idp_metadata_file"]]},
        "xmlsec_binary": shutil.which("xmlsec1"),
        "allow_unknown_attributes": True,
        "accepted_time_diff": 60,
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
    }
    if args.get("key_file"):
        conf["key_file"] = args["key_file"]
        conf["cert_file"] = args["cert_file"]
    if args.get("encryption_key_file"):
        conf["encryption_keypairs"] = [
            {"key_file": args["encryption_key_file"], "cert_file": args["encryption_cert_file"]}
        ]
    config = SPConfig()
    config.load(conf)
    return Saml2Client(config)


def request(args):
    c = client(args)
    idp = args["idp_entity_id"]
    binding = BINDING_HTTP_REDIRECT if args["binding"] == "redirect" else BINDING_HTTP_POST
    destination = c.metadata.single_sign_on_service(idp, binding)[0]["location"]
    kwargs = {}
    if args.get("contexts"):
        kwargs["requested_authn_context"] = RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=r) for r in args["contexts"]],
            comparison=args.get("comparison", "exact"),
        )
    if args.get("force_authn"):
        kwargs["force_authn"] = "true"
    if args.get("name_id_format"):
        kwargs["nameid_format"] = args["name_id_format"]
    sign_xml = args.get("sign", False) and binding == BINDING_HTTP_POST
    req_id, req = c.create_authn_request(
        destination,
        binding=BINDING_HTTP_POST,
        sign=sign_xml,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **kwargs,
    )
    relay = args.get("relay_state")
    if binding == BINDING_HTTP_REDIRECT:
        info = c.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(req),
            destination,
            relay_state=relay,
            sign=args.get("sign", False),
            sigalg=SIG_RSA_SHA256 if args.get("sign") else None,
        )
        location = dict(info["headers"])["Location"]
        return {"request_id": req_id, "url": location}
    form = {"SAMLRequest": base64.b64encode(str(req).encode()).decode()}
    if relay:
        form["RelayState"] = relay
    return {"request_id": req_id, "url": destination, "form": form, "xml": str(req)}


def validate(args):
    c = client(args)
    outstanding = {rid: "/" for rid in args.get("outstanding", [])}
    try:
        resp = c.parse_authn_request_response(
            args["saml_response"], BINDING_HTTP_POST, outstanding=outstanding
        )
    except Exception as e:  # the test asserts on the refusal's kind
        return {"error": type(e).__name__, "message": str(e)[:500]}
    if resp is None:
        return {"error": "NoResponse", "message": "pysaml2 returned nothing"}
    contexts = [a[0] for a in resp.authn_info()]
    return {
        "issuer": resp.issuer(),
        "in_response_to": resp.in_response_to,
        "name_id": resp.name_id.text,
        "name_id_format": resp.name_id.format,
        "attributes": resp.ava,
        "authn_contexts": contexts,
        "session_index": resp.session_index() if hasattr(resp, "session_index") else None,
        "assertion_id": resp.assertion.id,
        "signed_response": resp.response.signature is not None,
    }


def main():
    args = json.loads(sys.stdin.read())
    try:
        out = {"request": request, "validate": validate}[args["command"]](args)
    except Exception as e:
        out = {"error": type(e).__name__, "message": str(e)[:500], "trace": traceback.format_exc()[-2000:]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
