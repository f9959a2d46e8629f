//! The request log: every request the fabric received, in memory and optionally as JSON lines.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::http::Request;
use crate::Listener;

/// One received request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Which listener received it.
    pub listener: Listener,
    /// Method (e.g. `GET`).
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Headers in the order received.
    pub headers: Vec<(String, String)>,
    /// The body: text when it is UTF-8, else base64 (see `body_base64`).
    pub body: String,
    /// Whether `body` is base64 because the bytes were not UTF-8.
    pub body_base64: bool,
    /// Milliseconds since the fabric started.
    pub elapsed_ms: u64,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The body bytes (base64 decoded when needed).
    pub fn body_bytes(&self) -> Vec<u8> {
        if self.body_base64 {
            base64::engine::general_purpose::STANDARD.decode(&self.body).unwrap_or_default()
        } else {
            self.body.clone().into_bytes()
        }
    }
}

/// Keeps the request log.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    entries: Mutex<Vec<RecordedRequest>>,
    file: Option<Mutex<File>>,
}

/// The record file could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the record file {path}: {source}")]
pub struct RecordFileError {
    path: String,
    source: std::io::Error,
}

impl Recorder {
    /// A recorder that also appends JSON lines to `path` when given.
    pub fn new(start: Instant, path: Option<&Path>) -> Result<Self, RecordFileError> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                File::create(p)
                    .map_err(|source| RecordFileError { path: p.display().to_string(), source })?,
            )),
            None => None,
        };
        Ok(Recorder { start, entries: Mutex::new(Vec::new()), file })
    }

    /// Records `req` as received on `listener`.
    pub fn record(&self, listener: Listener, req: &Request) {
        let (body, body_base64) = match std::str::from_utf8(&req.body) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(&req.body), true),
        };
        let entry = RecordedRequest {
            listener,
            method: req.method.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            body,
            body_base64,
            elapsed_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        if let Some(file) = &self.file {
            if let (Ok(mut f), Ok(line)) = (file.lock(), serde_json::to_string(&entry)) {
                // The log is best effort: a full disk must not take the fabric down.
                let _ = writeln!(f, "{line}");
            }
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
        }
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Forgets everything recorded so far (the file is kept).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
