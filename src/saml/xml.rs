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

/// The root element of a document: its local name and namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct Root {
    pub local_name: String,
    pub namespace: Option<String>,
}

/// Reads a whole document and refuses anything but one root element: before it, only an
/// XML declaration, comments and whitespace; after it, only whitespace (no second element,
/// text, comment or processing instruction). A parser that stops at the first element's
/// end would otherwise act on a document another parser reads differently. A DTD is
/// refused as in [`refuse_dtd`]; unbalanced tags are not well-formed.
pub fn single_root(xml: &str) -> Result<Root, super::SamlError> {
    use super::SamlError;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;

    let malformed = |what: &str| SamlError::Malformed(what.into());
    let body = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = quick_xml::NsReader::from_str(body);
    let mut root: Option<Root> = None;
    let mut depth = 0usize;
    let mut first = true;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|_| malformed("the message is not well-formed XML"))?;
        match event {
            Event::DocType(_) => {
                return Err(SamlError::Forbidden(
                    "the message carries a DTD or entity declarations, which keygate never accepts",
                ))
            }
            Event::Start(ref e) | Event::Empty(ref e) if depth == 0 => {
                if root.is_some() {
                    return Err(malformed(
                        "the message has a second element after its root element",
                    ));
                }
                root = Some(Root {
                    local_name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    namespace: match ns {
                        ResolveResult::Bound(n) => {
                            Some(String::from_utf8_lossy(n.as_ref()).into_owned())
                        }
                        _ => None,
                    },
                });
                if matches!(event, Event::Start(_)) {
                    depth = 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| malformed("the message is not well-formed XML"))?;
            }
            Event::Eof => {
                if depth > 0 {
                    return Err(malformed("the message is not well-formed XML"));
                }
                return root.ok_or_else(|| malformed("the message has no root element"));
            }
            // Inside the root element: its content, read by the caller.
            _ if depth > 0 => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Decl(_) if first => {}
            Event::Comment(_) if root.is_none() => {}
            _ if root.is_some() => {
                return Err(malformed(
                    "the message has content after its root element; only whitespace may follow it",
                ))
            }
            _ => return Err(malformed("the message has content before its root element")),
        }
        first = false;
    }
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

    fn root_of(xml: &str) -> Result<String, String> {
        single_root(xml)
            .map(|r| format!("{}|{}", r.local_name, r.namespace.unwrap_or_default()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_root_element_with_whitespace_around_it_is_read() {
        let ok = [
            "<p:A xmlns:p=\"urn:p\"><p:B/>text<!-- c --><?pi x?></p:A>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<p:A xmlns:p=\"urn:p\"/>\n",
            "\u{feff}<!-- generated -->\n<p:A xmlns:p=\"urn:p\"></p:A>\r\n\t ",
        ];
        for xml in ok {
            assert_eq!(root_of(xml).as_deref(), Ok("A|urn:p"), "{xml}");
        }
    }

    #[test]
    fn anything_after_the_root_element_is_refused() {
        for tail in [
            "<p:A xmlns:p=\"urn:p\"/>",
            "<B/>",
            "<B>x</B>",
            "text",
            "&amp;",
            "<![CDATA[x]]>",
            "<!-- comment -->",
            "<?pi x?>",
        ] {
            for root in [
                "<p:A xmlns:p=\"urn:p\"><p:B/></p:A>",
                "<p:A xmlns:p=\"urn:p\"/>",
            ] {
                let xml = format!("{root}\n{tail}\n");
                let err = root_of(&xml).expect_err(&xml);
                assert!(err.contains("after its root element"), "{xml}: {err}");
            }
        }
    }

    #[test]
    fn documents_that_are_not_one_balanced_element_are_refused() {
        for xml in [
            "",
            "  \n",
            "<!-- only a comment -->",
            "<a>",
            "<a><b></a>",
            "<a></a></b>",
            "text<a/>",
            "<?pi x?><a/>",
            "<a/><?xml version=\"1.0\"?>",
        ] {
            assert!(single_root(xml).is_err(), "{xml:?}");
        }
        assert!(matches!(
            single_root("<!DOCTYPE a><a/>"),
            Err(crate::saml::SamlError::Forbidden(_))
        ));
    }
}
