//! The hardened reader for WeChat's flat XML: an `<xml>` root whose direct children are named
//! fields holding text or CDATA. Both the encrypted push body and the decrypted event use it.
//!
//! Everything read here comes from outside, so the reader refuses what a field list never
//! needs: a DOCTYPE (and with it every custom entity, so no entity expansion can happen), any
//! entity other than the five predefined ones and character references, nesting deeper than
//! [`MAX_DEPTH`], text outside the fields, and more than one root. The size limit is checked
//! before parsing. Errors name the problem and a byte position, never the document's content:
//! the decrypted document holds secrets.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;

/// How deep elements may nest. WeChat's fields sit at depth 2; some event kinds this
/// server does not interpret carry a small structure under one field, which is skipped.
pub const MAX_DEPTH: usize = 8;

/// Why a document or one of its fields was refused. Field names in these messages are this
/// server's own (`&'static str`), so nothing from the document is quoted back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the XML document is {len} bytes, above the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("the XML document is not UTF-8")]
    NotUtf8,
    #[error("the XML document declares a DOCTYPE, which is refused")]
    Doctype,
    #[error("the XML document refers to an entity other than the predefined ones")]
    UnknownEntity,
    #[error("the XML document's root element is not <xml>")]
    Root,
    #[error("the XML document nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the XML document is malformed near byte {position}")]
    Syntax { position: u64 },
    #[error("the XML field <{0}> is missing")]
    Missing(&'static str),
    #[error("the XML field <{0}> appears more than once")]
    Duplicate(&'static str),
    #[error("the XML field <{field}> is invalid: {why}")]
    Invalid {
        field: &'static str,
        why: &'static str,
    },
}

/// The direct children of `<xml>`, in document order, each with its text and CDATA joined and
/// XML whitespace trimmed from both ends. A child that holds a nested structure keeps only its
/// own direct text; the structure is skipped.
#[derive(Clone, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses `doc`, refusing it unhurt if it is larger than `max` bytes.
    pub fn parse(doc: &[u8], max: usize) -> Result<Fields, XmlError> {
        if doc.len() > max {
            return Err(XmlError::TooLarge {
                len: doc.len(),
                max,
            });
        }
        let text = std::str::from_utf8(doc).map_err(|_| XmlError::NotUtf8)?;
        read(text)
    }

    /// The value of the field `name`, if present once. Present twice is an error: which of the
    /// two a sender meant cannot be told, and a signature check over one while the other is
    /// used would be a confusion waiting to happen.
    pub fn optional(&self, name: &'static str) -> Result<Option<&str>, XmlError> {
        let mut found = None;
        for (n, v) in &self.0 {
            if n == name {
                if found.is_some() {
                    return Err(XmlError::Duplicate(name));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    /// The value of the field `name`, which must be present once and not empty.
    pub fn required(&self, name: &'static str) -> Result<&str, XmlError> {
        match self.optional(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(XmlError::Missing(name)),
        }
    }

    /// The fields in document order, repeated ones each time.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many fields the document has (repeated ones counted each time).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Only the field names: values may be secrets.
impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

fn read(text: &str) -> Result<Fields, XmlError> {
    let mut reader = Reader::from_str(text);
    // `<Field/>` reads as an empty field, like `<Field></Field>`.
    reader.config_mut().expand_empty_elements = true;
    let mut fields = Vec::new();
    // The field being read (depth 2): its name and the text gathered so far.
    let mut current: Option<(String, String)> = None;
    let mut depth = 0usize;
    let mut root_closed = false;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(_) => {
                return Err(XmlError::Syntax {
                    position: reader.error_position(),
                })
            }
        };
        match event {
            Event::Start(start) => {
                if root_closed {
                    return Err(XmlError::Syntax {
                        position: reader.buffer_position(),
                    });
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = start.name();
                if depth == 1 && name.as_ref() != "xml" {
                    return Err(XmlError::Root);
                }
                if depth == 2 {
                    current = Some((name.as_ref().to_owned(), String::new()));
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some((name, value)) = current.take() {
                        let value = value.trim_matches(is_xml_space).to_owned();
                        fields.push((name, value));
                    }
                }
                if depth == 1 {
                    root_closed = true;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                append(&mut current, depth, &content, reader.buffer_position())?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                let position = reader.buffer_position();
                // CDATA between fields or outside the root is text where none belongs, even
                // if it is only whitespace.
                if depth < 2 {
                    return Err(XmlError::Syntax { position });
                }
                append(&mut current, depth, &content, position)?;
            }
            Event::GeneralRef(r) => {
                let resolved = resolve_reference(&r, reader.error_position())?;
                // A reference is never whitespace-only text, so between fields it is refused.
                if depth < 2 {
                    return Err(XmlError::Syntax {
                        position: reader.buffer_position(),
                    });
                }
                append(&mut current, depth, &resolved, reader.buffer_position())?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            // Never produced with `expand_empty_elements`; refused rather than ignored.
            Event::Empty(_) => {
                return Err(XmlError::Syntax {
                    position: reader.buffer_position(),
                })
            }
            Event::Eof => break,
        }
    }
    if !root_closed || depth != 0 {
        return Err(XmlError::Syntax {
            position: reader.buffer_position(),
        });
    }
    Ok(Fields(fields))
}

/// The text of a character reference (`&#x4e2d;`) or of one of XML's five predefined
/// entities (`&amp;`); any other entity is refused: nothing here reads a DTD. `position` is
/// where a malformed character reference is reported.
fn resolve_reference(r: &BytesRef<'_>, position: u64) -> Result<String, XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            _ => Err(XmlError::Syntax { position }),
        };
    }
    resolve_predefined_entity(r)
        .map(str::to_owned)
        .ok_or(XmlError::UnknownEntity)
}

/// Adds text met at `depth` to the field being read. Deeper text belongs to a skipped
/// structure; text at the root level or outside it must be whitespace (indentation).
fn append(
    current: &mut Option<(String, String)>,
    depth: usize,
    text: &str,
    position: u64,
) -> Result<(), XmlError> {
    match (depth, current) {
        (2, Some((_, value))) => value.push_str(text),
        (d, _) if d > 2 => {}
        _ if text.chars().all(is_xml_space) => {}
        _ => return Err(XmlError::Syntax { position }),
    }
    Ok(())
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Writes `value` as CDATA. A `]]>` inside the value would end the section early, so the
/// section is split around it; readers join adjacent sections back.
pub fn push_cdata(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]>");
}

/// Writes `<name>` with `value` as CDATA.
pub fn push_cdata_field(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_cdata(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Writes `<name>` with `value` as plain text (for numbers).
pub fn push_text_field(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&quick_xml::escape::escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Fields, XmlError> {
        Fields::parse(s.as_bytes(), 4096)
    }

    #[test]
    fn reads_text_cdata_and_predefined_references() {
        let f = parse(
            "<?xml version=\"1.0\"?>\n<xml>\n  <A>plain</A>\n  <B><![CDATA[in <cdata>]]></B>\n  \
             <C> a &amp; b &#x41;&#66; </C><D/><E><![CDATA[x]]]]><![CDATA[>y]]></E>\n</xml>\n",
        )
        .unwrap();
        assert_eq!(f.required("A").unwrap(), "plain");
        assert_eq!(f.required("B").unwrap(), "in <cdata>");
        assert_eq!(f.required("C").unwrap(), "a & b AB");
        assert_eq!(f.optional("D").unwrap(), Some(""));
        assert_eq!(f.required("E").unwrap(), "x]]>y");
        assert_eq!(f.optional("Z").unwrap(), None);
        assert_eq!(f.required("D"), Err(XmlError::Missing("D")), "empty");
        assert_eq!(f.required("Z"), Err(XmlError::Missing("Z")));
    }

    #[test]
    fn skips_nested_structures_but_keeps_the_field() {
        let f = parse("<xml><Info><Name><![CDATA[n]]></Name></Info><A>1</A></xml>").unwrap();
        assert_eq!(f.optional("Info").unwrap(), Some(""));
        assert_eq!(f.optional("Name").unwrap(), None, "only direct children");
        assert_eq!(f.required("A").unwrap(), "1");
    }

    #[test]
    fn duplicates_are_refused_when_asked_for() {
        let f = parse("<xml><A>1</A><A>2</A><B>3</B></xml>").unwrap();
        assert_eq!(f.optional("A"), Err(XmlError::Duplicate("A")));
        assert_eq!(f.required("A"), Err(XmlError::Duplicate("A")));
        assert_eq!(f.required("B").unwrap(), "3");
    }

    #[test]
    fn hostile_documents_are_refused() {
        let doctype = "<!DOCTYPE xml [<!ENTITY big \"aaaaaaaaaaaaaaaa\">]><xml><A>&big;</A></xml>";
        assert_eq!(parse(doctype), Err(XmlError::Doctype));
        assert_eq!(
            parse("<xml><A>&big;</A></xml>"),
            Err(XmlError::UnknownEntity)
        );
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
        let big = format!("<xml><A>{}</A></xml>", "a".repeat(5000));
        assert_eq!(
            parse(&big),
            Err(XmlError::TooLarge {
                len: big.len(),
                max: 4096
            })
        );
        assert_eq!(
            Fields::parse(b"<xml><A>\xff</A></xml>", 100),
            Err(XmlError::NotUtf8)
        );
        assert_eq!(parse("<root><A>1</A></root>"), Err(XmlError::Root));
        for bad in [
            "",
            "   ",
            "not xml",
            "<xml><A>1</A>",
            "<xml><A>1</B></xml>",
            "<xml><A>1</A></xml><xml></xml>",
            "<xml>loose text<A>1</A></xml>",
            "<xml><![CDATA[loose]]><A>1</A></xml>",
            "<xml>&amp;<A>1</A></xml>",
            "<xml></xml>trailing",
            "<xml><A>&#0;</A></xml>",
            "<xml><A>&#xD800;</A></xml>",
            "<xml><A>&amp</A></xml>",
            "<xml><A>1</A></xml></xml>",
        ] {
            assert!(
                matches!(parse(bad), Err(XmlError::Syntax { .. })),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn errors_and_debug_never_quote_the_document() {
        let secret = "ticket@@@very-secret-value";
        let f = parse(&format!("<xml><Ticket>{secret}</Ticket></xml>")).unwrap();
        assert!(!format!("{f:?}").contains(secret));
        for bad in [
            format!("<xml><{secret}>1</x></xml>"),
            format!("<xml><A>{secret}</B></xml>"),
            format!("<{secret}></{secret}>"),
            format!("<xml>{secret}</xml>"),
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn writers_round_trip_through_the_reader() {
        let mut doc = String::from("<xml>");
        push_cdata_field(&mut doc, "A", "a]]>b<c>&d");
        push_text_field(&mut doc, "B", "1<2&3");
        doc.push_str("</xml>");
        let f = parse(&doc).unwrap();
        assert_eq!(f.required("A").unwrap(), "a]]>b<c>&d");
        assert_eq!(f.required("B").unwrap(), "1<2&3");
    }
}
