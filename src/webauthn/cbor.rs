//! Small helpers over `ciborium::Value` for the fixed CBOR shapes WebAuthn uses.

use ciborium::value::Value;

use super::error::WebauthnError;

/// Nesting depth allowed in any CBOR item we read (COSE keys and attestation
/// statements are two or three levels deep; extensions a few more).
const RECURSION_LIMIT: usize = 16;

/// Entries accepted in the fixed-shape maps (attestation object, statement, COSE key);
/// bounds the duplicate-key check.
const MAX_MAP_ENTRIES: usize = 32;

/// Decodes the first CBOR item of `input`; returns it and the number of bytes it used.
pub(crate) fn decode_prefix(input: &[u8]) -> Result<(Value, usize), WebauthnError> {
    let mut rest = input;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, RECURSION_LIMIT)
        .map_err(|e| WebauthnError::MalformedCbor(describe(&e)))?;
    Ok((value, input.len() - rest.len()))
}

/// Decodes exactly one CBOR item that must fill `input`.
pub(crate) fn decode_exact(input: &[u8], what: &str) -> Result<Value, WebauthnError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(WebauthnError::MalformedCbor(format!(
            "{} trailing bytes after the {what}",
            input.len() - used
        )));
    }
    Ok(value)
}

fn describe<E: std::fmt::Debug>(e: &ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "unexpected end of input".to_owned(),
        ciborium::de::Error::Syntax(at) => format!("syntax error at byte {at}"),
        ciborium::de::Error::Semantic(at, msg) => match at {
            Some(at) => format!("{msg} at byte {at}"),
            None => msg.clone(),
        },
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    }
}

/// The entries of a map, refusing duplicate keys.
pub(crate) fn map_entries<'v>(
    value: &'v Value,
    what: &str,
) -> Result<&'v [(Value, Value)], WebauthnError> {
    let Value::Map(entries) = value else {
        return Err(WebauthnError::MalformedCbor(format!(
            "{what} is not a CBOR map"
        )));
    };
    if entries.len() > MAX_MAP_ENTRIES {
        return Err(WebauthnError::MalformedCbor(format!(
            "{what} has {} entries, more than the {MAX_MAP_ENTRIES} accepted",
            entries.len()
        )));
    }
    for (i, (k, _)) in entries.iter().enumerate() {
        if entries.iter().skip(i + 1).any(|(other, _)| other == k) {
            return Err(WebauthnError::MalformedCbor(format!(
                "{what} has a duplicate key"
            )));
        }
    }
    Ok(entries)
}

/// The integer value of a CBOR integer.
pub(crate) fn as_int(value: &Value) -> Option<i128> {
    match value {
        Value::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

/// Looks up an integer key.
pub(crate) fn get_int_key(entries: &[(Value, Value)], key: i128) -> Option<&Value> {
    entries
        .iter()
        .find(|(k, _)| as_int(k) == Some(key))
        .map(|(_, v)| v)
}

/// Looks up a text key.
pub(crate) fn get_text_key<'v>(entries: &'v [(Value, Value)], key: &str) -> Option<&'v Value> {
    entries
        .iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}
