//! SP metadata import: any text gives a registration or an error, never a panic; an
//! imported registration holds together (its certificates parse, its ACS URL resolves).
#![no_main]

use keygate::saml::metadata::import_sp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sp) = import_sp(text) else {
        return;
    };
    let _ = sp.validate();
    let _ = sp.peer_certs();
    let _ = sp.display_name();
    let _ = sp.acs_for(None, None);
});
