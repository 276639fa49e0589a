//! Form and query decoding (src/form.rs). Never a panic; on input that decodes to UTF-8 the
//! strict and repairing decoders agree with each other and with the `url` crate, and a
//! re-encoded form decodes to the same pairs.
#![no_main]

use keygate::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict_body = form::pairs_of_body(data);
    let Ok(raw) = std::str::from_utf8(data) else {
        assert!(strict_body.is_err(), "a body that is not UTF-8 decoded");
        return;
    };
    let _ = form::component(raw);
    let strict = form::pairs(raw);
    let (repaired, was_repaired) = form::pairs_repaired(raw);
    assert_eq!(strict.as_ref().ok(), strict_body.as_ref().ok());
    let Ok(pairs) = strict else {
        assert!(was_repaired, "refused input not reported as repaired");
        return;
    };
    assert_eq!(pairs, repaired, "repairing changed valid input");
    assert!(!was_repaired, "valid input reported as repaired");
    let by_url: Vec<(String, String)> = url::form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs, by_url, "disagrees with the url crate");
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    assert_eq!(
        form::pairs(&encoded).as_ref(),
        Ok(&pairs),
        "re-encoding round trip"
    );
});
