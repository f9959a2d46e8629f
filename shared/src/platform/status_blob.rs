//! Uploading the aggregate status document to the `StatusUploadBlob` (spec wire.md §11.3): through
//! the HostGAPlugin's `/status` first, then directly to storage; a BlockBlob is one PUT, a PageBlob
//! is a create then 512-byte-aligned page writes of at most 4 MiB.

use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::platform::hostgaplugin::{ContainerIdentity, HostGaPluginClient};
use crate::platform::http::{HttpClient, HttpError, Request, RetryPolicy};

/// The Azure Storage REST version the blob requests use.
pub const STORAGE_VERSION: &str = "2014-02-14";
const PAGE: usize = 512;
const MAX_PAGE_WRITE: usize = 4 * 1024 * 1024;

/// How the blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BlobType {
    BlockBlob,
    PageBlob,
}

impl BlobType {
    /// `statusBlobType` text; anything but `PageBlob` is a block blob (waagent's default).
    pub fn from_text(s: &str) -> Self {
        if s.trim().eq_ignore_ascii_case("pageblob") {
            Self::PageBlob
        } else {
            Self::BlockBlob
        }
    }
}

/// Where status goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusBlob {
    /// The SAS URL (a secret-ish capability: never logged unredacted).
    pub url: String,
    pub blob_type: BlobType,
}

impl From<&crate::documents::extensions::StatusUploadBlob> for StatusBlob {
    fn from(blob: &crate::documents::extensions::StatusUploadBlob) -> Self {
        let blob_type = match blob.blob_type {
            crate::documents::extensions::StatusBlobType::PageBlob => BlobType::PageBlob,
            crate::documents::extensions::StatusBlobType::BlockBlob => BlobType::BlockBlob,
        };
        Self { url: blob.url.clone(), blob_type }
    }
}

/// Which path took the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadPath {
    HostGaPlugin,
    Direct,
}

#[derive(Debug, thiserror::Error)]
#[error("status upload failed through the HostGAPlugin ({hgap}) and directly ({direct})")]
pub struct UploadError {
    pub hgap: String,
    pub direct: String,
}

/// `x-ms-date` as waagent sends it (ISO 8601, seconds).
fn storage_date(now: SystemTime) -> String {
    let ts = crate::base::logging::timestamp(now);
    format!("{}Z", &ts[..19])
}

/// One storage request: method PUT, URL, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobPut {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// The storage requests for `body` (`pad` is the byte page blobs are padded with: zero directly,
/// space through the HostGAPlugin, as waagent).
fn blob_puts(blob: &StatusBlob, body: &[u8], now: SystemTime, pad: u8) -> Vec<BlobPut> {
    let date = storage_date(now);
    let common = |extra: Vec<(&str, String)>| {
        let mut h: Vec<(String, String)> =
            vec![("x-ms-date".into(), date.clone()), ("x-ms-version".into(), STORAGE_VERSION.into())];
        h.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        h
    };
    match blob.blob_type {
        BlobType::BlockBlob => vec![BlobPut {
            url: blob.url.clone(),
            headers: common(vec![
                ("x-ms-blob-type", "BlockBlob".into()),
                ("Content-Length", body.len().to_string()),
            ]),
            body: Some(body.to_vec()),
        }],
        BlobType::PageBlob => {
            let mut padded = body.to_vec();
            padded.resize(body.len().div_ceil(PAGE) * PAGE, pad);
            let mut puts = vec![BlobPut {
                url: blob.url.clone(),
                headers: common(vec![
                    ("x-ms-blob-type", "PageBlob".into()),
                    ("x-ms-blob-content-length", padded.len().to_string()),
                    ("Content-Length", "0".into()),
                ]),
                body: None,
            }];
            let sep = if blob.url.contains('?') { '&' } else { '?' };
            for (i, chunk) in padded.chunks(MAX_PAGE_WRITE).enumerate() {
                let start = i * MAX_PAGE_WRITE;
                puts.push(BlobPut {
                    url: format!("{}{sep}comp=page", blob.url),
                    headers: common(vec![
                        ("x-ms-range", format!("bytes={start}-{}", start + chunk.len() - 1)),
                        ("x-ms-page-write", "update".into()),
                        ("Content-Length", chunk.len().to_string()),
                    ]),
                    body: Some(chunk.to_vec()),
                });
            }
            puts
        }
    }
}

/// The HostGAPlugin envelope of one storage request (keys sorted, as waagent).
fn envelope(put: &BlobPut) -> String {
    let headers: Vec<serde_json::Value> =
        put.headers.iter().map(|(k, v)| serde_json::json!({"headerName": k, "headerValue": v})).collect();
    let mut doc = serde_json::Map::new();
    if let Some(body) = &put.body {
        doc.insert("content".into(), base64::engine::general_purpose::STANDARD.encode(body).into());
    }
    doc.insert("headers".into(), headers.into());
    doc.insert("requestUri".into(), put.url.clone().into());
    serde_json::Value::Object(doc).to_string()
}

/// Upload `body` to the status blob: the HostGAPlugin first, then directly.
pub fn upload(
    hgap: &HostGaPluginClient,
    storage: &HttpClient,
    who: &ContainerIdentity,
    blob: &StatusBlob,
    body: &[u8],
    now: SystemTime,
) -> Result<UploadPath, UploadError> {
    let via_hgap =
        blob_puts(blob, body, now, b' ').iter().try_for_each(|put| hgap.put_status(who, &envelope(put)));
    let hgap_error = match via_hgap {
        Ok(()) => return Ok(UploadPath::HostGaPlugin),
        Err(e) => e.to_string(),
    };
    log::debug!("status upload through the HostGAPlugin failed: {hgap_error}; trying storage directly");
    let policy = RetryPolicy::once(Duration::from_secs(30));
    let direct = blob_puts(blob, body, now, 0).into_iter().try_for_each(|put| {
        let mut req = Request::put(put.url, put.body.unwrap_or_default());
        for (k, v) in put.headers {
            req = req.header(&k, v);
        }
        match storage.send(&req, &policy) {
            Ok(r) if r.status == 201 => Ok(()),
            Ok(r) => Err(format!("HTTP {} (expected 201)", r.status)),
            Err(e) => Err(describe(&e)),
        }
    });
    match direct {
        Ok(()) => Ok(UploadPath::Direct),
        Err(direct) => Err(UploadError { hgap: hgap_error, direct }),
    }
}

fn describe(e: &HttpError) -> String {
    crate::base::logging::redact_sas(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_blob_requests_are_aligned_and_ranged() {
        let blob = StatusBlob { url: "https://a.blob/c/s?sv=1&sig=x".into(), blob_type: BlobType::PageBlob };
        let puts = blob_puts(&blob, &[b'x'; 700], SystemTime::UNIX_EPOCH, 0);
        assert_eq!(puts.len(), 2);
        assert!(puts[0].headers.contains(&("x-ms-blob-content-length".into(), "1024".into())));
        assert!(puts[0].body.is_none());
        assert_eq!(puts[1].url, "https://a.blob/c/s?sv=1&sig=x&comp=page");
        assert!(puts[1].headers.contains(&("x-ms-range".into(), "bytes=0-1023".into())));
        let body = puts[1].body.as_ref().unwrap();
        assert_eq!(body.len(), 1024);
        assert_eq!(body[700..], [0u8; 324]);
        assert!(puts[1].headers.contains(&("x-ms-date".into(), "1970-01-01T00:00:00Z".into())));
    }

    #[test]
    fn block_blob_is_one_put_and_the_envelope_has_sorted_keys() {
        let blob = StatusBlob { url: "http://x/s".into(), blob_type: BlobType::BlockBlob };
        let puts = blob_puts(&blob, b"{}", SystemTime::UNIX_EPOCH, b' ');
        assert_eq!(puts.len(), 1);
        let env = envelope(&puts[0]);
        assert!(env.starts_with("{\"content\":\"e30=\",\"headers\":["), "{env}");
        assert!(env.ends_with(",\"requestUri\":\"http://x/s\"}"), "{env}");
        assert_eq!(BlobType::from_text(" pageBlob "), BlobType::PageBlob);
        assert_eq!(BlobType::from_text("BlockBlob"), BlobType::BlockBlob);
    }
}
