//! `application/x-www-form-urlencoded` (query strings and form bodies), read strictly.
//!
//! `name=value` pairs joined by `&`, `+` a space, `%XX` one byte. A name or value whose
//! escapes decode to no UTF-8 is refused, never repaired with U+FFFD: a repaired `state`
//! or RelayState would go back to a client other than it came, and a repaired identifier
//! names something nobody sent. Every protocol reads its forms here.

use std::borrow::Cow;

/// Some name or value of a form does not decode to UTF-8 (or the raw form is not UTF-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a parameter is not UTF-8 once decoded")]
pub struct NotUtf8;

/// One pair as sent, split at its first `=` (none: the value is empty). Empty pieces
/// (`a=1&&b=2`) are skipped.
fn raw_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

fn bytes_of(raw: &str) -> Vec<u8> {
    let spaced: Cow<'_, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    percent_encoding::percent_decode_str(&spaced).collect()
}

/// One name or value, decoded.
pub fn component(raw: &str) -> Result<String, NotUtf8> {
    if !raw.contains(['+', '%']) {
        return Ok(raw.to_owned());
    }
    String::from_utf8(bytes_of(raw)).map_err(|_| NotUtf8)
}

/// Every pair of a query string or form, decoded, in the order sent.
pub fn pairs(raw: &str) -> Result<Vec<(String, String)>, NotUtf8> {
    raw_pairs(raw)
        .map(|(name, value)| Ok((component(name)?, component(value)?)))
        .collect()
}

/// [`pairs`] of a body, which must itself be UTF-8.
pub fn pairs_of_body(body: &[u8]) -> Result<Vec<(String, String)>, NotUtf8> {
    pairs(std::str::from_utf8(body).map_err(|_| NotUtf8)?)
}

/// Every pair, what does not decode repaired with U+FFFD, and whether anything was: for
/// a caller that must still find who sent a request it is about to refuse.
pub fn pairs_repaired(raw: &str) -> (Vec<(String, String)>, bool) {
    let mut repaired = false;
    let mut decode = |s: &str| {
        component(s).unwrap_or_else(|_| {
            repaired = true;
            String::from_utf8_lossy(&bytes_of(s)).into_owned()
        })
    };
    let pairs = raw_pairs(raw)
        .map(|(name, value)| (decode(name), decode(value)))
        .collect();
    (pairs, repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decodes_as_browsers_encode() {
        let got = pairs("a=1&&b=x+y%2Bz&c&d=%C3%A9&=e&f=a=b").unwrap();
        let want = owned(&[
            ("a", "1"),
            ("b", "x y+z"),
            ("c", ""),
            ("d", "é"),
            ("", "e"),
            ("f", "a=b"),
        ]);
        assert_eq!(got, want);
        assert_eq!(pairs("").unwrap(), Vec::new());
    }

    #[test]
    fn agrees_with_the_url_crate_on_utf8() {
        for raw in [
            "a=%zz&b=%2",
            "x%20y=1+2",
            "%E2%82%AC=%26&k=v%3D",
            "a==b&=&&",
        ] {
            let theirs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(pairs(raw).unwrap(), theirs, "{raw}");
        }
    }

    #[test]
    fn refuses_escapes_that_are_not_utf8() {
        assert_eq!(pairs("state=%FF"), Err(NotUtf8));
        assert_eq!(pairs("%C3=1"), Err(NotUtf8));
        assert_eq!(component("a%ED%A0%80"), Err(NotUtf8));
        assert_eq!(pairs_of_body(b"a=\xff"), Err(NotUtf8));
        assert_eq!(pairs_of_body(b"a=%E2%82%AC").unwrap(), owned(&[("a", "€")]));
    }

    #[test]
    fn repairs_only_when_asked_and_says_so() {
        let (got, repaired) = pairs_repaired("client_id=rp&state=%FFx");
        assert!(repaired);
        assert_eq!(got, owned(&[("client_id", "rp"), ("state", "\u{FFFD}x")]));
        assert_eq!(pairs_repaired("a=b"), (owned(&[("a", "b")]), false));
    }
}
