//! Smoke test of the DevTools driver: a page on `http://localhost:<port>`, a
//! CTAP2 USB virtual authenticator, one registration with `attestation:
//! "direct"` decoded and checked against what `support::browser` documents,
//! and one assertion.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ciborium::Value as Cbor;
use serde_json::json;

use crate::support::browser::{self, Browser, VirtualAuthenticator};

const AAGUID_OID: &str = "1.3.6.1.4.1.45724.1.1.4";

const PAGE: &str = "<!doctype html><html><head><meta charset=utf-8>\
<title>keygate browser smoke</title></head>\
<body><p id=status>ready</p></body></html>";

/// A minimal HTTP/1.1 responder on 127.0.0.1: `GET /` is `PAGE`, `POST /finish`
/// answers 204, anything else 404.
/// Stops when dropped, and in any case after 60 s.
struct TinyServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TinyServer {
    fn start() -> TinyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    // One thread per connection: Chromium opens speculative
                    // connections that may stay silent until the read timeout.
                    Ok((stream, _)) => drop(std::thread::spawn(move || serve(stream))),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TinyServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if request.len() > 16 * 1024 {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while request.len() < head_end + body_len {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("get", "/") => ("200 OK", PAGE),
        ("post", "/finish") => ("204 No Content", ""),
        _ => ("404 Not Found", "not found"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// `navigator.credentials.create` as keygate's enrolment asks for it; returns
/// base64 attestationObject and clientDataJSON.
const REGISTER_JS: &str = r#"(async () => {
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
  const cred = await navigator.credentials.create({ publicKey: {
    rp: { id: "localhost", name: "keygate smoke" },
    user: { id: new TextEncoder().encode("smoke-user"), name: "smoke@example.test", displayName: "Smoke" },
    challenge: crypto.getRandomValues(new Uint8Array(32)),
    pubKeyCredParams: [{ type: "public-key", alg: -7 }],
    attestation: "direct",
    authenticatorSelection: { userVerification: "required", residentKey: "preferred" },
    extensions: { credProps: true },
    timeout: 10000,
  }});
  return {
    id: cred.id,
    attestationObject: b64(cred.response.attestationObject),
    clientDataJSON: b64(cred.response.clientDataJSON),
    transports: cred.response.getTransports(),
    attachment: cred.authenticatorAttachment,
    extensions: cred.getClientExtensionResults(),
  };
})()"#;

const SIGN_IN_JS: &str = r#"(async () => {
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
  const cred = await navigator.credentials.get({ publicKey: {
    rpId: "localhost",
    challenge: crypto.getRandomValues(new Uint8Array(32)),
    userVerification: "required",
    timeout: 10000,
  }});
  return {
    id: cred.id,
    authenticatorData: b64(cred.response.authenticatorData),
    userHandle: cred.response.userHandle && new TextDecoder().decode(cred.response.userHandle),
  };
})()"#;

#[derive(Debug)]
struct Registration {
    fmt: String,
    alg: Option<i128>,
    x5c: Vec<Vec<u8>>,
    flags: u8,
    sign_count: u32,
    aaguid: [u8; 16],
    auth_data: Vec<u8>,
    sig: Vec<u8>,
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn map_get<'a>(map: &'a [(Cbor, Cbor)], key: &str) -> Option<&'a Cbor> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn decode_registration(attestation_object: &[u8]) -> Registration {
    let value: Cbor = ciborium::from_reader(attestation_object).expect("attestationObject is CBOR");
    let map = value.as_map().expect("attestationObject is a map");
    let fmt = map_get(map, "fmt")
        .and_then(Cbor::as_text)
        .expect("fmt")
        .to_owned();
    let auth_data = map_get(map, "authData")
        .and_then(Cbor::as_bytes)
        .expect("authData")
        .clone();
    let stmt = map_get(map, "attStmt")
        .and_then(Cbor::as_map)
        .expect("attStmt");
    let alg = map_get(stmt, "alg")
        .and_then(Cbor::as_integer)
        .map(i128::from);
    let sig = map_get(stmt, "sig")
        .and_then(Cbor::as_bytes)
        .cloned()
        .unwrap_or_default();
    let x5c = map_get(stmt, "x5c")
        .and_then(Cbor::as_array)
        .map(|certs| {
            certs
                .iter()
                .map(|c| c.as_bytes().expect("x5c entry is bytes").clone())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        auth_data.len() >= 37 + 18,
        "authData too short for attested credential data"
    );
    let flags = auth_data[32];
    let sign_count = u32::from_be_bytes(auth_data[33..37].try_into().unwrap());
    let aaguid: [u8; 16] = auth_data[37..53].try_into().unwrap();
    Registration {
        fmt,
        alg,
        x5c,
        flags,
        sign_count,
        aaguid,
        auth_data,
        sig,
    }
}

fn uuid(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn register(browser: &mut Browser) -> (Registration, Vec<u8>, serde_json::Value) {
    let out = browser.eval(REGISTER_JS).unwrap_or_else(|e| {
        panic!(
            "credentials.create: {e}\nconsole: {:?}\nchromium: {}",
            browser.console(),
            browser.log_tail()
        )
    });
    let client_data = b64(&out["clientDataJSON"]);
    (
        decode_registration(&b64(&out["attestationObject"])),
        client_data,
        out,
    )
}

/// Prints the facts about the leaf and returns (SHA-256 of its DER, SHA-256 of its public key).
fn inspect_leaf(reg: &Registration, client_data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let der = &reg.x5c[0];
    let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("leaf parses as X.509");
    assert!(rest.is_empty(), "trailing bytes after the leaf certificate");
    let key = cert.public_key().subject_public_key.data.to_vec();
    let self_signed =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &key)
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .is_ok();
    let mut signed = reg.auth_data.clone();
    signed.extend_from_slice(&sha256(client_data));
    let stmt_ok =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &key)
            .verify(&signed, &reg.sig)
            .is_ok();
    println!("leaf subject:   {}", cert.subject());
    println!("leaf issuer:    {}", cert.issuer());
    println!("leaf serial:    {}", cert.raw_serial_as_string());
    println!("leaf version:   {:?}", cert.version());
    println!(
        "leaf validity:  {} .. {}",
        cert.validity().not_before,
        cert.validity().not_after
    );
    println!(
        "leaf sig alg:   {}",
        cert.signature_algorithm.algorithm.to_id_string()
    );
    println!(
        "leaf key alg:   {}",
        cert.public_key().algorithm.algorithm.to_id_string()
    );
    println!("leaf is CA:     {}", cert.is_ca());
    println!("leaf self-signed (own key verifies its signature): {self_signed}");
    println!("attStmt.sig verifies with leaf key: {stmt_ok}");
    for ext in cert.extensions() {
        println!(
            "leaf extension: {} critical={} value={}",
            ext.oid.to_id_string(),
            ext.critical,
            hex::encode(ext.value)
        );
    }
    let aaguid_ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == AAGUID_OID);
    match aaguid_ext {
        Some(ext) => {
            // OCTET STRING (0x04, 16) wrapping the 16 AAGUID bytes.
            assert_eq!(&ext.value[..2], &[0x04, 0x10], "AAGUID extension encoding");
            assert_eq!(
                &ext.value[2..],
                &reg.aaguid,
                "AAGUID extension must match authData"
            );
            println!("leaf AAGUID extension: {}", uuid(&ext.value[2..]));
        }
        None => println!("leaf AAGUID extension: absent"),
    }
    println!("leaf SHA-256:   {}", hex::encode(sha256(der)));
    println!("leaf key SHA-256: {}", hex::encode(sha256(&key)));
    println!(
        "leaf PEM:\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    assert!(stmt_ok, "attStmt.sig must verify with the x5c leaf key");
    assert!(self_signed, "the leaf is self-signed");
    assert_eq!(cert.subject(), cert.issuer());
    assert_eq!(
        cert.subject().to_string(),
        "C=US, O=Chromium, OU=Authenticator Attestation, CN=Batch Certificate"
    );
    assert!(!cert.is_ca(), "basicConstraints CA:FALSE");
    assert!(aaguid_ext.is_none(), "no AAGUID extension");
    assert_eq!(
        hex::encode(sha256(&key)),
        browser::CHROMIUM_ATTESTATION_KEY_SHA256
    );
    assert_eq!(uuid(&reg.aaguid), browser::CHROMIUM_VIRTUAL_AAGUID);
    (sha256(der), sha256(&key))
}

fn print_registration(reg: &Registration, extra: &serde_json::Value) {
    println!("fmt:            {}", reg.fmt);
    println!("attStmt.alg:    {:?}", reg.alg);
    println!("x5c length:     {}", reg.x5c.len());
    println!(
        "flags:          {:#04x} UP={} UV={} BE={} BS={} AT={} ED={}",
        reg.flags,
        reg.flags & 0x01 != 0,
        reg.flags & 0x04 != 0,
        reg.flags & 0x08 != 0,
        reg.flags & 0x10 != 0,
        reg.flags & 0x40 != 0,
        reg.flags & 0x80 != 0
    );
    println!("signCount:      {}", reg.sign_count);
    println!("AAGUID:         {}", uuid(&reg.aaguid));
    println!(
        "transports: {}, attachment: {}, extensions: {}",
        extra["transports"], extra["attachment"], extra["extensions"]
    );
}

#[test]
fn browser_smoke() {
    if crate::support::skip::unless_available(
        Browser::available(),
        crate::support::browser::CHROMIUM,
    ) {
        return;
    }
    let started = Instant::now();
    let server = TinyServer::start();
    let origin = format!("http://localhost:{}", server.port);

    let mut b = Browser::launch().expect("launch chromium");
    println!("launched in {:?}", started.elapsed());

    // Driver basics.
    b.goto(&format!("{origin}/")).expect("goto the smoke page");
    assert_eq!(b.url().unwrap(), format!("{origin}/"));
    assert_eq!(
        b.eval("document.title").unwrap(),
        json!("keygate browser smoke")
    );
    assert_eq!(b.eval("window.isSecureContext").unwrap(), json!(true));
    assert_eq!(b.eval("Promise.resolve(6 * 7)").unwrap(), json!(42));
    let err = b.eval("(() => { throw new Error('boom') })()").unwrap_err();
    assert!(err.contains("boom"), "exception surfaced: {err}");
    let err = b.eval("Promise.reject(new TypeError('nope'))").unwrap_err();
    assert!(err.contains("nope"), "rejection surfaced: {err}");
    b.eval("setTimeout(() => { document.getElementById('status').textContent = 'later' }, 200)")
        .unwrap();
    let text = b
        .wait_for(
            "document.getElementById('status').textContent === 'later' && 'seen'",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(text, json!("seen"));
    let err = b.wait_for("false", Duration::from_millis(300)).unwrap_err();
    assert!(err.contains("timed out"), "bounded wait: {err}");
    let err = b
        .eval_timeout("new Promise(() => {})", Duration::from_millis(300))
        .unwrap_err();
    assert!(err.contains("no reply"), "bounded eval: {err}");
    assert_eq!(b.eval("1 + 1").unwrap(), json!(2), "usable after a timeout");
    let png = b.screenshot_png().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    b.eval("console.log('hello', 7)").unwrap();

    // Registration with direct attestation on a CTAP2 USB virtual authenticator.
    let authenticator = b
        .add_virtual_authenticator(VirtualAuthenticator::default())
        .expect("add virtual authenticator");
    let (reg, client_data, extra) = register(&mut b);
    print_registration(&reg, &extra);
    let client: serde_json::Value = serde_json::from_slice(&client_data).unwrap();
    assert_eq!(client["type"], json!("webauthn.create"));
    assert_eq!(client["origin"], json!(origin));
    assert_eq!(reg.auth_data[..32], sha256(b"localhost")[..], "rpIdHash");
    assert_eq!(
        reg.fmt, "packed",
        "virtual authenticator attestation format"
    );
    assert_eq!(reg.alg, Some(-7));
    assert_eq!(reg.x5c.len(), 1, "x5c holds exactly the leaf");
    assert_eq!(reg.flags & 0x45, 0x45, "UP, UV and AT set");
    assert_eq!(reg.flags & 0x18, 0, "BE and BS clear");
    let (leaf_hash, leaf_key) = inspect_leaf(&reg, &client_data);
    let pem = browser::chromium_attestation_root_pem(&b64(&extra["attestationObject"]))
        .expect("attestation root from the attestation object");
    let expected = format!(
        "-----BEGIN CERTIFICATE-----\n{}",
        base64::engine::general_purpose::STANDARD.encode(&reg.x5c[0])[..64].to_owned()
    );
    assert!(
        pem.starts_with(&expected),
        "root PEM is the x5c leaf:\n{pem}"
    );
    let creds = b.virtual_credentials(&authenticator).unwrap();
    assert_eq!(creds.len(), 1);
    println!("virtual credential: {}", creds[0]);

    // Sign-in with the discoverable credential.
    let assertion = b.eval(SIGN_IN_JS).expect("credentials.get");
    assert_eq!(assertion["id"], extra["id"]);
    assert_eq!(assertion["userHandle"], json!("smoke-user"));
    let auth_data = b64(&assertion["authenticatorData"]);
    assert_eq!(auth_data[32] & 0x05, 0x05, "UP and UV on assertion");
    println!(
        "assertion flags {:#04x} signCount {}",
        auth_data[32],
        u32::from_be_bytes(auth_data[33..37].try_into().unwrap())
    );

    // A failed user verification is a NotAllowedError, not a hang.
    b.set_user_verified(&authenticator, false).unwrap();
    let t = Instant::now();
    let err = b.eval(SIGN_IN_JS).unwrap_err();
    println!("sign-in with failing UV ({:?}): {err}", t.elapsed());
    assert!(err.contains("NotAllowedError"), "{err}");
    b.set_user_verified(&authenticator, true).unwrap();

    // A second authenticator in the same browser.
    b.remove_virtual_authenticator(&authenticator).unwrap();
    b.add_virtual_authenticator(VirtualAuthenticator::default())
        .unwrap();
    let (reg2, client_data2, _) = register(&mut b);
    let (x509_hash2, key2) = inspect_leaf(&reg2, &client_data2);
    println!(
        "second authenticator, same browser: same leaf DER {}, same leaf key {}",
        x509_hash2 == leaf_hash,
        key2 == leaf_key
    );
    assert_eq!(key2, leaf_key, "one attestation key across authenticators");
    assert!(
        b.console().iter().any(|l| l.contains("hello 7")),
        "{:?}",
        b.console()
    );
    let err = b.goto("http://127.0.0.1:9/").unwrap_err();
    println!("goto refused port: {err}");
    drop(b);

    // A second browser: a backup-eligible ("synced") credential, and the page's
    // POST of the attestation intercepted before it reaches the server, the way
    // an end-to-end test gets at the certificate to trust.
    let mut b = Browser::launch().expect("second launch");
    b.goto(&format!("{origin}/")).unwrap();
    let synced = VirtualAuthenticator {
        default_backup_eligibility: Some(true),
        default_backup_state: Some(true),
        ..VirtualAuthenticator::default()
    };
    b.add_virtual_authenticator(synced).unwrap();
    b.watch_events("Fetch.requestPaused");
    b.call(
        "Fetch.enable",
        json!({"patterns": [{"urlPattern": "*/finish", "requestStage": "Request"}]}),
    )
    .unwrap();
    b.eval(&format!(
        "window.__status = null; (async () => {{ const r = await {REGISTER_JS}; \
         const resp = await fetch('/finish', {{ method: 'POST', body: JSON.stringify(r) }}); \
         window.__status = resp.status; }})().catch(e => {{ window.__status = 'error: ' + e; }}); 0"
    ))
    .unwrap();
    let paused = b
        .wait_event("Fetch.requestPaused", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\nconsole: {:?}", b.console()));
    let posted: serde_json::Value =
        serde_json::from_str(paused["request"]["postData"].as_str().expect("postData")).unwrap();
    let attestation_object = b64(&posted["attestationObject"]);
    let client_data3 = b64(&posted["clientDataJSON"]);
    let pem3 = browser::chromium_attestation_root_pem(&attestation_object).unwrap();
    let reg3 = decode_registration(&attestation_object);
    b.call(
        "Fetch.continueRequest",
        json!({"requestId": paused["requestId"]}),
    )
    .unwrap();
    let status = b
        .wait_for("window.__status", Duration::from_secs(5))
        .unwrap();
    assert_eq!(status, json!(204), "the POST went through after the pause");
    print_registration(&reg3, &json!({}));
    assert_eq!(reg3.flags & 0x18, 0x18, "BE and BS set when asked for");
    let (x509_hash3, key3) = inspect_leaf(&reg3, &client_data3);
    assert_ne!(pem3, pem, "a new certificate for every registration");
    println!(
        "another browser: same leaf DER {}, same leaf key {}",
        x509_hash3 == leaf_hash,
        key3 == leaf_key
    );
    assert_eq!(key3, leaf_key, "one attestation key across browsers");
    drop(b);
    println!("browser_smoke took {:?}", started.elapsed());
}
