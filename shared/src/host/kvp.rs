//! The Hyper-V KVP pool: provisioning milestones and the final report for the host to read, even
//! when the network (and so the WireServer) is what failed.
//!
//! Format: a headerless array of 2,560-byte records, `key[512]` + `value[2048]`, UTF-8, NUL-padded,
//! in `/var/lib/hyperv/.kvp_pool_1` (the guest-to-host pool). `hv_kvp_daemon` relays it to the host.
//! Safe sizes after the kernel's UTF-16 conversion are 254 bytes of key and 1,022 bytes of value, so
//! longer values are split into several records under the same key. Writers append under an exclusive
//! `flock`. Records from a previous boot are dropped once, at the first write of this boot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::base::files::FileError;
use crate::base::root::HostRoot;

/// The guest-to-host pool.
pub const POOL_PATH: &str = "/var/lib/hyperv/.kvp_pool_1";
pub const KEY_SIZE: usize = 512;
pub const VALUE_SIZE: usize = 2048;
pub const RECORD_SIZE: usize = KEY_SIZE + VALUE_SIZE;
/// Longest key that survives the host's UTF-16 conversion.
pub const MAX_KEY: usize = 254;
/// Longest value chunk that survives the host's UTF-16 conversion.
pub const MAX_VALUE_CHUNK: usize = 1022;

#[derive(Debug, thiserror::Error)]
pub enum KvpError {
    #[error("KVP key {key:?} is {len} bytes; at most {MAX_KEY} fit")]
    KeyTooLong { key: String, len: usize },
    #[error(transparent)]
    File(#[from] FileError),
}

/// A writer for one KVP pool file.
#[derive(Debug, Clone)]
pub struct KvpPool {
    path: PathBuf,
}

impl KvpPool {
    /// The guest pool under `root`, or `None` when this is not a Hyper-V guest (no
    /// `/var/lib/hyperv` directory and no VMBus), where there is no one to read it.
    pub fn for_root(root: &HostRoot) -> Option<Self> {
        let dir = root.path("/var/lib/hyperv");
        if !dir.is_dir() {
            if !root.kernel().path("/sys/bus/vmbus").is_dir() {
                return None;
            }
            crate::base::files::ensure_dir(&dir, 0o755).ok()?;
        }
        Some(Self::at(root.path(POOL_PATH)))
    }

    /// A pool at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `key` = `value`, splitting the value into chunks that survive the host's conversion.
    pub fn write(&self, key: &str, value: &str) -> Result<(), KvpError> {
        if key.len() > MAX_KEY {
            return Err(KvpError::KeyTooLong { key: key.chars().take(40).collect(), len: key.len() });
        }
        let mut records = Vec::new();
        for chunk in chunks(value, MAX_VALUE_CHUNK) {
            records.extend_from_slice(&record(key, chunk));
        }
        let err = |op, e| KvpError::File(FileError::new(op, &self.path, e));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| err("open", e))?;
        lock(&file).map_err(|e| err("lock", e))?;
        if predates_boot(&file) {
            file.set_len(0).map_err(|e| err("truncate", e))?;
        }
        file.write_all(&records).map_err(|e| err("write", e))?;
        Ok(())
    }
}

fn lock(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a valid open file descriptor; the lock is released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the pool was last written before this boot (its records are stale).
fn predates_boot(file: &File) -> bool {
    let Ok(modified) = file.metadata().and_then(|m| m.modified()) else { return false };
    let Some(boot) = boot_time() else { return false };
    file.metadata().map(|m| m.len() > 0).unwrap_or(false) && modified < boot
}

fn boot_time() -> Option<SystemTime> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    SystemTime::now().checked_sub(std::time::Duration::from_secs_f64(secs))
}

/// Split `s` into pieces of at most `max` bytes without cutting a UTF-8 character.
fn chunks(s: &str, max: usize) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

fn record(key: &str, value: &str) -> [u8; RECORD_SIZE] {
    let mut rec = [0u8; RECORD_SIZE];
    rec[..key.len()].copy_from_slice(key.as_bytes());
    rec[KEY_SIZE..KEY_SIZE + value.len()].copy_from_slice(value.as_bytes());
    rec
}

/// Read every record of a pool file (for tests and support tools).
pub fn read_pool(path: &Path) -> Result<Vec<(String, String)>, FileError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| FileError::new("read", path, e))?;
    let field = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok(bytes.chunks_exact(RECORD_SIZE).map(|r| (field(&r[..KEY_SIZE]), field(&r[KEY_SIZE..]))).collect())
}

/// The value of `key` with its chunks joined, as the host would reassemble it.
pub fn joined_value(records: &[(String, String)], key: &str) -> Option<String> {
    let parts: Vec<&str> = records.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
    (!parts.is_empty()).then(|| parts.concat())
}

/// The `PROVISIONING_REPORT` value: pipe-delimited `k=v` fields, as cloud-init and azure-init write it.
pub fn provisioning_report(success: bool, reason: Option<&str>, vm_id: &str, time: SystemTime) -> String {
    provisioning_report_with(success, reason, &[], vm_id, time)
}

/// [`provisioning_report`] with `extra` `k=v` fields after the reason (what kind of provisioning
/// it was, for instance `provisioning=none`).
pub fn provisioning_report_with(
    success: bool,
    reason: Option<&str>,
    extra: &[(&str, &str)],
    vm_id: &str,
    time: SystemTime,
) -> String {
    let clean = |s: &str| s.replace(['|', '\n'], " ");
    let mut fields = vec![format!("result={}", if success { "success" } else { "error" })];
    if let Some(reason) = reason {
        fields.push(format!("reason={}", clean(reason)));
    }
    for (k, v) in extra {
        fields.push(format!("{}={}", clean(k).replace('=', " "), clean(v)));
    }
    fields.push(format!("agent=wala/{}", crate::VERSION));
    fields.push(format!("vm_id={vm_id}"));
    fields.push(format!("timestamp={}", crate::base::logging::timestamp(time)));
    if !success {
        fields.push("documentation_url=https://aka.ms/linuxprovisioningerror".into());
    }
    fields.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_long_values_are_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = KvpPool::at(dir.path().join(".kvp_pool_1"));
        pool.write("wala|milestone", "user created").expect("write");
        let long = "é".repeat(700); // 1,400 bytes: two chunks, not cut inside a character
        pool.write("PROVISIONING_REPORT", &long).expect("write");
        let len = std::fs::metadata(pool.path()).expect("stat").len() as usize;
        assert_eq!(len, 3 * RECORD_SIZE);
        let recs = read_pool(pool.path()).expect("read");
        assert_eq!(recs[0], ("wala|milestone".into(), "user created".into()));
        assert!(recs[1].1.len() <= MAX_VALUE_CHUNK);
        assert_eq!(joined_value(&recs, "PROVISIONING_REPORT").as_deref(), Some(long.as_str()));
    }

    #[test]
    fn key_too_long_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = KvpPool::at(dir.path().join("p"));
        assert!(matches!(pool.write(&"k".repeat(255), "v"), Err(KvpError::KeyTooLong { .. })));
    }

    #[test]
    fn pool_only_on_hyperv_guests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        assert!(KvpPool::for_root(&root).is_none());
        std::fs::create_dir_all(dir.path().join("sys/bus/vmbus")).expect("mkdir");
        let pool = KvpPool::for_root(&root).expect("pool");
        assert_eq!(pool.path(), dir.path().join("var/lib/hyperv/.kvp_pool_1"));
    }

    #[test]
    fn report_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_655_497);
        let r = provisioning_report(false, Some("user: useradd failed|x"), "abc", t);
        assert!(r.starts_with("result=error|reason=user: useradd failed x|agent=wala/"), "{r}");
        assert!(r.contains("|vm_id=abc|timestamp=2026-11-26T01:11:37.000000Z|documentation_url="));
        let r =
            provisioning_report_with(true, None, &[("provisioning", "none"), ("detail", "a|b")], "abc", t);
        assert!(r.starts_with("result=success|provisioning=none|detail=a b|agent=wala/"), "{r}");
        assert!(!r.contains("documentation_url"), "{r}");
    }
}
