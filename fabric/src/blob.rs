//! A storage-like status blob store (spec §11.3): BlockBlob single PUT, PageBlob create plus
//! 512-aligned `comp=page` range writes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Kind of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BlobType {
    /// Written whole by one PUT.
    BlockBlob,
    /// Created with a size, then written in 512-byte aligned pages.
    PageBlob,
}

/// One stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its type.
    pub blob_type: BlobType,
    /// Its bytes (page blobs keep their full, zero-filled size).
    pub data: Vec<u8>,
}

/// A refused blob write: the HTTP status and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct BlobError {
    /// Status to answer with.
    pub status: u16,
    /// Why.
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> BlobError {
    BlobError { status: 400, reason: reason.into() }
}

/// Largest page blob accepted.
const MAX_PAGE_BLOB: u64 = 64 * 1024 * 1024;

/// Blobs by URL path.
#[derive(Debug, Default)]
pub struct BlobStore {
    blobs: BTreeMap<String, Blob>,
}

impl BlobStore {
    /// Applies a PUT on `path` with `query` and the header lookup `header` (case-insensitive names).
    pub fn put(
        &mut self,
        path: &str,
        query: &str,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<(), BlobError> {
        let is_page_write = query.split('&').any(|kv| kv == "comp=page");
        if is_page_write {
            return self.write_pages(path, header, body);
        }
        match header("x-ms-blob-type").as_deref() {
            Some("BlockBlob") => {
                self.blobs.insert(path.into(), Blob { blob_type: BlobType::BlockBlob, data: body.to_vec() });
                Ok(())
            }
            Some("PageBlob") => {
                let size = header("x-ms-blob-content-length")
                    .ok_or_else(|| bad("PageBlob create without x-ms-blob-content-length"))?;
                let size: u64 = size
                    .parse()
                    .map_err(|_| bad(format!("x-ms-blob-content-length {size:?} is not a number")))?;
                if size % 512 != 0 || size > MAX_PAGE_BLOB {
                    return Err(bad(format!(
                        "x-ms-blob-content-length {size} is not a multiple of 512 or too big"
                    )));
                }
                if !body.is_empty() {
                    return Err(bad("PageBlob create must have an empty body"));
                }
                let data = vec![0; usize::try_from(size).map_err(|_| bad("size too big"))?];
                self.blobs.insert(path.into(), Blob { blob_type: BlobType::PageBlob, data });
                Ok(())
            }
            Some(other) => Err(bad(format!("unknown x-ms-blob-type {other:?}"))),
            None => Err(bad("missing x-ms-blob-type")),
        }
    }

    fn write_pages(
        &mut self,
        path: &str,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<(), BlobError> {
        let range = header("x-ms-range")
            .or_else(|| header("range"))
            .ok_or_else(|| bad("page write without x-ms-range"))?;
        let (start, end) =
            parse_range(&range).ok_or_else(|| bad(format!("x-ms-range {range:?} is malformed")))?;
        if start % 512 != 0 || (end + 1) % 512 != 0 || end < start {
            return Err(bad(format!("x-ms-range {range:?} is not 512-byte aligned")));
        }
        let len = end - start + 1;
        let write = header("x-ms-page-write").unwrap_or_default();
        let blob = self
            .blobs
            .get_mut(path)
            .filter(|b| b.blob_type == BlobType::PageBlob)
            .ok_or_else(|| BlobError { status: 404, reason: format!("no page blob at {path}") })?;
        let (start, len) = (
            usize::try_from(start).map_err(|_| bad("range too big"))?,
            usize::try_from(len).map_err(|_| bad("range too big"))?,
        );
        if start.saturating_add(len) > blob.data.len() {
            return Err(BlobError { status: 416, reason: format!("range {range} beyond the blob size") });
        }
        match write.as_str() {
            "update" => {
                if body.len() != len {
                    return Err(bad(format!("body is {} bytes but the range is {len}", body.len())));
                }
                blob.data[start..start + len].copy_from_slice(body);
            }
            "clear" => blob.data[start..start + len].fill(0),
            other => return Err(bad(format!("x-ms-page-write {other:?} is not update or clear"))),
        }
        Ok(())
    }

    /// The blob at `path`.
    pub fn get(&self, path: &str) -> Option<&Blob> {
        self.blobs.get(path)
    }
}

/// Parses `bytes=<start>-<end>` (inclusive end).
fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        move |n: &str| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone())
    }

    #[test]
    fn page_writes_must_be_aligned_and_inside_the_blob() {
        let mut s = BlobStore::default();
        s.put(
            "/b",
            "",
            &headers(&[("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", "1024")]),
            b"",
        )
        .unwrap();
        let page = |r: &str| headers(&[("x-ms-range", r), ("x-ms-page-write", "update")]);
        assert_eq!(s.put("/b", "comp=page", &page("bytes=1-512"), &[1; 512]).unwrap_err().status, 400);
        assert_eq!(s.put("/b", "comp=page", &page("bytes=1024-1535"), &[1; 512]).unwrap_err().status, 416);
        s.put("/b", "sig=x&comp=page", &page("bytes=512-1023"), &[7; 512]).unwrap();
        let b = s.get("/b").unwrap();
        assert_eq!(b.data[..512], [0; 512]);
        assert_eq!(b.data[512..], [7; 512]);
        assert_eq!(s.put("/none", "comp=page", &page("bytes=0-511"), &[1; 512]).unwrap_err().status, 404);
    }
}
