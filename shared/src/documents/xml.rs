//! The one XML reader: every XML document wala reads (`ovf-env.xml`, the WireServer's documents,
//! ExtensionsConfig, manifests) is built into an element tree here, from quick-xml events.
//!
//! - Namespaces are resolved as XML Namespaces says: each element and attribute carries the URI
//!   its prefix is bound to where it appears ([`Element::namespace`]), and its local name.
//!   [`Prefixes::Declared`] refuses a prefix that is not declared (the OVF environment);
//!   [`Prefixes::Lenient`] leaves such a name in no namespace (the WireServer's documents, whose
//!   parsers match local names only, as waagent's do).
//! - Text and CDATA children are concatenated into [`Element::text`], with references decoded
//!   and line ends normalized; [`Element::content`] is the byte range of the element's content
//!   in the source, so a caller can cut a secret out of the document without rewriting the rest.
//!   Text is zeroized when the tree is dropped where it may be a secret ([`Options::secret_text`]:
//!   the OVF's password and custom data; the platform's documents carry protected settings only
//!   encrypted).
//! - Well-formedness is checked: one root, matched tags, unique attributes, no text, CDATA or
//!   reference outside the root, the XML declaration only at the start, no DOCTYPE once the root
//!   has started.
//! - Hostile input stays cheap: the depth and the number of elements and attributes are capped
//!   by the caller's [`Limits`], and building is linear in the document (quick-xml's own
//!   duplicate-attribute check compares each attribute with every earlier one, 11.5 s for
//!   100,000 attributes, so it is off and a hash set finds duplicates instead). An error names
//!   the line and column, never document text that could be secret.
//!
//! A leading byte order mark is the caller's business (offsets are into the text it passes).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use zeroize::Zeroize;

/// The namespace the `xml` prefix is bound to (always, without a declaration).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` declarations; no prefix may be bound to it.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// How large a document's tree may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Most elements.
    pub max_elements: usize,
    /// Most elements and attributes, together (namespace declarations are not counted).
    pub max_nodes: usize,
}

/// What an undeclared namespace prefix means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixes {
    /// The document is not well-formed.
    Declared,
    /// The name is in no namespace (its local name is kept).
    Lenient,
}

/// How to read a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    pub prefixes: Prefixes,
    /// The text may be a secret (a password, custom data): it is zeroized when the tree is
    /// dropped.
    pub secret_text: bool,
}

/// Why a document is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Nothing but whitespace.
    #[error("the document is empty")]
    Empty,
    /// Not well-formed XML.
    #[error("line {line}, column {column}: {message}")]
    Malformed { line: usize, column: usize, message: String },
    /// Elements nested deeper than [`Limits::max_depth`].
    #[error("elements nested deeper than {limit} levels at line {line}")]
    TooDeep { limit: usize, line: usize },
    /// More elements than [`Limits::max_elements`], or elements and attributes than
    /// [`Limits::max_nodes`] (`what` says which).
    #[error("more than {limit} {what} at line {line}, column {column}")]
    TooManyNodes { what: &'static str, limit: usize, line: usize, column: usize },
    /// An entity or character reference in an element's text that cannot be decoded. The
    /// reference itself is not repeated, as it may be part of a password.
    #[error("undecodable entity or character reference in <{element}> at line {line}")]
    BadReference { element: String, line: usize },
}

/// One element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The namespace URI the element's prefix (or the default namespace) is bound to.
    pub namespace: Option<Arc<str>>,
    /// The local name.
    pub name: String,
    pub attrs: Vec<Attribute>,
    pub children: Vec<Element>,
    /// All text directly inside this element (text, CDATA, references), concatenated, untrimmed;
    /// except that a run of only whitespace next to a child element (indentation between child
    /// elements) is not kept. The platform's documents have no mixed content; a leaf element's
    /// text is exactly what is between its tags.
    pub text: String,
    /// The byte range of the element's content (between its start and end tags) in the source.
    pub content: Range<usize>,
    /// Zeroize the text when dropped ([`Options::secret_text`]).
    secret: bool,
}

/// One attribute (namespace declarations are not attributes here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The namespace URI of its prefix; an unprefixed attribute is in no namespace.
    pub namespace: Option<Arc<str>>,
    /// The local name.
    pub name: String,
    /// The value, references decoded.
    pub value: String,
}

impl Drop for Element {
    fn drop(&mut self) {
        if self.secret {
            self.text.zeroize();
        }
    }
}

impl Element {
    /// The first child element named `name` (local name, any namespace).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All child elements named `name` (local name, any namespace), in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// All child elements named `name` in namespace `namespace`, in document order.
    pub fn children_in<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(namespace, name))
    }

    /// Whether this element is `name` in namespace `namespace`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.as_deref() == Some(namespace)
    }

    /// The value of attribute `name` (local name, any namespace).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.value.as_str())
    }

    /// The value of attribute `name` in namespace `namespace`.
    pub fn attr_in(&self, namespace: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name && a.namespace.as_deref() == Some(namespace))
            .map(|a| a.value.as_str())
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

/// How the platform's documents are read (the WireServer's, ExtensionsConfig, manifests): real
/// ones are at most about 8 levels deep and have a few hundred to a few thousand elements and
/// attributes (a 15 KiB ExtensionsConfig, the SharedConfig of a big deployment); the caps keep
/// the tree of a hostile (size-capped, [`crate::base::limits`]) document under about 40 MiB.
/// Prefixes are lenient: their parsers match local names, as waagent's do.
pub const PLATFORM: Options = Options {
    limits: Limits { max_depth: 64, max_elements: 250_000, max_nodes: 250_000 },
    prefixes: Prefixes::Lenient,
    secret_text: false,
};

/// Read one of the platform's documents ([`PLATFORM`]), a leading byte order mark skipped.
pub fn parse_platform(text: &str) -> Result<Element, XmlError> {
    parse(text.strip_prefix('\u{feff}').unwrap_or(text), PLATFORM)
}

/// Read `xml` into its root element.
///
/// ```
/// use wala::documents::xml::{parse, Limits, Options, Prefixes};
///
/// let options = Options {
///     limits: Limits { max_depth: 16, max_elements: 100, max_nodes: 200 },
///     prefixes: Prefixes::Declared,
///     secret_text: false,
/// };
/// let root = parse(r#"<a xmlns:p="urn:p"><p:b k="1&amp;2">text</p:b></a>"#, options).unwrap();
/// let b = root.children_in("urn:p", "b").next().unwrap();
/// assert_eq!((b.attr("k"), b.text_trimmed()), (Some("1&2"), Some("text")));
/// assert!(parse("<q:a/>", options).is_err()); // an undeclared prefix
/// ```
pub fn parse(xml: &str, options: Options) -> Result<Element, XmlError> {
    if xml.trim_matches(is_xml_space).is_empty() {
        return Err(XmlError::Empty);
    }
    let mut builder = TreeBuilder {
        xml,
        options,
        stack: Vec::new(),
        pending_space: String::new(),
        root: None,
        seen_markup: false,
        scopes: Scopes::default(),
        elements: 0,
        nodes: 0,
    };
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    loop {
        let at = to_usize(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(builder.error(to_usize(reader.error_position()), describe(&err))),
        };
        let after = to_usize(reader.buffer_position());
        match event {
            Event::Start(start) => builder.open(&start, at, after, false)?,
            Event::Empty(start) => builder.open(&start, at, after, true)?,
            Event::End(_) => builder.close(at)?,
            Event::Text(text) => {
                if builder.is_indentation(&text) {
                    continue;
                }
                let text = text.xml10_content().map_err(|e| builder.error(at, e.to_string()))?;
                builder.text(&text, at, "text")?;
            }
            Event::CData(cdata) => {
                let text = cdata.xml10_content().map_err(|e| builder.error(at, e.to_string()))?;
                builder.text(&text, at, "CDATA")?;
            }
            Event::GeneralRef(reference) => {
                let decoded = if reference.is_char_ref() {
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        _ => None,
                    }
                } else {
                    reference
                        .decode()
                        .ok()
                        .and_then(|name| quick_xml::escape::resolve_xml_entity(&name).map(str::to_string))
                };
                builder.reference(decoded.as_deref(), at)?;
            }
            Event::Decl(_) => {
                if builder.seen_markup {
                    return Err(builder.error(at, "XML declaration not at the start of the document"));
                }
                builder.seen_markup = true;
            }
            Event::DocType(_) => {
                if !builder.stack.is_empty() || builder.root.is_some() {
                    return Err(builder.error(at, "DOCTYPE after the root element started"));
                }
                builder.seen_markup = true;
            }
            Event::PI(_) | Event::Comment(_) => builder.seen_markup = true,
            Event::Eof => break,
        }
    }
    builder.finish()
}

/// Text for XML content and attribute values: `&`, `<`, `>` and both quotes escaped, and the
/// control characters XML 1.0 cannot carry at all replaced with a space.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// XML's whitespace: space, tab, carriage return, line feed.
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Line and column (both from 1) of a byte offset, for error messages.
fn line_col(xml: &str, pos: usize) -> (usize, usize) {
    let before = xml.as_bytes().get(..pos).unwrap_or(xml.as_bytes());
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Describe a quick-xml error without repeating document text that might be secret (escape errors
/// quote the offending reference).
fn describe(err: &quick_xml::Error) -> String {
    match err {
        quick_xml::Error::Escape(_) => "undecodable entity or character reference".to_string(),
        other => other.to_string(),
    }
}

fn to_usize(pos: u64) -> usize {
    usize::try_from(pos).unwrap_or(usize::MAX)
}

/// The namespace bindings in scope: the default namespace's stack of bindings, the prefix
/// bindings (innermost last; an empty URI undeclares a prefix), and for each open element what
/// it declared, which closing it takes off again. Resolving an unprefixed element name costs
/// nothing; a prefixed name is looked up from the innermost binding outwards, through an index
/// once more than [`Scopes::INDEXED_FROM`] bindings are in scope (so that a document with many
/// declarations stays linear).
#[derive(Default)]
struct Scopes {
    default: Vec<Arc<str>>,
    bindings: Vec<(Box<[u8]>, Arc<str>)>,
    /// For each prefix, the positions of its bindings in `bindings`, innermost last.
    index: Option<HashMap<Box<[u8]>, Vec<usize>>>,
    /// Per open element that declared namespaces: its depth, whether it declared the default
    /// namespace, and how many prefix bindings were in scope before it.
    declared: Vec<(usize, bool, usize)>,
}

impl Scopes {
    const INDEXED_FROM: usize = 16;

    /// Open an element: apply its namespace declarations (`xmlns`, `xmlns:p`; checked as XML
    /// Namespaces requires).
    fn push(&mut self, declarations: Vec<(&[u8], String)>, depth: usize) -> Result<(), String> {
        if declarations.is_empty() {
            return Ok(());
        }
        let mut default = false;
        let before = self.bindings.len();
        for (key, uri) in declarations {
            let prefix = key.strip_prefix(b"xmlns:").unwrap_or(b"");
            match prefix {
                b"xml" if uri == XML_NS => continue,
                b"xml" => return Err("the xml prefix bound to another namespace".into()),
                b"xmlns" => return Err("the xmlns prefix declared".into()),
                _ if !prefix.is_empty() && (uri == XML_NS || uri == XMLNS_NS) => {
                    return Err(format!(
                        "prefix {:?} bound to a reserved namespace",
                        String::from_utf8_lossy(prefix)
                    ));
                }
                _ => {}
            }
            if prefix.is_empty() {
                self.default.push(Arc::from(uri));
                default = true;
            } else {
                self.bindings.push((prefix.into(), Arc::from(uri)));
                let at = self.bindings.len() - 1;
                match &mut self.index {
                    Some(index) => index.entry(prefix.into()).or_default().push(at),
                    None if self.bindings.len() > Self::INDEXED_FROM => {
                        let mut index: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();
                        for (i, (p, _)) in self.bindings.iter().enumerate() {
                            index.entry(p.clone()).or_default().push(i);
                        }
                        self.index = Some(index);
                    }
                    None => {}
                }
            }
        }
        self.declared.push((depth, default, before));
        Ok(())
    }

    /// Close the element at `depth`: its declarations go out of scope.
    fn pop(&mut self, depth: usize) {
        if self.declared.last().is_none_or(|(d, ..)| *d != depth) {
            return;
        }
        let (_, default, before) = self.declared.pop().unwrap_or_default();
        if default {
            self.default.pop();
        }
        if let Some(index) = &mut self.index {
            for (prefix, _) in &self.bindings[before..] {
                if let Some(positions) = index.get_mut(prefix) {
                    positions.pop();
                    if positions.is_empty() {
                        index.remove(prefix);
                    }
                }
            }
        }
        self.bindings.truncate(before);
    }

    /// The innermost binding of `prefix`.
    fn lookup(&self, prefix: &[u8]) -> Option<&Arc<str>> {
        match &self.index {
            Some(index) => index.get(prefix).and_then(|p| p.last()).map(|&i| &self.bindings[i].1),
            None => self.bindings.iter().rev().find(|(p, _)| **p == *prefix).map(|(_, uri)| uri),
        }
    }

    /// Resolve a qualified name (`p:local` or `local`) to its namespace and local name;
    /// unprefixed names take the default namespace when `use_default` (elements), none otherwise
    /// (attributes).
    fn resolve<'n>(
        &self,
        qname: &'n [u8],
        use_default: bool,
        prefixes: Prefixes,
    ) -> Result<(Option<Arc<str>>, &'n [u8]), String> {
        let Some(i) = qname.iter().position(|&b| b == b':') else {
            let namespace =
                if use_default { self.default.last().filter(|u| !u.is_empty()).cloned() } else { None };
            return Ok((namespace, qname));
        };
        let (prefix, local) = (&qname[..i], &qname[i + 1..]);
        if prefix == b"xml" {
            return Ok((Some(Arc::from(XML_NS)), local));
        }
        match self.lookup(prefix) {
            Some(uri) if !uri.is_empty() => Ok((Some(uri.clone()), local)),
            _ if prefix.is_empty() || prefixes == Prefixes::Lenient => Ok((None, local)),
            _ => Err(format!("undeclared namespace prefix {:?}", String::from_utf8_lossy(prefix))),
        }
    }
}

/// State of [`parse`]: the open elements, the finished root, the namespaces in scope.
struct TreeBuilder<'x> {
    xml: &'x str,
    options: Options,
    stack: Vec<Element>,
    /// A whitespace-only run of text in the open element, held back: a child element next drops
    /// it (indentation), anything else appends it to the element's text.
    pending_space: String,
    root: Option<Element>,
    seen_markup: bool,
    scopes: Scopes,
    elements: usize,
    nodes: usize,
}

impl TreeBuilder<'_> {
    fn error(&self, pos: usize, message: impl Into<String>) -> XmlError {
        let (line, column) = line_col(self.xml, pos);
        XmlError::Malformed { line, column, message: message.into() }
    }

    /// Count `elements` new elements and `attributes` new attributes against the limits.
    fn count(&mut self, elements: usize, attributes: usize, at: usize) -> Result<(), XmlError> {
        self.elements += elements;
        self.nodes += elements + attributes;
        let limits = self.options.limits;
        let over = if self.elements > limits.max_elements {
            Some(("elements", limits.max_elements))
        } else if self.nodes > limits.max_nodes {
            Some(("elements and attributes", limits.max_nodes))
        } else {
            None
        };
        match over {
            Some((what, limit)) => {
                let (line, column) = line_col(self.xml, at);
                Err(XmlError::TooManyNodes { what, limit, line, column })
            }
            None => Ok(()),
        }
    }

    fn open(
        &mut self,
        start: &BytesStart<'_>,
        at: usize,
        after: usize,
        is_empty: bool,
    ) -> Result<(), XmlError> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err(self.error(at, "more than one root element"));
        }
        let limit = self.options.limits.max_depth;
        if self.stack.len() >= limit {
            return Err(XmlError::TooDeep { limit, line: line_col(self.xml, at).0 });
        }
        self.seen_markup = true;
        self.pending_space.clear();
        let (declarations, others) = split_attributes(start).map_err(|m| self.error(at, m))?;
        self.count(1, others.len(), at)?;
        let depth = self.stack.len();
        self.scopes.push(declarations, depth).map_err(|m| self.error(at, m))?;
        let element = self.resolve_element(start, others, after).map_err(|m| self.error(at, m))?;
        if is_empty {
            self.scopes.pop(depth);
            self.attach(element);
        } else {
            self.stack.push(element);
        }
        Ok(())
    }

    /// The element whose declarations are in scope: its namespace, local name and attributes.
    fn resolve_element(
        &self,
        start: &BytesStart<'_>,
        attributes: Vec<(&[u8], String)>,
        after: usize,
    ) -> Result<Element, String> {
        let prefixes = self.options.prefixes;
        let (namespace, local) = self.scopes.resolve(start.name().into_inner(), true, prefixes)?;
        let mut attrs = Vec::with_capacity(attributes.len());
        for (key, value) in attributes {
            let (namespace, local) = self.scopes.resolve(key, false, prefixes)?;
            attrs.push(Attribute { namespace, name: self.name(local), value });
        }
        Ok(Element {
            namespace,
            name: self.name(local),
            attrs,
            children: Vec::new(),
            text: String::new(),
            content: after..after,
            secret: self.options.secret_text,
        })
    }

    /// A name, as text: the same bytes of the source `str` (no UTF-8 check needed), or checked
    /// when the reader handed over a copy.
    fn name(&self, bytes: &[u8]) -> String {
        let offset = (bytes.as_ptr() as usize).wrapping_sub(self.xml.as_ptr() as usize);
        match self.xml.get(offset..offset.wrapping_add(bytes.len())) {
            Some(name) if name.as_bytes() == bytes => name.to_owned(),
            _ => String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    fn close(&mut self, at: usize) -> Result<(), XmlError> {
        self.flush_space();
        let Some(mut element) = self.stack.pop() else {
            return Err(self.error(at, "end tag without a start tag"));
        };
        self.scopes.pop(self.stack.len());
        element.content.end = at;
        self.attach(element);
        Ok(())
    }

    fn attach(&mut self, element: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => self.root = Some(element),
        }
    }

    /// Whether raw text is whitespace that is not kept: after a child element, or outside the
    /// root. Checked on the raw bytes, before they are decoded (the common case in indented
    /// documents).
    fn is_indentation(&self, raw: &[u8]) -> bool {
        let after_child = self.stack.last().is_none_or(|e| !e.children.is_empty());
        after_child && raw.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    }

    /// Append held-back whitespace to the open element's text (not next to a child after all).
    fn flush_space(&mut self) {
        if !self.pending_space.is_empty() {
            if let Some(element) = self.stack.last_mut() {
                element.text.push_str(&self.pending_space);
            }
            self.pending_space.clear();
        }
    }

    fn text(&mut self, text: &str, at: usize, what: &str) -> Result<(), XmlError> {
        let only_space = what == "text" && text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        match self.stack.last_mut() {
            // After a child element: indentation, not kept.
            Some(element) if only_space && !element.children.is_empty() => {}
            // Before any child: held back until it is known whether a child follows.
            Some(_) if only_space => self.pending_space.push_str(text),
            Some(_) => {
                self.flush_space();
                if let Some(element) = self.stack.last_mut() {
                    element.text.push_str(text);
                }
            }
            None if what == "text" && text.trim_matches(is_xml_space).is_empty() => {}
            None => return Err(self.error(at, format!("{what} outside the root element"))),
        }
        Ok(())
    }

    /// Append a decoded reference (`None`: undecodable) to the open element's text.
    fn reference(&mut self, decoded: Option<&str>, at: usize) -> Result<(), XmlError> {
        self.flush_space();
        match (self.stack.last_mut(), decoded) {
            (Some(element), Some(text)) => {
                element.text.push_str(text);
                Ok(())
            }
            (Some(element), None) => {
                // The line is counted only here: counting it for every reference would make a
                // document of many references quadratic.
                let element = element.name.clone();
                Err(XmlError::BadReference { element, line: line_col(self.xml, at).0 })
            }
            (None, _) => Err(self.error(at, "reference outside the root element")),
        }
    }

    fn finish(mut self) -> Result<Element, XmlError> {
        if let Some(open) = self.stack.last() {
            return Err(self.error(self.xml.len(), format!("element <{}> is not closed", open.name)));
        }
        match self.root.take() {
            Some(root) => Ok(root),
            None => Err(self.error(self.xml.len(), "no root element")),
        }
    }
}

/// An element's attributes, each checked to be well-formed and unique (in linear time), split
/// into namespace declarations (prefix, `b""` for `xmlns`; URI) and the others (qualified name,
/// value), values with their references decoded.
#[allow(clippy::type_complexity)]
fn split_attributes<'s>(
    start: &'s BytesStart<'_>,
) -> Result<(Vec<(&'s [u8], String)>, Vec<(&'s [u8], String)>), String> {
    /// Up to this many attributes, duplicates are found by comparing with the earlier ones.
    const FEW: usize = 8;
    let (mut declarations, mut others): (Vec<(&[u8], String)>, Vec<(&[u8], String)>) =
        (Vec::new(), Vec::new());
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut iter = start.attributes();
    iter.with_checks(false);
    for attr in iter {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let key: &'s [u8] = attr.key.into_inner();
        let count = declarations.len() + others.len();
        let duplicate = if count < FEW {
            declarations.iter().chain(&others).any(|(k, _)| *k == key)
        } else {
            if seen.is_empty() {
                seen.extend(declarations.iter().chain(&others).map(|(k, _)| *k));
            }
            !seen.insert(key)
        };
        if duplicate {
            return Err(format!("duplicate attribute {:?}", String::from_utf8_lossy(key)));
        }
        let value = attr
            .unescape_value()
            .map_err(|_| {
                format!(
                    "bad value of attribute {:?}: undecodable entity or character reference",
                    String::from_utf8_lossy(key)
                )
            })?
            .into_owned();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            declarations.push((key, value));
        } else {
            others.push((key, value));
        }
    }
    Ok((declarations, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits { max_depth: 64, max_elements: 1_000, max_nodes: 1_000 };
    const STRICT: Options = Options { limits: SMALL, prefixes: Prefixes::Declared, secret_text: true };
    const LENIENT: Options = Options { limits: SMALL, prefixes: Prefixes::Lenient, secret_text: false };

    #[test]
    fn builds_a_tree_with_namespaces_references_and_content_ranges() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c --><a xmlns=\"urn:d\" xmlns:p=\"urn:p\" p:k=\"1&amp;2\" k=\"3\">\
                   <b>u?a=1&amp;b=&#50;</b><p:b/><c><![CDATA[<raw>]]></c><d xmlns=\"\"/></a>";
        let root = parse(doc, STRICT).unwrap();
        assert!(root.is("urn:d", "a"));
        assert_eq!((root.attr_in("urn:p", "k"), root.attr("k")), (Some("1&2"), Some("1&2")));
        assert_eq!(root.attrs[1].namespace, None);
        assert_eq!(root.child_text("b"), Some("u?a=1&b=2"));
        assert_eq!(root.children_named("b").count(), 2);
        assert_eq!(root.children_in("urn:p", "b").count(), 1);
        assert_eq!(root.child_text("c"), Some("<raw>"));
        assert_eq!(root.child("d").unwrap().namespace, None);
        let b = root.child("b").unwrap();
        assert_eq!(&doc[b.content.clone()], "u?a=1&amp;b=&#50;");
    }

    #[test]
    fn an_undeclared_prefix_is_refused_or_left_without_namespace() {
        let e = parse("<x:a/>", STRICT).unwrap_err();
        assert!(e.to_string().contains("undeclared namespace prefix"), "{e}");
        let a = parse("<x:a y:k=\"v\"/>", LENIENT).unwrap();
        assert_eq!((a.name.as_str(), a.namespace.as_deref(), a.attr("k")), ("a", None, Some("v")));
    }

    #[test]
    fn rejects_broken_documents() {
        for options in [STRICT, LENIENT] {
            for bad in [
                "",
                " \n",
                "random non-xml data",
                "<a>",
                "<a></b>",
                "<a/><b/>",
                "<a/>trailing",
                "<a>&nope;</a>",
                "<a>&#xD800;</a>",
                "</a>",
                "<a b=\"1></a>",
                "<a b=\"1\" b=\"2\"/>",
                "<foo><?xml version=\"1.0\"?><a/></foo>",
                "<!DOCTYPE a><a/><!DOCTYPE b>",
                "<![CDATA[x]]><a/>",
                "&amp;<a/>",
                "<a xmlns:xml=\"urn:other\"/>",
            ] {
                assert!(parse(bad, options).is_err(), "{bad:?} accepted");
            }
        }
    }

    #[test]
    fn errors_name_the_line_and_never_the_reference() {
        let e = parse("<a>\n<b>\n</c></a>", STRICT).unwrap_err();
        assert!(matches!(e, XmlError::Malformed { line: 3, .. }), "{e:?}");
        let e = parse("<a>\n<p>se&cret;</p></a>", STRICT).unwrap_err();
        assert_eq!(e, XmlError::BadReference { element: "p".into(), line: 2 });
        assert!(!e.to_string().contains("cret"));
    }

    #[test]
    fn a_hundred_thousand_attributes_are_parsed_in_linear_time() {
        let options = PLATFORM;
        let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"{i}\"")).collect();
        let root = parse(&format!("<a{attrs}/>"), options).expect("valid");
        assert_eq!((root.attrs.len(), root.attr("a99999")), (100_000, Some("99999")));
        let err = parse(&format!("<a{attrs} a5=\"again\"/>"), options).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate attribute \"a5\""), "{err}");
    }

    #[test]
    fn elements_and_attributes_are_capped() {
        let limit = SMALL.max_nodes;
        let err = parse(&format!("<a>{}</a>", "<x/>".repeat(limit)), STRICT).expect_err("too many");
        assert!(matches!(err, XmlError::TooManyNodes { limit: l, line: 1, .. } if l == limit), "{err:?}");
        let attrs: String = (0..limit).map(|i| format!(" a{i}=\"\"")).collect();
        assert!(matches!(parse(&format!("<a{attrs}/>"), STRICT), Err(XmlError::TooManyNodes { .. })));
    }

    #[test]
    fn escaped_text_reads_back_as_it_was() {
        let text = "a&b<c>d\"e'f";
        assert_eq!(escape(text), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        let root = parse(&format!("<a k=\"{0}\">{0}</a>", escape(text)), STRICT).unwrap();
        assert_eq!((root.attr("k"), root.text.as_str()), (Some(text), text));
        assert_eq!(escape("x\u{1}y"), "x y");
    }

    #[test]
    fn indentation_between_child_elements_is_not_text_and_a_leaf_keeps_all_of_its_own() {
        let doc = "<a>\n  <b>  x y  </b>\n  <c> </c>\n  <d>\r\n</d>\n  <e>1 &amp; 2</e>\n</a>";
        let root = parse(doc, LENIENT).expect("parse");
        assert_eq!(root.text, "", "the indentation around a's children");
        let texts: Vec<&str> = root.children.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["  x y  ", " ", "\n", "1 & 2"]);
        let mixed = parse("<m>one <i/> two<j/>  </m>", LENIENT).expect("parse");
        assert_eq!(mixed.text, "one  two", "text next to children is kept, whitespace-only runs are not");
    }

    #[test]
    fn prefixes_resolve_to_the_innermost_binding_with_few_or_many_in_scope() {
        for count in [2, 40] {
            let decls: String = (0..count).map(|i| format!(" xmlns:p{i}=\"urn:outer{i}\"")).collect();
            let doc = format!(
                "<r{decls}><c xmlns:p1=\"urn:inner\"><p1:g/></c><p1:s/><c xmlns:p1=\"\"><p1:u/></c></r>"
            );
            let root = parse(&doc, LENIENT).expect("parse");
            let g = &root.children[0].children[0];
            assert_eq!(g.namespace.as_deref(), Some("urn:inner"), "{count}: the child's own binding");
            assert_eq!(
                root.children[1].namespace.as_deref(),
                Some("urn:outer1"),
                "{count}: back out of scope"
            );
            let u = &root.children[2].children[0];
            assert_eq!(u.namespace, None, "{count}: undeclared again (lenient)");
        }
    }

    #[test]
    fn depth_is_capped() {
        let err = parse(&"<a>".repeat(10_000), STRICT).unwrap_err();
        assert_eq!(err, XmlError::TooDeep { limit: 64, line: 1 });
    }
}
