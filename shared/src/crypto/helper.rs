//! `wala-crypto`: the short-lived child process that does what needs OpenSSL, so that the daemon
//! (`wala-agentd`), which runs for the VM's whole life, never maps libcrypto or libssl
//! (docs/security.md, "The crypto helper"). It does:
//! * certificate work ([`crate::crypto`]): the transport key pair, decrypting the goal
//!   state's Certificates and writing `<THUMBPRINT>.crt`/`.prv`, decrypting a RemoteAccess
//!   password, SSH keys from certificates and private keys;
//! * one HTTPS exchange to storage ([`crate::platform::http::HttpClient`] sends every `https` URL here;
//!   retries, deadlines and the body's size limit stay with the caller's client).
//!
//! One call per process. The call goes in on stdin: one line of JSON ([`Call`]), then the body
//! (an envelope, a PEM, an HTTP request body) to the end. The answer comes back on stdout as
//! frames: a tag byte, a 4-byte big-endian length and that many bytes; `B` frames carry a
//! streamed HTTP body, the last frame (`R`) is the [`Reply`] in JSON. Nothing is passed in argv
//! (SAS URLs and keys would be visible in `/proc/<pid>/cmdline`), and the helper writes no secret
//! anywhere but its stdout pipe and the 0600 key files the in-process code has always written.
//! Its log records travel in the reply and are logged by the caller (to `waagent.log` too).
//!
//! A program that links OpenSSL itself and has no `wala-crypto` beside it (the library's own
//! tests) can answer calls in its own process: [`answer_in_this_process`].

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::base::limits::Document;
use crate::documents::wire::CertificateSummary;
use crate::platform::http::{Method, StorageProxy};

/// The helper's program name; it is installed beside `wala-agentd`.
pub const PROGRAM: &str = "wala-crypto";

/// How long a certificate call may take (an RSA-2048 key pair is made in well under a second
/// natively and a few seconds under emulation).
pub const CERT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Extra time given to a helper running an HTTPS exchange past the exchange's own timeout
/// (process start, TLS library start).
const HTTPS_GRACE: Duration = Duration::from_secs(10);

/// Which envelope is decrypted: the texts of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    Certificates,
    Password,
}

impl Envelope {
    /// (not an envelope, decryption failed)
    pub fn texts(self) -> (&'static str, &'static str) {
        match self {
            Envelope::Certificates => {
                ("Certificates Data is not a CMS envelope", "decrypting the Certificates envelope")
            }
            Envelope::Password => ("Password is not a CMS envelope", "decrypting the Password envelope"),
        }
    }
}

/// A proxy setting for an HTTPS exchange ([`StorageProxy`], which is not serializable itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyChoice {
    Configured { host: String, port: u16 },
    Direct,
    Environment,
}

impl From<&StorageProxy> for ProxyChoice {
    fn from(p: &StorageProxy) -> Self {
        match p {
            StorageProxy::Configured(s) => ProxyChoice::Configured { host: s.host.clone(), port: s.port },
            StorageProxy::Direct => ProxyChoice::Direct,
            StorageProxy::Environment => ProxyChoice::Environment,
        }
    }
}

impl From<&ProxyChoice> for StorageProxy {
    fn from(p: &ProxyChoice) -> Self {
        match p {
            ProxyChoice::Configured { host, port } => {
                StorageProxy::Configured(crate::platform::http::ProxySetting {
                    host: host.clone(),
                    port: *port,
                })
            }
            ProxyChoice::Direct => StorageProxy::Direct,
            ProxyChoice::Environment => StorageProxy::Environment,
        }
    }
}

/// One call; its body follows the JSON line on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    /// Load `TransportCert.pem`/`TransportPrivate.pem` from `lib_dir`, or make them; answer
    /// [`Answer::Header`]. No body.
    TransportCert { lib_dir: PathBuf },
    /// Decrypt the CMS envelope (DER, the body) addressed to the transport key pair of `lib_dir`;
    /// answer [`Answer::Plain`].
    Decrypt { lib_dir: PathBuf, envelope: Envelope },
    /// Decrypt the Certificates `Data` (DER, the body; none when `data` is false) and write the
    /// certificate and key files into `lib_dir`; answer [`Answer::Certificates`].
    StoreCertificates { lib_dir: PathBuf, data: bool },
    /// The OpenSSH public key of the PEM certificate in the body; answer [`Answer::SshKey`].
    SshKeyFromCert,
    /// The private key (PEM, the body) as PKCS#8 PEM and its OpenSSH public key; answer
    /// [`Answer::KeyPair`].
    SshKeyPairFromPrv,
    /// Check the detached CMS signature (DER, the body) of the file `package` against the trust
    /// anchors in `ca_file` (PEM), as waagent's `openssl cms -verify -binary -purpose any
    /// -no_check_time`; answer [`Answer::Verified`].
    VerifyPackage { package: PathBuf, ca_file: PathBuf },
    /// One HTTPS exchange; the request body is the body. With `stream`, a 200 answer's body comes
    /// back in `B` frames (at most `limit` bytes); otherwise every body is in the answer, up to
    /// `document`'s limit. Answer [`Answer::Http`].
    Https {
        method: Method,
        url: String,
        headers: Vec<(String, String)>,
        document: Document,
        timeout_ms: u64,
        proxy: ProxyChoice,
        stream: Option<u64>,
    },
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::TransportCert { .. } => "transport-cert",
            Call::Decrypt { .. } => "decrypt",
            Call::StoreCertificates { .. } => "store-certificates",
            Call::SshKeyFromCert => "ssh-key-from-cert",
            Call::SshKeyPairFromPrv => "ssh-key-pair-from-prv",
            Call::VerifyPackage { .. } => "verify-package",
            Call::Https { .. } => "https",
        }
    }
}

/// What a call answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// The transport certificate's DER in base64 (the `x-ms-guest-agent-public-x509-cert` value).
    Header(String),
    /// Decrypted bytes, base64.
    Plain(String),
    Certificates(Vec<CertificateSummary>),
    SshKey(String),
    /// A PKCS#8 PEM private key and its OpenSSH public key line.
    KeyPair {
        private_pem: String,
        public: String,
    },
    /// The signature is good.
    Verified,
    /// An HTTP answer: status, headers, and the body (base64) unless it was streamed (then
    /// `streamed` bytes were sent in `B` frames).
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        streamed: u64,
    },
}

/// Why a call failed, as far as the caller needs to tell the cases apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Anything, described in one line.
    Message(String),
    /// An HTTP body over its limit (not retried).
    TooLarge { limit: u64 },
}

/// The last frame: the outcome and the helper's log records (level, text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub outcome: Result<Answer, Failure>,
    pub log: Vec<(String, String)>,
}

/// Why the helper could not be asked, or what it answered with a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be run, or broke the protocol, or ran out of time.
    #[error("{PROGRAM} {call}: {why}")]
    Run { call: &'static str, why: String },
    /// The call failed in the helper.
    #[error("{0}")]
    Failed(String),
    /// An HTTP body over its limit.
    #[error("the body is larger than its limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A streamed body could not be written where it was going.
    #[error("writing the body: {0}")]
    Write(String),
}

mod serve;
pub use serve::{answer_in_this_process, serve, verify_package};

/// The call and its body from what the helper reads on stdin: one JSON line, then the body.
pub fn read_call(input: &[u8]) -> Result<(Call, &[u8]), String> {
    let newline = input.iter().position(|&b| b == b'\n').ok_or("no call on stdin")?;
    let call = serde_json::from_slice(&input[..newline]).map_err(|e| format!("not a call: {e}"))?;
    Ok((call, &input[newline + 1..]))
}

type Handler = fn(&Call, &[u8], &mut dyn Write) -> Reply;

/// Set by [`answer_in_this_process`]. The server side ([`serve`], the code that links OpenSSL)
/// is in a module of its own and is reached from here only through this pointer, so that a
/// program that never sets it (the daemon) does not link it.
static IN_THIS_PROCESS: OnceLock<Handler> = OnceLock::new();

/// Set by [`use_program`].
static PROGRAM_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Run the helper at `path` rather than beside this program: for test programs, which are built
/// elsewhere than the binaries. The first call wins.
pub fn use_program(path: PathBuf) {
    let _ = PROGRAM_PATH.set(path);
}

/// The helper's path: [`PROGRAM`] beside the running program (`/usr/sbin/wala-agentd` finds
/// `/usr/sbin/wala-crypto`; the `waagent` symlink resolves to `wala-agentd` first).
pub fn program_path() -> std::io::Result<PathBuf> {
    match PROGRAM_PATH.get() {
        Some(p) => Ok(p.clone()),
        None => Ok(std::env::current_exe()?.with_file_name(PROGRAM)),
    }
}

/// Make `call` with `body`, waiting at most `timeout`; `B` frames go to `on_body` (an error from
/// it ends the call as [`HelperError::Write`]). Log records of the helper are logged here.
pub fn call(
    call: &Call,
    body: &[u8],
    timeout: Duration,
    on_body: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Answer, HelperError> {
    let name = call.name();
    let run = |why: String| HelperError::Run { call: name, why };
    let reply = match IN_THIS_PROCESS.get() {
        Some(handler) => {
            // The same frames as from the helper, through the same reader.
            let mut out = zeroize::Zeroizing::new(Vec::new());
            let reply = handler(call, body, &mut *out);
            send_reply(&mut *out, &reply).map_err(|e| run(e.to_string()))?;
            read_frames(&mut out.as_slice(), on_body).map_err(|e| frame_error(name, e))?
        }
        None => spawn_and_read(call, body, timeout, on_body).map_err(|e| match e {
            Spawned::Io(why) => run(why),
            Spawned::Frame(e) => frame_error(name, e),
        })?,
    };
    for (level, text) in &reply.log {
        let level = level.parse().unwrap_or(log::Level::Info);
        log::log!(level, "{PROGRAM}: {text}");
    }
    match reply.outcome {
        Ok(answer) => Ok(answer),
        Err(Failure::Message(m)) => Err(HelperError::Failed(m)),
        Err(Failure::TooLarge { limit }) => Err(HelperError::TooLarge { limit }),
    }
}

/// A frame error: the sink's own (`Write`) or the protocol's.
enum FrameError {
    Sink(std::io::Error),
    Protocol(String),
}

fn frame_error(call: &'static str, e: FrameError) -> HelperError {
    match e {
        FrameError::Sink(e) => HelperError::Write(e.to_string()),
        FrameError::Protocol(why) => HelperError::Run { call, why },
    }
}

enum Spawned {
    Io(String),
    Frame(FrameError),
}

fn spawn_and_read(
    call: &Call,
    body: &[u8],
    timeout: Duration,
    on_body: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Reply, Spawned> {
    use std::process::{Command, Stdio};
    let program = program_path().map_err(|e| Spawned::Io(format!("cannot find it: {e}")))?;
    let deadline = Instant::now() + timeout;
    // Not a command run for its output (no argv, a binary protocol), so not through crate::base::cmd.
    let mut child = Command::new(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Spawned::Io(format!("cannot run {}: {e}", program.display())))?;
    let mut line =
        serde_json::to_vec(call).map_err(|e| Spawned::Io(format!("cannot encode the call: {e}")))?;
    line.push(b'\n');
    let outcome = (|| {
        let mut stdin = child.stdin.take().ok_or_else(|| Spawned::Io("no stdin".into()))?;
        // The helper reads all of its input before it writes anything, so this cannot deadlock.
        stdin
            .write_all(&line)
            .and_then(|()| stdin.write_all(body))
            .map_err(|e| Spawned::Io(format!("writing the call: {e}")))?;
        drop(stdin);
        let stdout = child.stdout.take().ok_or_else(|| Spawned::Io("no stdout".into()))?;
        let mut reader = DeadlineReader { inner: stdout, deadline };
        read_frames(&mut reader, on_body).map_err(Spawned::Frame)
    })();
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| Spawned::Io(format!("waiting for it: {e}")))?;
    let reply = outcome?;
    if !status.success() {
        return Err(Spawned::Io(format!("exited with {status} after its reply")));
    }
    Ok(reply)
}

/// Reads a pipe, failing with `TimedOut` once `deadline` has passed.
struct DeadlineReader<R> {
    inner: R,
    deadline: Instant,
}

impl<R: Read + std::os::fd::AsRawFd> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"));
            }
            let mut fd = libc::pollfd { fd: self.inner.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut fd, 1, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n > 0 {
                return self.inner.read(buf);
            }
        }
    }
}

/// The largest frame accepted: a reply with an 8 MiB document in base64, and some.
const MAX_FRAME: usize = 12 * 1024 * 1024;

/// Read frames until the reply.
fn read_frames(
    r: &mut dyn Read,
    on_body: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Reply, FrameError> {
    let protocol = |why: String| FrameError::Protocol(why);
    let mut payload = zeroize::Zeroizing::new(Vec::new());
    loop {
        let mut head = [0u8; 5];
        r.read_exact(&mut head).map_err(|e| protocol(format!("no reply ({e})")))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(protocol(format!("a frame of {len} bytes")));
        }
        payload.clear();
        payload.resize(len, 0);
        r.read_exact(&mut payload).map_err(|e| protocol(format!("a short frame ({e})")))?;
        match head[0] {
            b'B' => on_body(&payload).map_err(FrameError::Sink)?,
            b'R' => {
                return serde_json::from_slice(&payload).map_err(|e| protocol(format!("a bad reply: {e}")))
            }
            t => return Err(protocol(format!("an unknown frame {t:#04x}"))),
        }
    }
}

pub(crate) fn write_frame(out: &mut dyn Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut head = [tag, 0, 0, 0, 0];
    head[1..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&head)?;
    out.write_all(payload)
}

pub(crate) fn send_reply(out: &mut dyn Write, reply: &Reply) -> std::io::Result<()> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(reply).map_err(std::io::Error::other)?);
    write_frame(out, b'R', &json)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The time an HTTPS exchange of `timeout` may take in the helper.
pub fn https_timeout(timeout: Duration) -> Duration {
    timeout + HTTPS_GRACE
}

/// Decode a base64 field of an answer.
pub fn unbase64(text: &str) -> Result<Vec<u8>, HelperError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| HelperError::Run { call: "reply", why: "a field is not base64".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b'B', b"abc").expect("frame");
        write_frame(&mut buf, b'B', b"de").expect("frame");
        let reply = Reply { outcome: Ok(Answer::SshKey("ssh-ed25519 AAAA".into())), log: vec![] };
        send_reply(&mut buf, &reply).expect("reply");
        let mut body = Vec::new();
        let got = read_frames(&mut buf.as_slice(), &mut |b| {
            body.extend_from_slice(b);
            Ok(())
        })
        .ok()
        .expect("frames");
        assert_eq!(body, b"abcde");
        assert!(matches!(got.outcome, Ok(Answer::SshKey(k)) if k == "ssh-ed25519 AAAA"));
        for bad in [&b""[..], b"B\0\0\0\x05ab", b"X\0\0\0\0", b"R\xff\xff\xff\xff"] {
            assert!(read_frames(&mut &bad[..], &mut |_| Ok(())).is_err());
        }
    }

    #[test]
    fn a_call_names_no_secret_in_its_json() {
        let call = Call::Decrypt { lib_dir: "/var/lib/waagent".into(), envelope: Envelope::Password };
        let json = serde_json::to_string(&call).expect("json");
        assert_eq!(json, r#"{"decrypt":{"lib_dir":"/var/lib/waagent","envelope":"Password"}}"#);
        assert!(!json.contains('\n'));
    }
}
