//! clientDataJSON: parsed, then checked for both ceremonies. Every input must give `Ok` or
//! `Err`, never a panic; a check passes only for exactly what was parsed.
#![no_main]

use keygate::webauthn::{Ceremony, UncheckedClientData};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "https://demo.yubico.com";

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = UncheckedClientData::parse(data) else {
        return;
    };
    for ceremony in [Ceremony::Create, Ceremony::Get] {
        let ok = parsed.check(ceremony, &parsed.challenge, ORIGIN).is_ok();
        let expected = parsed.ty == ceremony.type_str()
            && parsed.origin == ORIGIN
            && !parsed.cross_origin
            && parsed.top_origin.as_deref().is_none_or(|t| t == ORIGIN);
        assert_eq!(
            ok, expected,
            "check disagrees with the parsed fields: {parsed:?}"
        );
        // Another challenge never passes.
        let mut other = parsed.challenge.clone();
        other.push(0);
        assert!(parsed.check(ceremony, &other, ORIGIN).is_err());
    }
});
