//! The SAML HTTP-POST binding: the form's SAMLRequest as received (base64 text), and the
//! same bytes as the XML of a request sent through that binding (an XML signature is then
//! checked by xmlsec). Then `peek` and `verify`.
#![no_main]

use base64::Engine as _;
use keygate::saml::request;
use libfuzzer_sys::fuzz_target;

#[path = "../common/saml.rs"]
mod saml;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    saml::exercise(request::from_post(&text, Some("r".into())));
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    saml::exercise(request::from_post(&encoded, None));
});
