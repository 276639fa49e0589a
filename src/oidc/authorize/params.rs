//! Parsing of the authorization request's structured parameters.

use serde_json::Value;

use super::{AcrRequest, Prompt};

/// A parameter name safe to put in a description (printable ASCII, short).
pub(super) fn printable(name: &str) -> String {
    let clean: String = crate::oidc::error::safe_description(name)
        .chars()
        .take(40)
        .collect();
    if clean.is_empty() {
        "a parameter".into()
    } else {
        clean
    }
}

pub(super) fn parse_prompt(p: &str) -> Result<Prompt, String> {
    let mut prompt = Prompt::default();
    for v in p.split(' ').filter(|s| !s.is_empty()) {
        match v {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => prompt.select_account = true,
            _ => return Err("prompt has an unsupported value".into()),
        }
    }
    if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
        return Err("prompt=none cannot be combined with other values".into());
    }
    Ok(prompt)
}

/// The `acr` member of the `claims` parameter's `id_token` object, if any
/// (OpenID Connect Core §5.5, §5.5.1.1).
pub(super) fn parse_claims_acr(c: &str) -> Result<Option<AcrRequest>, String> {
    let bad = || "claims is not a valid claims request".to_owned();
    let v: Value = serde_json::from_str(c).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    for (k, member) in obj {
        if (k == "id_token" || k == "userinfo") && !(member.is_object() || member.is_null()) {
            return Err(bad());
        }
    }
    let Some(acr) = obj.get("id_token").and_then(|t| t.get("acr")) else {
        return Ok(None);
    };
    match acr {
        Value::Null => Ok(Some(AcrRequest::default())),
        Value::Object(o) => {
            let essential = match o.get("essential") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad()),
            };
            let mut values = Vec::new();
            if let Some(one) = o.get("value") {
                values.push(one.as_str().ok_or_else(bad)?.to_owned());
            }
            if let Some(many) = o.get("values") {
                for x in many.as_array().ok_or_else(bad)? {
                    values.push(x.as_str().ok_or_else(bad)?.to_owned());
                }
            }
            Ok(Some(AcrRequest { values, essential }))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert!(parse_prompt("login consent").unwrap().login);
        assert!(parse_prompt("none login").is_err());
        assert!(parse_prompt("create").is_err());
    }

    #[test]
    fn claims_acr_shapes() {
        let a =
            parse_claims_acr(r#"{"id_token":{"acr":{"essential":true,"values":["phrh","phr"]}}}"#)
                .unwrap()
                .unwrap();
        assert!(a.essential);
        assert_eq!(a.values, ["phrh", "phr"]);
        let a = parse_claims_acr(r#"{"id_token":{"acr":{"value":"phr"}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!((a.values.len(), a.essential), (1, false));
        assert_eq!(
            parse_claims_acr(r#"{"userinfo":{"email":null}}"#).unwrap(),
            None
        );
        for bad in [
            "[]",
            "{",
            r#"{"id_token":3}"#,
            r#"{"id_token":{"acr":{"values":"phr"}}}"#,
            r#"{"id_token":{"acr":{"essential":"yes"}}}"#,
            r#"{"id_token":{"acr":[1]}}"#,
        ] {
            assert!(parse_claims_acr(bad).is_err(), "{bad}");
        }
    }
}
