//! A tiny element tree built from quick-xml events, enough for the WireServer's small documents.
//!
//! Names are local names (namespace prefixes dropped); text has entity and character references
//! resolved; CDATA is kept as text. The tree depth is capped so hostile input cannot exhaust the
//! stack, and the number of elements and attributes so that the tree stays a small multiple of the
//! (size-capped, see [`crate::base::limits`]) document.
//!
//! Building is linear in the document: quick-xml's own duplicate-attribute check compares each
//! attribute with every earlier one (100,000 attributes took 11.5 s), so it is off and duplicates
//! are found through a hash set instead.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted. WireServer documents are at most about 8 levels deep.
const MAX_DEPTH: usize = 64;

/// Most elements and attributes, together, in one document. The largest real documents (a
/// 15 KiB ExtensionsConfig, a SharedConfig of a big deployment) have a few hundred to a few
/// thousand; the cap keeps the tree of a hostile document under about 40 MiB.
pub(crate) const MAX_NODES: usize = 250_000;

/// One XML element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// All text directly inside this element, concatenated, untrimmed.
    pub text: String,
}

impl Element {
    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All child elements named `name`, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The value of attribute `name` (matched on its local name).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name || k.rsplit_once(':').is_some_and(|(_, local)| local == name))
            .map(|(_, v)| v.as_str())
    }

    /// The element's text, trimmed; `None` when that is empty.
    pub fn text_trimmed(&self) -> Option<&str> {
        Some(self.text.trim()).filter(|t| !t.is_empty())
    }

    /// Trimmed, non-empty text of the first child `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(Element::text_trimmed)
    }

    /// Non-empty, trimmed attribute value.
    pub fn attr_nonempty(&self, name: &str) -> Option<&str> {
        self.attr(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Parse `text` into its root element. The error string says what is wrong and where (byte
/// position); it never contains document content beyond element names.
pub(crate) fn parse(text: &str) -> Result<Element, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut nodes = 0usize;
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event().map_err(|e| format!("{e} (near byte {pos})"))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(format!("content after the root element (near byte {pos})"));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH} (near byte {pos})"));
                }
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                nodes += 1;
                let attrs = attributes(start, &name, &mut nodes)?;
                if nodes > MAX_NODES {
                    return Err(format!("more than {MAX_NODES} elements and attributes (near byte {pos})"));
                }
                let element = Element { name, attrs, ..Element::default() };
                if matches!(event, Event::Empty(_)) {
                    close(element, &mut stack, &mut root);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => match stack.pop() {
                Some(element) => close(element, &mut stack, &mut root),
                None => return Err(format!("unexpected end tag (near byte {pos})")),
            },
            Event::Text(t) => {
                let s = t.decode().map_err(|e| format!("bad text encoding (near byte {pos}): {e}"))?;
                push_text(&mut stack, &s, pos)?;
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| format!("bad CDATA encoding (near byte {pos}): {e}"))?;
                push_text(&mut stack, &s, pos)?;
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| format!("bad character reference (near byte {pos}): {e}"))?
                        .ok_or_else(|| format!("bad character reference (near byte {pos})"))?
                        .to_string()
                } else {
                    let name = r.decode().map_err(|e| format!("bad entity (near byte {pos}): {e}"))?;
                    predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name}; (near byte {pos})"))?
                        .to_string()
                };
                push_text(&mut stack, &resolved, pos)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("element <{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// The attributes of `start` (on element `name`), refusing duplicates in linear time; `nodes`
/// counts them (the caller checks the cap, also stopping here once past it).
fn attributes(
    start: &BytesStart<'_>,
    name: &str,
    nodes: &mut usize,
) -> Result<Vec<(String, String)>, String> {
    let mut attrs = Vec::new();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut iter = start.attributes();
    iter.with_checks(false);
    for attr in iter {
        let attr = attr.map_err(|e| format!("bad attribute on <{name}>: {e}"))?;
        *nodes += 1;
        if *nodes > MAX_NODES {
            break;
        }
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        if !seen.insert(attr.key.into_inner()) {
            return Err(format!("duplicate attribute {key} on <{name}>"));
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad value of attribute {key} on <{name}>: {e}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(attrs)
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

fn push_text(stack: &mut [Element], s: &str, pos: u64) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(format!("text outside the root element (near byte {pos})")),
    }
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tree_with_entities_resolved() {
        let doc = "\u{feff}<?xml version=\"1.0\"?>\n<!-- c --><a x:k=\"1&amp;2\"><b>u?a=1&amp;b=&#50;</b>\
                   <b/><c><![CDATA[<raw>]]></c></a>";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.attr("k"), Some("1&2"));
        assert_eq!(root.child_text("b"), Some("u?a=1&b=2"));
        assert_eq!(root.children_named("b").count(), 2);
        assert_eq!(root.child_text("c"), Some("<raw>"));
    }

    #[test]
    fn rejects_broken_documents() {
        for bad in [
            "",
            "random non-xml data",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a/>trailing",
            "<a>&nope;</a>",
            "<a>&#xD800;</a>",
            "</a>",
            "<a b=\"1></a>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_hundred_thousand_attributes_are_parsed_in_linear_time() {
        let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"{i}\"")).collect();
        let root = parse(&format!("<a{attrs}/>")).expect("valid");
        assert_eq!((root.attrs.len(), root.attr("a99999")), (100_000, Some("99999")));
        let err = parse(&format!("<a{attrs} a5=\"again\"/>")).expect_err("duplicate");
        assert!(err.contains("duplicate attribute a5 on <a>"), "{err}");
    }

    #[test]
    fn elements_and_attributes_are_capped() {
        let err = parse(&format!("<a>{}</a>", "<x/>".repeat(MAX_NODES))).expect_err("too many");
        assert!(err.contains(&format!("more than {MAX_NODES} elements and attributes")), "{err}");
        let attrs: String = (0..MAX_NODES).map(|i| format!(" a{i}=\"\"")).collect();
        assert!(parse(&format!("<a{attrs}/>")).expect_err("too many").contains("more than"));
    }

    #[test]
    fn depth_is_capped() {
        let deep = "<a>".repeat(10_000);
        let err = parse(&deep).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }
}
