//! A small hand-written HTTP/1.1 server side: request parsing (Content-Length and chunked bodies,
//! `Expect: 100-continue`, keep-alive) and response writing with the fault modes a normal server
//! framework cannot produce (truncated and trickled bodies, reset connections).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed or timed out.
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection in the middle of a request.
    #[error("connection closed in the middle of the request {0}")]
    Eof(&'static str),
    /// The request is not valid HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The request head or body is larger than the limits.
    #[error("request too large: {0}")]
    TooLarge(&'static str),
}

/// One parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, as sent (e.g. `GET`).
    pub method: String,
    /// Request target as sent: path and query (e.g. `/machine/?comp=goalstate`).
    pub target: String,
    /// Header names and values in the order received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
    /// Whether the connection may be reused after this request.
    pub keep_alive: bool,
    /// Bytes the request took on the wire: its head and its body (chunk framing not counted).
    pub wire_len: u64,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The query string after `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The value of query parameter `name` (not percent-decoded; case-sensitive name).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.query(), name)
    }
}

/// The value of parameter `name` in a query string `a=1&b=2`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Reads one request from `reader`. Returns `Ok(None)` when the peer closed the connection cleanly
/// before sending anything. Answers `Expect: 100-continue` on `writer` before reading the body.
pub fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Option<Request>, HttpError> {
    let mut head_len = 0usize;
    let mut line = read_line(reader, &mut head_len)?;
    // Tolerate empty lines before the request line (RFC 9112 §2.2).
    while line.as_deref() == Some("") {
        line = read_line(reader, &mut head_len)?;
    }
    let Some(line) = line else { return Ok(None) };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("request line {line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed(format!("method {method:?}")));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(format!("request target {target:?}")));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        other => return Err(HttpError::Malformed(format!("version {other:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader, &mut head_len)? else {
            return Err(HttpError::Eof("head"));
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("header line {line:?}")));
        };
        if name.is_empty() || name.contains(' ') {
            return Err(HttpError::Malformed(format!("header name {name:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
        keep_alive: false,
        wire_len: 0,
    };
    let connection = req.header("connection").unwrap_or("").to_ascii_lowercase();
    req.keep_alive = if http11 { !connection.contains("close") } else { connection.contains("keep-alive") };

    let chunked =
        req.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        Some(v) => {
            Some(v.parse::<usize>().map_err(|_| HttpError::Malformed(format!("Content-Length {v:?}")))?)
        }
        None => None,
    };
    let has_body = chunked || length.is_some_and(|n| n > 0);
    if has_body && req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if chunked {
        req.body = read_chunked(reader)?;
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(HttpError::TooLarge("body"));
        }
        let mut body = vec![0; n];
        reader.read_exact(&mut body).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HttpError::Eof("body"),
            _ => HttpError::Io(e),
        })?;
        req.body = body;
    }
    req.wire_len = (head_len + req.body.len()) as u64;
    Ok(Some(req))
}

/// Reads one CRLF- (or LF-) terminated line as text. `None` on EOF before any byte.
fn read_line(reader: &mut BufReader<TcpStream>, total: &mut usize) -> Result<Option<String>, HttpError> {
    let mut buf = Vec::new();
    let limit = (MAX_HEAD + 1).saturating_sub(*total) as u64;
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut buf)?;
    *total += n;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if *total > MAX_HEAD { HttpError::TooLarge("head") } else { HttpError::Eof("head") });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| HttpError::Malformed("non-UTF-8 header line".into()))
}

/// Reads a `Transfer-Encoding: chunked` body, dropping chunk extensions and trailers.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        // Each chunk-size, CRLF and trailer line gets the head limit on its own.
        let mut head_len = 0usize;
        let Some(line) = read_line(reader, &mut head_len)? else {
            return Err(HttpError::Eof("chunk size"));
        };
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                match read_line(reader, &mut head_len)? {
                    None => return Err(HttpError::Eof("trailers")),
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => {}
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(HttpError::TooLarge("chunked body"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HttpError::Eof("chunk"),
            _ => HttpError::Io(e),
        })?;
        match read_line(reader, &mut head_len)? {
            Some(l) if l.is_empty() => {}
            _ => return Err(HttpError::Malformed("chunk not followed by CRLF".into())),
        }
    }
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added when writing).
    pub headers: Vec<(String, String)>,
    /// Body bytes (unless `file` is set).
    pub body: Vec<u8>,
    /// A body streamed from this file instead, `len` bytes (never loaded whole).
    pub file: Option<FileBody>,
}

/// A response body read from disk while it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBody {
    /// The file.
    pub path: PathBuf,
    /// Bytes to send (its size when the scenario was loaded).
    pub len: u64,
}

/// The buffer a file body goes through.
const FILE_CHUNK: usize = 64 * 1024;

impl Response {
    /// A response with `status`, a content type and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            file: None,
        }
    }

    /// A response whose body is the first `len` bytes of the file `path`, streamed.
    pub fn file(status: u16, content_type: &str, path: PathBuf, len: u64) -> Self {
        Response { file: Some(FileBody { path, len }), ..Self::new(status, content_type, Vec::new()) }
    }

    /// The length of the body.
    pub fn len(&self) -> usize {
        match &self.file {
            Some(f) => usize::try_from(f.len).unwrap_or(usize::MAX),
            None => self.body.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// An XML response.
    pub fn xml(body: impl Into<String>) -> Self {
        Self::new(200, "application/xml; charset=utf-8", body.into())
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json; charset=utf-8", value.to_string())
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new(), file: None }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// How the body of a response goes onto the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// All of it.
    Normal,
    /// Only the first `keep` bytes while Content-Length announces more; the connection is then closed.
    Truncate {
        /// Bytes actually sent.
        keep: usize,
    },
    /// `chunk` bytes at a time with a pause of `interval` between them.
    Slow {
        /// Bytes per write.
        chunk: usize,
        /// Pause between writes.
        interval: Duration,
    },
}

/// The standard reason phrase for `status`.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// What [`write_response`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Whether the connection may be reused (false after a truncated body or `Connection: close`).
    pub keep_alive: bool,
    /// Bytes written: head and body.
    pub bytes: u64,
}

/// Writes `resp`; `keep_alive` decides the Connection header.
pub fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    keep_alive: bool,
    mode: BodyMode,
) -> io::Result<Sent> {
    // A file body is opened first, so that a file gone missing is a 500, not a broken answer.
    let mut file = match &resp.file {
        Some(f) => match std::fs::File::open(&f.path) {
            Ok(file) => Some(file),
            Err(e) => {
                let failed = Response::text(500, format!("wala-fabric: {}: {e}", f.path.display()));
                return write_response(stream, &failed, false, BodyMode::Normal);
            }
        },
        None => None,
    };
    let len = resp.len();
    let (announced, sent) = match mode {
        BodyMode::Truncate { keep } => {
            let keep = keep.min(len);
            let announced = if keep < len { len } else { keep + 1024 };
            (announced, keep)
        }
        _ => (len, len),
    };
    let keep_alive = keep_alive && !matches!(mode, BodyMode::Truncate { .. });
    let mut head = format!("HTTP/1.1 {} {}\r\nServer: wala-fabric\r\n", resp.status, reason(resp.status));
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // 304 carries no body and 1xx/204 never do; everything else gets an explicit length.
    if !matches!(resp.status, 204 | 304) {
        head.push_str(&format!("Content-Length: {announced}\r\n"));
    }
    head.push_str(if keep_alive { "Connection: keep-alive\r\n\r\n" } else { "Connection: close\r\n\r\n" });
    stream.write_all(head.as_bytes())?;
    let (piece, interval) = match mode {
        BodyMode::Slow { chunk, interval } => (chunk.max(1), Some(interval)),
        _ => (FILE_CHUNK, None),
    };
    let mut buf = vec![0u8; if file.is_some() { piece.min(FILE_CHUNK) } else { 0 }];
    let mut at = 0;
    while at < sent {
        if let Some(interval) = interval.filter(|_| at > 0) {
            std::thread::sleep(interval);
        }
        let n = piece.min(sent - at);
        match &mut file {
            Some(f) => {
                // Slow pieces larger than the buffer go out in several writes.
                let mut left = n;
                while left > 0 {
                    let k = left.min(buf.len());
                    f.read_exact(&mut buf[..k])?;
                    stream.write_all(&buf[..k])?;
                    left -= k;
                }
            }
            None => stream.write_all(&resp.body[at..at + n])?,
        }
        if interval.is_some() {
            stream.flush()?;
        }
        at += n;
    }
    stream.flush()?;
    Ok(Sent { keep_alive, bytes: (head.len() + sent) as u64 })
}

/// Closes `stream` abortively so the peer sees a TCP reset instead of an orderly close.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the descriptor belongs to `stream`, which is alive for the call; the option value is
    // a valid `linger` struct whose size is passed alongside it.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(stream);
}
