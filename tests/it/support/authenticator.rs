//! A software authenticator for tests and benches: a test CA shaped like Yubico's
//! (root → intermediate → attestation certificate with OU "Authenticator Attestation",
//! CA=false, the FIDO AAGUID extension and Yubico's firmware extension) and real
//! `packed` (x5c and self), `fido-u2f` and `none` attestations and assertions, signed
//! with ring.
//!
//! Self-contained (std, ring, rcgen, base64, ciborium, serde_json) so benches can
//! include it with `#[path]`.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::value::{Integer, Value};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};

/// AAGUID of the YubiKey 5 NFC (fw 5.1), in the built-in catalogue.
pub const YUBIKEY_5_NFC: [u8; 16] = [
    0xfa, 0x2b, 0x99, 0xdc, 0x9e, 0x39, 0x42, 0x57, 0x8f, 0x92, 0x4a, 0x30, 0xd2, 0x3c, 0x41, 0x18,
];
/// AAGUID of the YubiKey 5Ci FIPS, in the built-in catalogue (FIPS).
pub const YUBIKEY_5CI_FIPS: [u8; 16] = [
    0x85, 0x20, 0x34, 0x21, 0x48, 0xf9, 0x43, 0x55, 0x9b, 0xc8, 0x8a, 0x53, 0x84, 0x6e, 0x50, 0x83,
];
/// An AAGUID in no catalogue.
pub const UNKNOWN_AAGUID: [u8; 16] = [0x42; 16];

const OID_FIDO_AAGUID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];
const OID_YUBICO_FIRMWARE: &[u64] = &[1, 3, 6, 1, 4, 1, 41482, 13, 1];

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    SystemRandom::new().fill(&mut v).expect("system randomness");
    v
}

fn new_p256_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .expect("generate P-256 key")
        .as_ref()
        .to_vec()
}

fn ring_p256(pkcs8: &[u8]) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new())
        .expect("load P-256 key")
}

fn rcgen_key(pkcs8: &[u8]) -> KeyPair {
    KeyPair::try_from(pkcs8).expect("rcgen key from PKCS#8")
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA shaped like Yubico's FIDO PKI: a root and one intermediate, P-256.
pub struct TestCa {
    pub label: String,
    root_der: Vec<u8>,
    root_pem: String,
    root: Issuer<'static, KeyPair>,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA; `label` goes into the subject names ("<label> Root CA", ...).
    pub fn new(label: &str) -> TestCa {
        let root_key = rcgen_key(&new_p256_pkcs8());
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = name(&format!("{label} Root CA"));
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = date_time_ymd(2020, 1, 1);
        root_params.not_after = date_time_ymd(2090, 1, 1);
        let root_cert = root_params.self_signed(&root_key).expect("root cert");
        let root = Issuer::new(root_params, root_key);

        let inter_key = rcgen_key(&new_p256_pkcs8());
        let mut inter_params = CertificateParams::default();
        inter_params.distinguished_name = name(&format!("{label} FIDO Attestation A 1"));
        inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        inter_params.not_before = date_time_ymd(2020, 1, 1);
        inter_params.not_after = date_time_ymd(2090, 1, 1);
        let inter_cert = inter_params
            .signed_by(&inter_key, &root)
            .expect("intermediate cert");
        let intermediate = Issuer::new(inter_params, inter_key);

        TestCa {
            label: label.to_owned(),
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            root,
            intermediate_der: inter_cert.der().to_vec(),
            intermediate_pem: inter_cert.pem(),
            intermediate,
        }
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// Issues an attestation certificate and its key.
    pub fn issue_attestation_cert(&self, opts: &LeafOptions) -> AttestationCert {
        if opts.signed_by_root {
            issue_leaf(&self.label, &self.root, Vec::new(), opts)
        } else {
            issue_leaf(
                &self.label,
                &self.intermediate,
                vec![self.intermediate_der.clone()],
                opts,
            )
        }
    }

    /// A CA certificate below the intermediate (basicConstraints CA=`is_ca`), for
    /// testing path constraints: root → intermediate (pathLen 0) → this → leaves.
    pub fn sub_ca(&self, label: &str, is_ca: bool) -> SubCa {
        let key = rcgen_key(&new_p256_pkcs8());
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("{label} Sub CA"));
        params.is_ca = if is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2090, 1, 1);
        let cert = params.signed_by(&key, &self.intermediate).expect("sub CA");
        SubCa {
            label: label.to_owned(),
            der: cert.der().to_vec(),
            tail: vec![cert.der().to_vec(), self.intermediate_der.clone()],
            issuer: Issuer::new(params, key),
        }
    }
}

/// A CA below a [`TestCa`]'s intermediate.
pub struct SubCa {
    pub label: String,
    pub der: Vec<u8>,
    tail: Vec<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
}

impl SubCa {
    /// An attestation certificate issued by this CA; x5c = [leaf, sub CA, intermediate].
    pub fn issue_attestation_cert(&self, opts: &LeafOptions) -> AttestationCert {
        issue_leaf(&self.label, &self.issuer, self.tail.clone(), opts)
    }
}

fn issue_leaf(
    label: &str,
    issuer: &Issuer<'static, KeyPair>,
    tail: Vec<Vec<u8>>,
    opts: &LeafOptions,
) -> AttestationCert {
    let pkcs8 = new_p256_pkcs8();
    let key = rcgen_key(&pkcs8);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "SE");
    dn.push(DnType::OrganizationName, format!("{label} AB"));
    dn.push(
        DnType::OrganizationalUnitName,
        opts.organizational_unit.clone(),
    );
    dn.push(
        DnType::CommonName,
        format!(
            "{label} EE Serial {}",
            u32::from_be_bytes([1, 2, 3, opts.serial])
        ),
    );
    params.distinguished_name = dn;
    params.is_ca = if opts.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    if opts.expired {
        params.not_before = date_time_ymd(2001, 1, 1);
        params.not_after = date_time_ymd(2002, 1, 1);
    } else {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2080, 1, 1);
    }
    if let Some(aaguid) = opts.aaguid {
        let mut content = vec![0x04, 0x10];
        content.extend_from_slice(&aaguid);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(OID_FIDO_AAGUID, content));
    }
    if let Some([major, minor, patch]) = opts.firmware {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                OID_YUBICO_FIRMWARE,
                vec![0x04, 0x03, major, minor, patch],
            ));
    }
    let cert = params.signed_by(&key, issuer).expect("leaf cert");
    let der = cert.der().to_vec();
    let mut x5c = vec![der.clone()];
    x5c.extend(tail);
    AttestationCert {
        der,
        x5c,
        key: ring_p256(&pkcs8),
    }
}

/// Knobs for an attestation certificate.
#[derive(Clone, Debug)]
pub struct LeafOptions {
    /// Value of the FIDO AAGUID extension; `None` leaves the extension out.
    pub aaguid: Option<[u8; 16]>,
    /// Yubico firmware extension (major, minor, patch); `None` leaves it out.
    pub firmware: Option<[u8; 3]>,
    /// Valid 2001–2002 only.
    pub expired: bool,
    /// Issued by the root directly (x5c = [leaf]) instead of the intermediate.
    pub signed_by_root: bool,
    pub organizational_unit: String,
    pub is_ca: bool,
    /// Distinguishes certificates in the subject CN.
    pub serial: u8,
}

impl Default for LeafOptions {
    fn default() -> Self {
        LeafOptions {
            aaguid: Some(YUBIKEY_5_NFC),
            firmware: Some([5, 7, 1]),
            expired: false,
            signed_by_root: false,
            organizational_unit: "Authenticator Attestation".into(),
            is_ca: false,
            serial: 1,
        }
    }
}

/// An attestation certificate with its private key.
pub struct AttestationCert {
    pub der: Vec<u8>,
    /// What goes in x5c: the leaf, then the intermediate unless root-issued.
    pub x5c: Vec<Vec<u8>>,
    key: EcdsaKeyPair,
}

impl AttestationCert {
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(&SystemRandom::new(), message)
            .expect("sign")
            .as_ref()
            .to_vec()
    }
}

/// The attestation statement format to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// packed with x5c (basic attestation).
    Packed,
    /// packed without x5c, signed by the credential key.
    PackedSelf,
    FidoU2f,
    None,
}

/// The credential key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredAlg {
    Es256,
    EdDsa,
}

/// Knobs for a registration.
#[derive(Clone, Debug)]
pub struct RegisterOptions {
    pub format: Format,
    pub alg: CredAlg,
    pub rp_id: String,
    pub origin: String,
    pub challenge: Vec<u8>,
    /// clientDataJSON `type`.
    pub ty: String,
    pub cross_origin: bool,
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// AAGUID written to authenticator data; `None` = the authenticator's own (zero
    /// for fido-u2f).
    pub aaguid: Option<[u8; 16]>,
    pub sign_count: u32,
    /// Credential ID; `None` = 32 random bytes.
    pub credential_id: Option<Vec<u8>>,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            format: Format::Packed,
            alg: CredAlg::Es256,
            rp_id: "keygate.example".into(),
            origin: "https://keygate.example".into(),
            challenge: vec![7; 32],
            ty: "webauthn.create".into(),
            cross_origin: false,
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            aaguid: None,
            sign_count: 0,
            credential_id: None,
        }
    }
}

/// Knobs for an assertion.
#[derive(Clone, Debug)]
pub struct AssertOptions {
    pub rp_id: String,
    pub origin: String,
    pub challenge: Vec<u8>,
    pub ty: String,
    pub user_present: bool,
    pub user_verified: bool,
    /// `None` = one more than the credential's last count.
    pub sign_count: Option<u32>,
}

impl Default for AssertOptions {
    fn default() -> Self {
        AssertOptions {
            rp_id: "keygate.example".into(),
            origin: "https://keygate.example".into(),
            challenge: vec![9; 32],
            ty: "webauthn.get".into(),
            user_present: true,
            user_verified: true,
            sign_count: None,
        }
    }
}

enum CredKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A credential the authenticator holds.
pub struct SoftCredential {
    pub id: Vec<u8>,
    pub alg: i64,
    pub public_key_cose: Vec<u8>,
    pub sign_count: u32,
    key: CredKey,
}

impl SoftCredential {
    fn generate(alg: CredAlg, id: Vec<u8>) -> SoftCredential {
        let rng = SystemRandom::new();
        match alg {
            CredAlg::Es256 => {
                let key = ring_p256(&new_p256_pkcs8());
                let point = key.public_key().as_ref().to_vec();
                let (x, y) = point.get(1..).expect("point").split_at(32);
                let cose = cbor(&Value::Map(vec![
                    (int(1), int(2)),
                    (int(3), int(-7)),
                    (int(-1), int(1)),
                    (int(-2), Value::Bytes(x.to_vec())),
                    (int(-3), Value::Bytes(y.to_vec())),
                ]));
                SoftCredential {
                    id,
                    alg: -7,
                    public_key_cose: cose,
                    sign_count: 0,
                    key: CredKey::Es256(key),
                }
            }
            CredAlg::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
                let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("load Ed25519");
                let cose = cbor(&Value::Map(vec![
                    (int(1), int(1)),
                    (int(3), int(-8)),
                    (int(-1), int(6)),
                    (int(-2), Value::Bytes(key.public_key().as_ref().to_vec())),
                ]));
                SoftCredential {
                    id,
                    alg: -8,
                    public_key_cose: cose,
                    sign_count: 0,
                    key: CredKey::EdDsa(key),
                }
            }
        }
    }

    /// Signs with the credential key (ES256 signatures are ASN.1 DER).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            CredKey::Es256(k) => k
                .sign(&SystemRandom::new(), message)
                .expect("sign")
                .as_ref()
                .to_vec(),
            CredKey::EdDsa(k) => k.sign(message).as_ref().to_vec(),
        }
    }

    /// The uncompressed P-256 point (ES256 credentials only).
    pub fn p256_point(&self) -> Option<Vec<u8>> {
        match &self.key {
            CredKey::Es256(k) => Some(k.public_key().as_ref().to_vec()),
            CredKey::EdDsa(_) => None,
        }
    }

    /// `navigator.credentials.get`: an assertion.
    pub fn get(&mut self, opts: &AssertOptions) -> Assertion {
        let count = opts.sign_count.unwrap_or(self.sign_count.wrapping_add(1));
        self.sign_count = count;
        let client_data_json = client_data(&opts.ty, &opts.challenge, &opts.origin, false);
        let mut flags = 0u8;
        if opts.user_present {
            flags |= 0x01;
        }
        if opts.user_verified {
            flags |= 0x04;
        }
        let mut authenticator_data = Vec::with_capacity(37);
        authenticator_data.extend_from_slice(&sha256(opts.rp_id.as_bytes()));
        authenticator_data.push(flags);
        authenticator_data.extend_from_slice(&count.to_be_bytes());
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(&sha256(&client_data_json));
        let signature = self.sign(&signed);
        Assertion {
            client_data_json,
            authenticator_data,
            signature,
        }
    }
}

/// What `navigator.credentials.create` returns.
pub struct Registration {
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
    /// The raw authenticator data inside the attestation object.
    pub authenticator_data: Vec<u8>,
    pub credential: SoftCredential,
}

/// What `navigator.credentials.get` returns.
pub struct Assertion {
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
}

/// One physical authenticator: a model AAGUID and an attestation certificate.
pub struct SoftAuthenticator {
    pub aaguid: [u8; 16],
    pub attestation: AttestationCert,
}

impl SoftAuthenticator {
    /// A "YubiKey 5 NFC" with a fresh attestation certificate from `ca`.
    pub fn new(ca: &TestCa) -> SoftAuthenticator {
        Self::with_leaf(ca, YUBIKEY_5_NFC, &LeafOptions::default())
    }

    /// A given model with a certificate issued with `leaf`.
    pub fn with_leaf(ca: &TestCa, aaguid: [u8; 16], leaf: &LeafOptions) -> SoftAuthenticator {
        SoftAuthenticator {
            aaguid,
            attestation: ca.issue_attestation_cert(leaf),
        }
    }

    /// A model whose certificate's AAGUID extension matches its AAGUID.
    pub fn model(ca: &TestCa, aaguid: [u8; 16]) -> SoftAuthenticator {
        Self::with_leaf(
            ca,
            aaguid,
            &LeafOptions {
                aaguid: Some(aaguid),
                ..LeafOptions::default()
            },
        )
    }

    /// A U2F-style authenticator: certificate issued by the root, x5c of one.
    pub fn u2f(ca: &TestCa) -> SoftAuthenticator {
        Self::with_leaf(
            ca,
            YUBIKEY_5_NFC,
            &LeafOptions {
                signed_by_root: true,
                ..LeafOptions::default()
            },
        )
    }

    /// `navigator.credentials.create` with attestation `direct`.
    pub fn register(&self, opts: &RegisterOptions) -> Registration {
        let id = opts
            .credential_id
            .clone()
            .unwrap_or_else(|| random_bytes(32));
        let mut credential = SoftCredential::generate(opts.alg, id);
        credential.sign_count = opts.sign_count;

        let client_data_json =
            client_data(&opts.ty, &opts.challenge, &opts.origin, opts.cross_origin);
        let client_data_hash = sha256(&client_data_json);
        let aaguid = opts.aaguid.unwrap_or(if opts.format == Format::FidoU2f {
            [0; 16]
        } else {
            self.aaguid
        });
        let rp_id_hash = sha256(opts.rp_id.as_bytes());

        let mut flags = 0x40u8;
        if opts.user_present {
            flags |= 0x01;
        }
        if opts.user_verified {
            flags |= 0x04;
        }
        if opts.backup_eligible {
            flags |= 0x08;
        }
        if opts.backup_state {
            flags |= 0x10;
        }
        let mut auth_data = Vec::new();
        auth_data.extend_from_slice(&rp_id_hash);
        auth_data.push(flags);
        auth_data.extend_from_slice(&opts.sign_count.to_be_bytes());
        auth_data.extend_from_slice(&aaguid);
        auth_data.extend_from_slice(&(credential.id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&credential.id);
        auth_data.extend_from_slice(&credential.public_key_cose);

        let mut signed = auth_data.clone();
        signed.extend_from_slice(&client_data_hash);
        let x5c = || {
            Value::Array(
                self.attestation
                    .x5c
                    .iter()
                    .map(|c| Value::Bytes(c.clone()))
                    .collect(),
            )
        };
        let att_stmt = match opts.format {
            Format::Packed => Value::Map(vec![
                (text("alg"), int(-7)),
                (text("sig"), Value::Bytes(self.attestation.sign(&signed))),
                (text("x5c"), x5c()),
            ]),
            Format::PackedSelf => Value::Map(vec![
                (text("alg"), int(credential.alg)),
                (text("sig"), Value::Bytes(credential.sign(&signed))),
            ]),
            Format::FidoU2f => {
                let mut data = vec![0x00];
                data.extend_from_slice(&rp_id_hash);
                data.extend_from_slice(&client_data_hash);
                data.extend_from_slice(&credential.id);
                data.extend_from_slice(&credential.p256_point().unwrap_or_default());
                Value::Map(vec![
                    (text("sig"), Value::Bytes(self.attestation.sign(&data))),
                    (text("x5c"), x5c()),
                ])
            }
            Format::None => Value::Map(vec![]),
        };
        let fmt = match opts.format {
            Format::Packed | Format::PackedSelf => "packed",
            Format::FidoU2f => "fido-u2f",
            Format::None => "none",
        };
        let attestation_object = attestation_object(fmt, att_stmt, &auth_data);
        Registration {
            client_data_json,
            attestation_object,
            authenticator_data: auth_data,
            credential,
        }
    }
}

/// Encodes `{fmt, attStmt, authData}`.
pub fn attestation_object(fmt: &str, att_stmt: Value, auth_data: &[u8]) -> Vec<u8> {
    cbor(&Value::Map(vec![
        (text("fmt"), text(fmt)),
        (text("attStmt"), att_stmt),
        (text("authData"), Value::Bytes(auth_data.to_vec())),
    ]))
}

/// A clientDataJSON as browsers write it.
pub fn client_data(ty: &str, challenge: &[u8], origin: &str, cross_origin: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": ty,
        "challenge": b64url(challenge),
        "origin": origin,
        "crossOrigin": cross_origin,
    }))
    .expect("clientDataJSON")
}

pub fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("CBOR encoding");
    out
}

pub fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}
