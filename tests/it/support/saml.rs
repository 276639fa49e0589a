//! SAML test support: a running keygate with registered service providers and an enrolled
//! admin, RSA key pairs for the SPs, and pysaml2 (`tests/it/sp/pysaml2_sp.py`) as the
//! independent service provider that builds requests and validates responses.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::app::{Client, Reply};
use crate::support::oidc::{provider_with_config, Provider};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sp/pysaml2_sp.py");

/// The SP bound to the admin's workspace (`acme`).
pub const SP: &str = "https://sp.example/metadata";
pub const ACS: &str = "https://sp.example/acs";
/// An SP that must sign its requests.
pub const SIGNED_SP: &str = "https://signed.example/metadata";
pub const SIGNED_ACS: &str = "https://signed.example/acs";
/// An SP bound to a workspace the admin is not in.
pub const OTHER_SP: &str = "https://other-sp.example/metadata";
pub const OTHER_ACS: &str = "https://other-sp.example/acs";
/// An SP that accepts any sign-in (`unspecified` context), bound to no workspace.
pub const PLAIN_SP: &str = "https://plain.example/metadata";
pub const PLAIN_ACS: &str = "https://plain.example/acs";
/// An SP that wants encrypted assertions, persistent NameIDs and allows IdP-initiated.
pub const ENC_SP: &str = "https://enc.example/metadata";
pub const ENC_ACS: &str = "https://enc.example/acs";

/// An RSA key pair with a self-signed certificate, as PEM files.
pub struct KeyPair {
    pub key_file: PathBuf,
    pub cert_file: PathBuf,
    pub cert_pem: String,
    _dir: tempfile::TempDir,
}

impl KeyPair {
    pub fn new(cn: &str) -> KeyPair {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = x509::X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&pkey).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&pkey, MessageDigest::sha256()).unwrap();
        let cert_pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sp.key");
        let cert_file = dir.path().join("sp.crt");
        std::fs::write(&key_file, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(&cert_file, &cert_pem).unwrap();
        KeyPair {
            key_file,
            cert_file,
            cert_pem,
            _dir: dir,
        }
    }
}

/// A keygate with four SPs, its metadata on disk, and the SPs' keys.
pub struct Idp {
    pub p: Provider,
    pub signing: KeyPair,
    pub encryption: KeyPair,
    pub metadata_file: tempfile::NamedTempFile,
    pub entity_id: String,
}

pub fn sp_config(signing: &KeyPair, encryption: &KeyPair) -> String {
    format!(
        r#"
[[saml.service_providers]]
entity_id = "{SP}"
name = "Vendor SSO"
acs_urls = ["{ACS}"]
workspace = "acme"
sign_response = true

[[saml.service_providers]]
entity_id = "{SIGNED_SP}"
acs_urls = ["{SIGNED_ACS}"]
require_signed_requests = true
signing_certs = ["""{cert}"""]
workspace = "acme"

[[saml.service_providers]]
entity_id = "{OTHER_SP}"
acs_urls = ["{OTHER_ACS}"]
workspace = "other"

[[saml.service_providers]]
entity_id = "{ENC_SP}"
acs_urls = ["{ENC_ACS}"]
name_id_format = "persistent"
idp_initiated = true
sign_response = false
encryption_cert = """{enc}"""
authn_context = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

[[saml.service_providers]]
entity_id = "{PLAIN_SP}"
acs_urls = ["{PLAIN_ACS}"]
authn_context = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
"#,
        cert = signing.cert_pem,
        enc = encryption.cert_pem,
    )
}

pub async fn idp() -> Idp {
    idp_of(false).await
}

/// [`idp`] whose admin enrolled a key keygate cannot attest (policy allows it).
pub async fn unattested_idp() -> Idp {
    idp_of(true).await
}

async fn idp_of(unattested: bool) -> Idp {
    let signing = KeyPair::new("signed.example");
    let encryption = KeyPair::new("enc.example");
    let config = sp_config(&signing, &encryption);
    let p = if unattested {
        crate::support::oidc::unattested_provider_with_config(&config).await
    } else {
        provider_with_config(&config).await
    };
    let metadata = p.app.client().get("/saml/metadata").await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let metadata_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(metadata_file.path(), &metadata.body).unwrap();
    let entity_id = format!("{}/saml/metadata", p.app.base);
    Idp {
        p,
        signing,
        encryption,
        metadata_file,
        entity_id,
    }
}

/// Whether pysaml2 and xmlsec1 are here (CI must have them).
pub fn pysaml2_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import saml2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("xmlsec1")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    !crate::support::skip::unless_available(ok, "pysaml2 and xmlsec1")
}

impl Idp {
    /// The arguments pysaml2 needs to act as the SP `entity_id`.
    pub fn sp_args(&self, entity_id: &str) -> Value {
        let acs = match entity_id {
            SIGNED_SP => SIGNED_ACS,
            OTHER_SP => OTHER_ACS,
            ENC_SP => ENC_ACS,
            PLAIN_SP => PLAIN_ACS,
            _ => ACS,
        };
        let mut args = json!({
            "entity_id": entity_id,
            "acs_urls": [acs],
            "idp_metadata_file": self.metadata_file.path(),
            "idp_entity_id": self.entity_id,
            "key_file": self.signing.key_file,
            "cert_file": self.signing.cert_file,
        });
        if entity_id == ENC_SP {
            args["encryption_key_file"] = json!(self.encryption.key_file);
            args["encryption_cert_file"] = json!(self.encryption.cert_file);
            args["allow_unsolicited"] = json!(true);
        }
        args
    }
}

/// Runs one pysaml2 command (blocking pool: it may take a moment).
pub async fn pysaml2(command: &str, mut args: Value) -> Value {
    args["command"] = json!(command);
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(args.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().expect("pysaml2 exits")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "pysaml2 said: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A request built by pysaml2, sent by `browser` to keygate the way the SP's page would.
pub async fn send(idp: &Idp, browser: &mut Client, request: &Value) -> Reply {
    let url = request["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{request}"));
    let path = url
        .strip_prefix(&idp.p.app.base)
        .expect("keygate's SSO URL");
    match request.get("form") {
        Some(form) => {
            let fields: Vec<(&str, &str)> = form
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            browser.post_form(path, &fields).await
        }
        None => browser.get(path).await,
    }
}

/// The hidden fields of the response page: (action, SAMLResponse, RelayState).
pub fn posted(reply: &Reply) -> (String, String, Option<String>) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let field = |name: &str| -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = reply.body.find(&marker)? + marker.len();
        let end = reply.body[start..].find('"')? + start;
        Some(html_unescape(&reply.body[start..end]))
    };
    let action = {
        let form = reply
            .body
            .find("id=\"saml-post\"")
            .expect("a response form");
        let tag = reply.body[..form].rfind("<form").expect("the form tag");
        let marker = "action=\"";
        let start = reply.body[tag..].find(marker).unwrap() + tag + marker.len();
        let end = reply.body[start..].find('"').unwrap() + start;
        html_unescape(&reply.body[start..end])
    };
    (
        action,
        field("SAMLResponse").expect("SAMLResponse"),
        field("RelayState"),
    )
}

/// Undoes HTML escaping, in one pass (named and numeric references).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';').filter(|e| *e <= 8) else {
            out.push('&');
            rest = after;
            continue;
        };
        let entity = &after[..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|n| {
                match n.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                }
                .and_then(char::from_u32)
            }),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The decoded response XML.
pub fn decoded(saml_response: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(saml_response)
            .expect("base64"),
    )
    .expect("utf-8")
}

/// `xmlsec1 --verify` of the element with `ID` named by `id_attr` (e.g. the response or
/// the assertion), trusting only keygate's signing certificate.
pub fn xmlsec1_verifies(xml: &str, cert_pem: &str, id_attr: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.xml");
    let cert = dir.path().join("idp.pem");
    std::fs::write(&doc, xml).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    let out = Command::new("xmlsec1")
        .args(["--verify", "--trusted-pem"])
        .arg(&cert)
        .args(["--id-attr:ID", id_attr])
        .arg(&doc)
        .output()
        .expect("run xmlsec1");
    out.status.success()
}

/// Whether `xmlsec1` verifies keygate's signed metadata with `cert_pem`.
pub fn metadata_verifies(metadata: &str, cert_pem: &str) -> bool {
    xmlsec1_verifies(
        metadata,
        cert_pem,
        "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor",
    )
}

/// pysaml2 builds a request as the SP `args` describe and `browser` sends it to keygate:
/// (the request, keygate's reply).
pub async fn start(idp: &Idp, browser: &mut Client, args: &Value) -> (Value, Reply) {
    let request = pysaml2("request", args.clone()).await;
    let reply = send(idp, browser, &request).await;
    (request, reply)
}

/// pysaml2, as the SP `args` describe, validates `saml_response` (the answer to `request`,
/// or unsolicited).
pub async fn validate(args: &Value, saml_response: &str, request: Option<&Value>) -> Value {
    let mut args = args.clone();
    args["saml_response"] = json!(saml_response);
    if let Some(r) = request {
        args["outstanding"] = json!([r["request_id"]]);
    }
    pysaml2("validate", args).await
}
