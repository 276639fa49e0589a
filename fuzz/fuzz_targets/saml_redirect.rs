//! The SAML HTTP-Redirect binding: the query string as received (parameters, percent
//! escapes, base64, DEFLATE, the query signature), and the same bytes as the XML of a
//! request sent through that binding. Then `peek` and `verify`.
#![no_main]

use std::io::Write;

use base64::Engine as _;
use keygate::saml::request;
use libfuzzer_sys::fuzz_target;

#[path = "../common/saml.rs"]
mod saml;

fuzz_target!(|data: &[u8]| {
    saml::exercise(request::from_redirect(&String::from_utf8_lossy(data)));

    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    deflater.write_all(data).expect("deflate to memory");
    let deflated = deflater.finish().expect("deflate to memory");
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", &encoded)
        .append_pair("RelayState", "r")
        .finish();
    saml::exercise(request::from_redirect(&query));
});
