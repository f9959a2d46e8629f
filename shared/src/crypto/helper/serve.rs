//! The helper's side: read one call, answer it with the OpenSSL code of
//! [`crate::crypto::openssl_certs`] and the TLS storage client, write the reply. Only `wala-crypto` (and the
//! library's tests, through [`answer_in_this_process`]) reach this module.

use std::io::{Read, Write};
use std::path::Path;

use crate::base::limits::Document;
use crate::crypto::helper::{
    b64, send_reply, Answer, Call, Failure, ProxyChoice, Reply, IN_THIS_PROCESS, PROGRAM,
};
use crate::documents::wire::CertificateSummary;
use crate::platform::http::Method;

/// Answer every call in this process instead of running [`PROGRAM`]: for a program that links
/// OpenSSL anyway (the library's tests). The daemon never calls it.
pub fn answer_in_this_process() {
    let _ = IN_THIS_PROCESS.set(answer);
}

/// `B` frames, as a writer (a streamed HTTP body).
#[cfg(feature = "https")]
struct BodyFrames<'a>(&'a mut dyn Write);

#[cfg(feature = "https")]
impl Write for BodyFrames<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        super::write_frame(self.0, b'B', buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Log records of the helper, kept for its reply.
struct Collect(std::sync::Mutex<Vec<(String, String)>>);

impl log::Log for Collect {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            if let Ok(mut v) = self.0.lock() {
                v.push((record.level().to_string(), record.args().to_string()));
            }
        }
    }
    fn flush(&self) {}
}

static COLLECT: Collect = Collect(std::sync::Mutex::new(Vec::new()));

/// The helper's `main`: read one call from stdin, answer it on stdout. Returns the exit status
/// (0 once a reply was written, 2 when the call could not be read, 1 when stdout failed).
pub fn serve() -> i32 {
    if std::env::args_os().len() > 1 {
        eprintln!(
            "{PROGRAM} {}: wala's helper for certificates and HTTPS; it takes its call on stdin \
             from wala-agentd and has no options",
            crate::VERSION
        );
        return 2;
    }
    if log::set_logger(&COLLECT).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let mut input = zeroize::Zeroizing::new(Vec::new());
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("{PROGRAM}: reading the call: {e}");
        return 2;
    }
    let (call, body) = match super::read_call(&input) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return 2;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut reply = answer(&call, body, &mut out);
    if let Ok(mut v) = COLLECT.0.lock() {
        reply.log.append(&mut v);
    }
    match send_reply(&mut out, &reply).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{PROGRAM}: writing the reply: {e}");
            1
        }
    }
}

/// Answer `call`: `B` frames (a streamed body) are written to `out`; the reply is returned, not
/// written.
pub(super) fn answer(call: &Call, body: &[u8], out: &mut dyn Write) -> Reply {
    Reply { outcome: answer_call(call, body, out), log: Vec::new() }
}

fn answer_call(call: &Call, body: &[u8], out: &mut dyn Write) -> Result<Answer, Failure> {
    use crate::crypto::openssl_certs as certs;
    let msg = |e: &dyn std::fmt::Display| Failure::Message(e.to_string());
    match call {
        Call::TransportCert { lib_dir } => {
            let keys = certs::TransportKeys::load_or_create(lib_dir).map_err(|e| msg(&e))?;
            keys.header_value().map(Answer::Header).map_err(|e| msg(&e))
        }
        Call::Decrypt { lib_dir, envelope } => {
            let keys = certs::TransportKeys::load_or_create(lib_dir).map_err(|e| msg(&e))?;
            let (not_cms, failed) = envelope.texts();
            let plain =
                zeroize::Zeroizing::new(keys.decrypt_named(body, not_cms, failed).map_err(|e| msg(&e))?);
            Ok(Answer::Plain(b64(&plain)))
        }
        Call::StoreCertificates { lib_dir, data } => store_certificates(lib_dir, data.then_some(body)),
        Call::SshKeyFromCert => {
            certs::openssh_key_from_cert_pem(body).map(Answer::SshKey).map_err(|e| msg(&e))
        }
        Call::SshKeyPairFromPrv => {
            let (private, public) = certs::ssh_keypair_from_prv_pem(body).map_err(|e| msg(&e))?;
            let private_pem = String::from_utf8(private.to_vec()).map_err(|e| msg(&e))?;
            Ok(Answer::KeyPair { private_pem, public })
        }
        Call::VerifyPackage { package, ca_file } => {
            verify_package(package, ca_file, body).map(|()| Answer::Verified).map_err(Failure::Message)
        }
        Call::Https { method, url, headers, document, timeout_ms, proxy, stream } => {
            https(*method, url, headers, *document, *timeout_ms, proxy, *stream, body, out)
        }
    }
}

/// `openssl cms -verify -binary -inform der -purpose any -no_check_time -CAfile <ca_file>` of the
/// detached `signature` over the file `package`. The package is mapped, not read into memory.
/// (Public for the fuzz target `crypto_verify_package`; the daemon reaches it only through the
/// helper.)
pub fn verify_package(package: &Path, ca_file: &Path, signature: &[u8]) -> Result<(), String> {
    use openssl::cms::{CMSOptions, CmsContentInfo};
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::verify::X509VerifyFlags;
    use openssl::x509::{X509PurposeId, X509};
    let errors = |e: openssl::error::ErrorStack| {
        e.errors()
            .iter()
            .map(|e| e.reason().unwrap_or("unknown error").to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let pem = crate::base::limits::read_file(ca_file, Document::HandlerState)
        .map_err(|e| format!("signing certificate was not usable at {}: {e}", ca_file.display()))?;
    let anchors = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {}", ca_file.display(), errors(e)))?;
    if anchors.is_empty() {
        return Err(format!("{}: no certificate", ca_file.display()));
    }
    let mut store = X509StoreBuilder::new().map_err(errors)?;
    for a in anchors {
        store.add_cert(a).map_err(errors)?;
    }
    store.set_purpose(X509PurposeId::ANY).map_err(errors)?;
    store.set_flags(X509VerifyFlags::NO_CHECK_TIME).map_err(errors)?;
    let store = store.build();
    let mut cms =
        CmsContentInfo::from_der(signature).map_err(|e| format!("not a CMS signature: {}", errors(e)))?;
    let mapped = Mapped::open(package)?;
    cms.verify(None, Some(&store), Some(mapped.bytes()), None, CMSOptions::BINARY)
        .map_err(|e| format!("verification failed: {}", errors(e)))
}

/// A file mapped read-only (clean, shared pages: a large package costs no private memory).
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
        let len = usize::try_from(meta.len()).ok().filter(|l| *l > 0 && i32::try_from(*l).is_ok());
        let Some(len) = len.filter(|_| meta.is_file()) else {
            return Err(format!("{}: not a regular file of 1 byte to 2 GiB", path.display()));
        };
        // SAFETY: a read-only private mapping of a file we opened; unmapped on drop.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("{}: mmap: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping what `open` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn store_certificates(lib_dir: &Path, data: Option<&[u8]>) -> Result<Answer, Failure> {
    use crate::crypto::openssl_certs as certs;
    let msg = |e: &dyn std::fmt::Display| Failure::Message(e.to_string());
    let extracted = match data {
        None => Vec::new(),
        Some(der) => {
            let keys = certs::TransportKeys::load_or_create(lib_dir).map_err(|e| msg(&e))?;
            let pfx = zeroize::Zeroizing::new(keys.decrypt(der).map_err(|e| msg(&e))?);
            certs::parse_pfx(&pfx).map_err(|e| msg(&e))?
        }
    };
    certs::write_cert_files(lib_dir, &extracted).map_err(|e| msg(&e))?;
    Ok(Answer::Certificates(
        extracted
            .iter()
            .map(|c| CertificateSummary {
                thumbprint: c.thumbprint.clone(),
                has_private_key: c.key.is_some(),
            })
            .collect(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn https(
    method: Method,
    url: &str,
    headers: &[(String, String)],
    document: Document,
    timeout_ms: u64,
    proxy: &ProxyChoice,
    stream: Option<u64>,
    body: &[u8],
    out: &mut dyn Write,
) -> Result<Answer, Failure> {
    #[cfg(feature = "https")]
    {
        use crate::platform::http::{HttpClient, HttpError, Request, StorageProxy};
        use std::time::Duration;
        if !url.starts_with("https://") {
            return Err(Failure::Message(format!("{PROGRAM} sends https URLs only")));
        }
        let client = HttpClient::storage_with_tls(&StorageProxy::from(proxy));
        let request = Request {
            method,
            url: url.to_string(),
            headers: headers.to_vec(),
            body: (method != Method::Get).then(|| body.to_vec()),
            document,
        };
        let timeout = Duration::from_millis(timeout_ms);
        let failure = |e: HttpError| match e {
            HttpError::TooLarge { source, .. } => Failure::TooLarge { limit: source.limit },
            HttpError::Transport { reason, .. } => Failure::Message(reason),
            e => Failure::Message(e.to_string()),
        };
        match stream {
            Some(limit) => {
                let s =
                    client.stream_once(&request, timeout, limit, &mut BodyFrames(out)).map_err(failure)?;
                Ok(Answer::Http {
                    status: s.status,
                    headers: Vec::new(),
                    body: b64(&s.body),
                    streamed: s.written,
                })
            }
            None => {
                let r = client.send_once(&request, timeout).map_err(failure)?;
                Ok(Answer::Http { status: r.status, headers: r.headers, body: b64(&r.body), streamed: 0 })
            }
        }
    }
    #[cfg(not(feature = "https"))]
    {
        let _ = (method, url, headers, document, timeout_ms, proxy, stream, body, out);
        Err(Failure::Message(format!("{PROGRAM} was built without HTTPS")))
    }
}
