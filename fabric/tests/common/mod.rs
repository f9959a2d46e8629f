//! A tiny HTTP/1.1 client on std TcpStream, strict enough to observe the fabric's faults.

#![allow(dead_code, clippy::unwrap_used)] // test-only helper: a failed step should fail the test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Writes one request on `stream`.
pub fn send(stream: &mut TcpStream, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: fabric\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// Reads one response. Errors (reset, EOF before the announced length) come back as `Err`.
pub fn receive(reader: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        reader.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Reply { status, headers, body })
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    send(&mut stream, method, target, &all, body);
    receive(&mut BufReader::new(stream))
}

pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", target, headers, b"").unwrap()
}

/// WireServer headers (spec §2.1).
pub const WIRE: &[(&str, &str)] = &[("x-ms-agent-name", "WALinuxAgent"), ("x-ms-version", "2012-11-30")];

/// The HostGAPlugin headers for the built-in scenario's container.
pub const HGAP: &[(&str, &str)] =
    &[("x-ms-version", "2015-09-01"), ("x-ms-containerid", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")];

/// The text of the first `<name>` element in `xml`.
pub fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{name}> in {xml}")) + open.len();
    let len = xml[start..].find(&format!("</{name}>")).unwrap();
    &xml[start..start + len]
}

/// The path and query of an absolute URL, XML-unescaped.
pub fn target_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].replace("&amp;", "&")
}
