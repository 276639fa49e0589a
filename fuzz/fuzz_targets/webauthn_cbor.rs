//! CBOR, COSE keys and authenticator data: the attestation object, a COSE key (embedded and
//! stored forms) and authenticator data, each read from the same bytes. Every input must give
//! `Ok` or `Err`, never a panic; what parses must also hold together.
#![no_main]

use keygate::webauthn::{AttestationObject, AuthenticatorData, CoseKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = AttestationObject::parse(data) {
        let _ = AuthenticatorData::parse(&object.auth_data);
    }
    if let Ok((key, used)) = CoseKey::from_cbor(data) {
        assert!(
            used <= data.len(),
            "a COSE key cannot use more bytes than it was given"
        );
        // The embedded key, read again on its own, is the same key.
        let again = CoseKey::from_cbor_exact(&data[..used]).expect("the key's own bytes parse");
        assert_eq!(again.alg(), key.alg());
        let _ = key.verify(b"message", data);
    }
    if let Ok(auth) = AuthenticatorData::parse(data) {
        if let Some(attested) = &auth.attested {
            assert!(CoseKey::from_cbor_exact(&attested.public_key_cose).is_ok());
        }
    }
});
