//! Deterministic fuzz-style test (no nightly needed): thousands of mutations of real and
//! generated attestation objects, authenticator data, clientDataJSON, COSE keys,
//! certificates and assertions through the parsers and the full checks. Every input
//! must give `Ok` or `Err`, never a panic, and quickly.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use keygate::attestation::{Certificate, Verifier};
use keygate::webauthn::{
    verify_assertion, verify_registration, AssertionInput, AttestationObject, AuthenticatorData,
    CoseKey, RegistrationInput, UncheckedClientData,
};

use crate::support::authenticator::{
    AssertOptions, CredAlg, Format, RegisterOptions, SoftAuthenticator,
};
use crate::support::fixtures;
use crate::webauthn_common::{setup, NOW};

/// Mutations per corpus entry and target.
const ROUNDS: usize = 600;
/// Slowest single call tolerated (debug build).
const MAX_CALL: Duration = Duration::from_secs(2);

/// xorshift64*: deterministic, good enough to pick mutations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u8; 12] = [
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x17, 0x18, 0x1f, 0x5f, 0x9f, 0xbf, 0xfe,
];

pub(crate) fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let steps = 1 + rng.below(3);
    for _ in 0..steps {
        let len = out.len();
        match rng.below(8) {
            // Bit flips.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    if !out.is_empty() {
                        let i = rng.below(len);
                        out[i] ^= 1 << rng.below(8);
                    }
                }
            }
            // Truncation.
            1 => out.truncate(rng.below(len + 1)),
            // Insertion of random bytes.
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            // An interesting byte (CBOR headers, lengths, signs).
            3 => {
                if !out.is_empty() {
                    let i = rng.below(len);
                    out[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
            // Deletion of a range.
            4 => {
                if !out.is_empty() {
                    let a = rng.below(len);
                    let b = (a + 1 + rng.below(32)).min(len);
                    out.drain(a..b);
                }
            }
            // Duplication of a range.
            5 => {
                if !out.is_empty() {
                    let a = rng.below(len);
                    let b = (a + 1 + rng.below(64)).min(len);
                    let chunk = out[a..b].to_vec();
                    let at = rng.below(out.len() + 1);
                    out.splice(at..at, chunk);
                }
            }
            // Splice with another corpus entry.
            6 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(128)).min(other.len());
                    let at = rng.below(len + 1);
                    let end = (at + (b - a)).min(out.len());
                    out.splice(at..end, other[a..b].iter().copied());
                }
            }
            // A big-endian length field set to something large.
            _ => {
                if len >= 2 {
                    let i = rng.below(len - 1);
                    out[i] = 0xff;
                    out[i + 1] = rng.next() as u8;
                }
            }
        }
    }
    out
}

struct Harness {
    rng: Rng,
    calls: usize,
    slowest: Duration,
    failures: Vec<String>,
}

impl Harness {
    fn run(&mut self, target: &str, input: &[u8], f: impl FnOnce()) {
        self.calls += 1;
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(f));
        let took = start.elapsed();
        self.slowest = self.slowest.max(took);
        if result.is_err() {
            self.failures
                .push(format!("{target}: panic on input {}", hex::encode(input)));
        } else if took > MAX_CALL {
            self.failures.push(format!(
                "{target}: {took:?} on input {}",
                hex::encode(input)
            ));
        }
    }
}

/// One registration to mutate around, with what the relying party expects.
struct Case {
    client_data_json: Vec<u8>,
    attestation_object: Vec<u8>,
    challenge: Vec<u8>,
    origin: String,
    rp_id: String,
}

#[test]
fn mutated_inputs_never_panic() {
    let started = Instant::now();
    let (ca, verifier) = setup();
    let builtin = Verifier::builtin();

    // Registrations: the real vectors and generated ones of every format.
    let mut cases: Vec<Case> = fixtures::registrations()
        .into_iter()
        .map(|v| Case {
            client_data_json: v.client_data_json,
            attestation_object: v.attestation_object,
            challenge: v.challenge,
            origin: v.origin,
            rp_id: v.rp_id,
        })
        .collect();
    let packed_key = SoftAuthenticator::new(&ca);
    let u2f_key = SoftAuthenticator::u2f(&ca);
    let mut credentials = Vec::new();
    for (format, alg) in [
        (Format::Packed, CredAlg::Es256),
        (Format::Packed, CredAlg::EdDsa),
        (Format::PackedSelf, CredAlg::Es256),
        (Format::FidoU2f, CredAlg::Es256),
        (Format::None, CredAlg::EdDsa),
    ] {
        let opts = RegisterOptions {
            format,
            alg,
            ..RegisterOptions::default()
        };
        let key = if format == Format::FidoU2f {
            &u2f_key
        } else {
            &packed_key
        };
        let reg = key.register(&opts);
        cases.push(Case {
            client_data_json: reg.client_data_json.clone(),
            attestation_object: reg.attestation_object.clone(),
            challenge: opts.challenge.clone(),
            origin: opts.origin.clone(),
            rp_id: opts.rp_id.clone(),
        });
        credentials.push(reg.credential);
    }
    // Every case verifies unmutated (so mutations start from valid inputs).
    for c in &cases {
        let input = RegistrationInput {
            client_data_json: &c.client_data_json,
            attestation_object: &c.attestation_object,
            expected_challenge: &c.challenge,
            expected_origin: &c.origin,
            rp_id: &c.rp_id,
        };
        verify_registration(&input, &verifier, NOW).expect("seed verifies");
    }

    // Corpora of the inner pieces.
    let att_objs: Vec<Vec<u8>> = cases.iter().map(|c| c.attestation_object.clone()).collect();
    let client_datas: Vec<Vec<u8>> = cases.iter().map(|c| c.client_data_json.clone()).collect();
    let mut auth_datas = Vec::new();
    let mut cose_keys = Vec::new();
    let mut certs = vec![ca.root_der().to_vec(), ca.intermediate_der().to_vec()];
    for c in &cases {
        let obj = AttestationObject::parse(&c.attestation_object).expect("parses");
        let ad = AuthenticatorData::parse(&obj.auth_data).expect("parses");
        if let Some(att) = &ad.attested {
            cose_keys.push(att.public_key_cose.clone());
        }
        auth_datas.push(obj.auth_data);
        let verified = verify_registration(
            &RegistrationInput {
                client_data_json: &c.client_data_json,
                attestation_object: &c.attestation_object,
                expected_challenge: &c.challenge,
                expected_origin: &c.origin,
                rp_id: &c.rp_id,
            },
            &verifier,
            NOW,
        )
        .expect("verifies");
        certs.extend(verified.evidence.chain);
    }
    for a in builtin.trust.anchors() {
        certs.push(a.cert.der.clone());
    }
    for (i, c) in builtin.trust.intermediates().iter().enumerate() {
        if i % 5 == 0 {
            certs.push(c.der.clone());
        }
    }

    let mut h = Harness {
        rng: Rng(0x6b65_7967_6174_6521),
        calls: 0,
        slowest: Duration::ZERO,
        failures: Vec::new(),
    };

    // Full registrations with a mutated attestation object or clientDataJSON.
    let mut outcomes = std::collections::BTreeMap::new();
    for c in &cases {
        for _ in 0..ROUNDS {
            let obj = mutate(&mut h.rng, &c.attestation_object, &att_objs);
            let input = RegistrationInput {
                client_data_json: &c.client_data_json,
                attestation_object: &obj,
                expected_challenge: &c.challenge,
                expected_origin: &c.origin,
                rp_id: &c.rp_id,
            };
            let mut outcome = "panic";
            h.run("verify_registration(attestationObject)", &obj, || {
                outcome = match verify_registration(&input, &verifier, NOW) {
                    Ok(_) => "ok",
                    Err(e) => e.code(),
                };
            });
            *outcomes.entry(outcome).or_insert(0usize) += 1;
        }
        for _ in 0..ROUNDS / 3 {
            let cd = mutate(&mut h.rng, &c.client_data_json, &client_datas);
            let input = RegistrationInput {
                client_data_json: &cd,
                attestation_object: &c.attestation_object,
                expected_challenge: &c.challenge,
                expected_origin: &c.origin,
                rp_id: &c.rp_id,
            };
            h.run("verify_registration(clientDataJSON)", &cd, || {
                let _ = verify_registration(&input, &verifier, NOW);
                let _ = UncheckedClientData::parse(&cd);
            });
        }
    }

    // Authenticator data and COSE keys on their own.
    for ad in &auth_datas {
        for _ in 0..ROUNDS {
            let m = mutate(&mut h.rng, ad, &auth_datas);
            h.run("AuthenticatorData::parse", &m, || {
                let _ = AuthenticatorData::parse(&m);
            });
        }
    }
    for key in &cose_keys {
        for _ in 0..ROUNDS {
            let m = mutate(&mut h.rng, key, &cose_keys);
            h.run("CoseKey::from_cbor", &m, || {
                if let Ok((k, _)) = CoseKey::from_cbor(&m) {
                    let _ = k.verify(b"message", &m);
                }
                let _ = CoseKey::from_cbor_exact(&m);
            });
        }
    }

    // Certificates: parsing and chain validation.
    for cert in &certs {
        for _ in 0..ROUNDS / 2 {
            let m = mutate(&mut h.rng, cert, &certs);
            h.run("Certificate::from_der + validate", &m, || {
                let _ = Certificate::from_der(&m);
                let _ = verifier
                    .trust
                    .validate_der(&[&m, ca.intermediate_der()], NOW);
            });
        }
    }

    // Assertions: mutated authenticator data, clientDataJSON and signature.
    for cred in &mut credentials {
        let opts = AssertOptions::default();
        let a = cred.get(&opts);
        let key = CoseKey::from_cbor_exact(&cred.public_key_cose).expect("key");
        let pieces = [
            a.authenticator_data.clone(),
            a.client_data_json.clone(),
            a.signature.clone(),
        ];
        for _ in 0..ROUNDS {
            let which = h.rng.below(3);
            let m = mutate(&mut h.rng, &pieces[which], &pieces);
            let mut parts = pieces.clone();
            parts[which] = m.clone();
            let input = AssertionInput {
                client_data_json: &parts[1],
                authenticator_data: &parts[0],
                signature: &parts[2],
                expected_challenge: &opts.challenge,
                expected_origin: &opts.origin,
                rp_id: &opts.rp_id,
                stored_public_key: &key,
                stored_sign_count: 0,
            };
            h.run("verify_assertion", &m, || {
                let _ = verify_assertion(&input);
            });
        }
    }

    let total = started.elapsed();
    assert!(
        h.failures.is_empty(),
        "{} of {} inputs failed; first: {:#?}",
        h.failures.len(),
        h.calls,
        &h.failures[..h.failures.len().min(5)]
    );
    assert!(h.calls > 5_000, "only {} inputs", h.calls);
    assert!(
        total < Duration::from_secs(60),
        "{} inputs took {total:?}",
        h.calls
    );
    // The mutations reach deep: many different checks refused them.
    assert!(outcomes.len() >= 10, "outcomes: {outcomes:?}");
    println!(
        "fuzz: {} inputs in {total:?}, slowest {:?}; registration outcomes {outcomes:?}",
        h.calls, h.slowest
    );
}
