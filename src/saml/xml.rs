//! Writing XML that is already in exclusive canonical form (W3C xml-exc-c14n), and the
//! escaping every value needs on its way in.
//!
//! keygate writes its own responses, so it can write them canonically: no XML declaration,
//! no whitespace between elements, explicit end tags, namespace declarations only where a
//! prefix is first used, attributes sorted by name, and c14n's escaping rules. The bytes
//! written are then exactly the bytes a verifier canonicalises, which is what makes the
//! digest of an element the digest of its text. Every value (user names, e-mail addresses,
//! entity IDs, URLs from config or requests) goes through [`text`] or [`attr`]: nothing
//! reaches the output unescaped.

/// Escapes character data (c14n §2.3: `&`, `<`, `>`, carriage return). Characters XML 1.0
/// forbids (most C0 controls, unpaired surrogates cannot occur in `str`, U+FFFE/U+FFFF)
/// become U+FFFD so that a hostile display name can never make the document unparseable.
pub fn text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if !allowed(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Escapes an attribute value (c14n §2.3: `&`, `<`, `"`, tab, newline, carriage return).
pub fn attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if !allowed(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// XML 1.0 `Char`.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A canonical writer. Attribute lists are sorted here, so callers list them in any order;
/// namespace declarations come first, as c14n requires.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            out: String::with_capacity(4096),
        }
    }

    /// `<name xmlns:p="ns"… a="v"…>`. `ns` are `(prefix, uri)` declarations, written in
    /// prefix order; `attrs` are unprefixed attributes.
    pub fn open(&mut self, name: &str, ns: &[(&str, &str)], attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        let mut ns = ns.to_vec();
        ns.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (prefix, uri) in ns {
            self.out.push_str(" xmlns:");
            self.out.push_str(prefix);
            self.out.push_str("=\"");
            attr(uri, &mut self.out);
            self.out.push('"');
        }
        let mut attrs = attrs.to_vec();
        attrs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, value) in attrs {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            attr(value, &mut self.out);
            self.out.push('"');
        }
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// An element with only text (or nothing) in it.
    pub fn leaf(&mut self, name: &str, ns: &[(&str, &str)], attrs: &[(&str, &str)], body: &str) {
        self.open(name, ns, attrs);
        text(body, &mut self.out);
        self.close(name);
    }

    /// Appends markup that is already canonical (a signed element written by this module).
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Splits off everything written from `at` on.
    pub fn split_off(&mut self, at: usize) -> String {
        self.out.split_off(at)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Refuses documents that carry a DTD: no internal subset, no entity declarations, no
/// external entities (XXE), before any parser sees the bytes.
pub fn refuse_dtd(xml: &str) -> Result<(), super::SamlError> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(super::SamlError::Forbidden(
            "the message carries a DTD or entity declarations, which keygate never accepts",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_inject_markup() {
        let mut w = Writer::new();
        w.leaf(
            "saml:AttributeValue",
            &[],
            &[("Name", "a\"><x y=\"")],
            "</saml:AttributeValue><saml:Attribute Name=\"role\">admin\r",
        );
        let out = w.finish();
        assert_eq!(
            out,
            "<saml:AttributeValue Name=\"a&quot;>&lt;x y=&quot;\">&lt;/saml:AttributeValue&gt;&lt;saml:Attribute Name=\"role\"&gt;admin&#xD;</saml:AttributeValue>"
        );
    }

    #[test]
    fn forbidden_characters_are_replaced_and_attributes_sorted() {
        let mut w = Writer::new();
        w.open(
            "a",
            &[("z", "urn:z"), ("b", "urn:b")],
            &[("Z", "1"), ("A", "x\u{1}\ty")],
        );
        assert_eq!(
            w.finish(),
            "<a xmlns:b=\"urn:b\" xmlns:z=\"urn:z\" A=\"x\u{FFFD}&#x9;y\" Z=\"1\">"
        );
    }

    #[test]
    fn dtds_are_refused_whatever_their_case() {
        assert!(refuse_dtd("<?xml version=\"1.0\"?><!doctype x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>").is_err());
        assert!(refuse_dtd("<x><!ENTITY a \"b\"></x>").is_err());
        assert!(refuse_dtd("<samlp:AuthnRequest ID=\"_1\"/>").is_ok());
    }
}
