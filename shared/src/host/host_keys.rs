//! sshd's host keys for a newly provisioned VM (`Provisioning.RegenerateSshHostKeyPair`).
//!
//! Two speeds, so that sshd never waits for RSA:
//! - **At once, in-process** ([`replace_with_fast_keys`]): the image's old keys are deleted and an
//!   Ed25519 and an ECDSA (P-256) key are made (`ed25519-dalek`, `p256`: pure Rust, so the
//!   provisioning binary maps no libcrypto, whose relocations alone cost a quarter of a second
//!   per process under emulation) from the kernel's random numbers, and written in OpenSSH's own
//!   `openssh-key-v1` format, modes 0600 (private) and 0644 (public), as `ssh-keygen -A` names
//!   them. Microseconds, no fork: the local stage does it before sshd starts, so sshd's first
//!   start serves new keys and never the image's.
//! - **Later** ([`make_deferred_keys`]): RSA (`rsa` or `auto`) and DSA (`dsa`, where the OpenSSH
//!   build still has it) by `ssh-keygen`, after sshd is up; then sshd is reloaded
//!   ([`reload_sshd`]) so that it serves them too. A client that accepts only RSA host keys is
//!   refused ("no matching host key type") in the seconds between; every OpenSSH client since 6.5
//!   takes Ed25519.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::documents::conf::SshHostKeyType;

/// Why host keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot generate the {kind} host key: {source}")]
    Crypto {
        kind: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate the {kind} host key with ssh-keygen: {source}")]
    Keygen {
        kind: &'static str,
        #[source]
        source: CmdError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// The key types made in-process, at once.
pub const FAST_TYPES: [&str; 2] = ["ed25519", "ecdsa"];

/// The key types `Provisioning.SshHostKeyPairType` asks for beyond the fast ones, made by
/// `ssh-keygen` after sshd has started.
pub fn deferred_types(key_type: SshHostKeyType) -> Vec<&'static str> {
    match key_type {
        SshHostKeyType::Rsa | SshHostKeyType::Auto => vec!["rsa"],
        SshHostKeyType::Dsa => vec!["dsa"],
        SshHostKeyType::Ecdsa | SshHostKeyType::Ed25519 => Vec::new(),
    }
}

/// Delete every host key in `ssh_dir` (`ssh_host_*key*` files), then write new Ed25519 and ECDSA
/// keys with the comment `root@<hostname>`. Returns the private key paths written.
pub fn replace_with_fast_keys(
    root: &HostRoot,
    ssh_dir: &Path,
    hostname: &str,
) -> Result<Vec<PathBuf>, HostKeyError> {
    let dir = root.path(ssh_dir);
    remove_host_keys(&dir)?;
    files::ensure_dir(&dir, 0o755)?;
    let comment = format!("root@{hostname}");
    let mut written = Vec::new();
    for kind in FAST_TYPES {
        let key = match kind {
            "ed25519" => ed25519()?,
            _ => ecdsa_p256()?,
        };
        let private = dir.join(format!("ssh_host_{kind}_key"));
        files::write_atomic(&private, key.private_pem(&comment).as_bytes(), WriteOptions::mode(0o600))?;
        let public = format!("{} {comment}\n", key.public_line());
        files::write_atomic(&private.with_extension("pub"), public.as_bytes(), WriteOptions::mode(0o644))?;
        written.push(private);
    }
    Ok(written)
}

/// Delete every host key in `ssh_dir` (`ssh_host_*key*` files): the image's keys, when new ones
/// are made later.
pub fn remove_all(root: &HostRoot, ssh_dir: &Path) -> Result<(), HostKeyError> {
    Ok(remove_host_keys(&root.path(ssh_dir))?)
}

fn remove_host_keys(dir: &Path) -> Result<(), FileError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file() || t.is_symlink());
        if name.starts_with("ssh_host_") && name.contains("key") && is_file {
            std::fs::remove_file(entry.path()).map_err(|e| FileError::new("remove", entry.path(), e))?;
        }
    }
    Ok(())
}

/// The deferred key type called `name` (as a recorded plan names it), if it is one.
pub fn deferred_type(name: &str) -> Option<&'static str> {
    ["rsa", "dsa"].into_iter().find(|t| *t == name)
}

/// Make the `types` keys with `ssh-keygen`, all at once (RSA's prime search dominates; the others
/// finish on another CPU meanwhile). An existing key of a type is replaced. DSA where `ssh-keygen`
/// no longer knows it (OpenSSH 10 removed it: Debian 13, RHEL 10) is skipped with a warning, not
/// an error: the VM serves its Ed25519 and ECDSA keys, and sshd could not load a DSA key anyway.
pub fn make_deferred_keys(
    root: &HostRoot,
    runner: &dyn Runner,
    ssh_dir: &Path,
    types: &[&'static str],
) -> Result<(), HostKeyError> {
    let dir = root.path(ssh_dir);
    let keygen = |kind: &'static str| {
        let file = dir.join(format!("ssh_host_{kind}_key"));
        for stale in [file.clone(), file.with_extension("pub")] {
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(HostKeyError::File(FileError::new("remove", &stale, e)))
                }
                _ => {}
            }
        }
        let cmd = Cmd::new("ssh-keygen").args(["-q", "-N", "", "-t", kind, "-f"]).arg(&file);
        match runner.run(&cmd) {
            Ok(_) => Ok(()),
            Err(CmdError::Failed { stderr, .. }) if kind == "dsa" && stderr.contains("unknown key type") => {
                log::warn!(
                    "no DSA host key: this OpenSSH has no DSA (removed in OpenSSH 10); \
                     Provisioning.SshHostKeyPairType=dsa gives the Ed25519 and ECDSA keys only"
                );
                Ok(())
            }
            Err(source) => Err(HostKeyError::Keygen { kind, source }),
        }
    };
    std::thread::scope(|scope| {
        let running: Vec<_> = types.iter().map(|&t| scope.spawn(move || keygen(t))).collect();
        running.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Ask a running sshd to load its host keys again (`systemctl try-reload-or-restart`: nothing
/// happens when sshd is not running). The unit is `ssh.service` on Debian and Ubuntu, `sshd.service`
/// elsewhere; whichever unit file exists is used.
pub fn reload_sshd(root: &HostRoot, runner: &dyn Runner) -> Result<(), CmdError> {
    let unit = crate::base::distro::sshd_unit(root);
    runner
        .run(&Cmd::new("systemctl").args(["try-reload-or-restart", unit]).timeout(Duration::from_secs(30)))
        .map(drop)
}

/// A new key pair, held as the parts OpenSSH's formats need.
enum KeyPair {
    Ed25519 { public: [u8; 32], seed: Zeroizing<Vec<u8>> },
    Ecdsa { point: Vec<u8>, scalar: Zeroizing<Vec<u8>> },
}

fn ed25519() -> Result<KeyPair, HostKeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    crate::base::random::fill(&mut *seed)
        .map_err(|source| HostKeyError::Crypto { kind: "ed25519", source })?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    Ok(KeyPair::Ed25519 { public, seed: Zeroizing::new(seed.to_vec()) })
}

fn ecdsa_p256() -> Result<KeyPair, HostKeyError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let err = |source| HostKeyError::Crypto { kind: "ecdsa", source };
    // A uniformly random scalar in [1, n): 32 random bytes, drawn again in the (2^-32) case that
    // they are zero or not below the group order.
    for _ in 0..64 {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::base::random::fill(&mut *bytes).map_err(err)?;
        if let Ok(secret) = p256::SecretKey::from_slice(&*bytes) {
            let point = secret.public_key().to_encoded_point(false).as_bytes().to_vec();
            return Ok(KeyPair::Ecdsa { point, scalar: Zeroizing::new(secret.to_bytes().to_vec()) });
        }
    }
    Err(err(std::io::Error::other("no valid P-256 scalar in 64 draws")))
}

/// SSH wire encoding: a `string` (u32 length, bytes).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// SSH wire encoding: an `mpint` of a non-negative big-endian number.
fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude.iter().position(|&b| b != 0).unwrap_or(magnitude.len());
    let digits = &magnitude[start..];
    let mut value = Zeroizing::new(Vec::with_capacity(digits.len() + 1));
    if digits.first().is_some_and(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(digits);
    put_string(out, &value);
}

impl KeyPair {
    fn algorithm(&self) -> &'static str {
        match self {
            KeyPair::Ed25519 { .. } => "ssh-ed25519",
            KeyPair::Ecdsa { .. } => "ecdsa-sha2-nistp256",
        }
    }

    /// The public key blob (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4).
    fn public_blob(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        put_string(&mut blob, self.algorithm().as_bytes());
        match self {
            KeyPair::Ed25519 { public, .. } => put_string(&mut blob, public),
            KeyPair::Ecdsa { point, .. } => {
                put_string(&mut blob, b"nistp256");
                put_string(&mut blob, point);
            }
        }
        blob
    }

    /// `<algorithm> <base64 blob>`, the start of a `.pub` line.
    fn public_line(&self) -> String {
        use base64::Engine;
        format!(
            "{} {}",
            self.algorithm(),
            base64::engine::general_purpose::STANDARD.encode(self.public_blob())
        )
    }

    /// The private key as `ssh-keygen` writes it: `openssh-key-v1`, not encrypted (OpenSSH's
    /// PROTOCOL.key).
    fn private_pem(&self, comment: &str) -> Zeroizing<String> {
        use base64::Engine;
        let mut check = [0u8; 4];
        // A random check word (it only detects a wrong passphrase); a constant if the RNG fails.
        let _ = crate::base::random::fill(&mut check);
        let mut secret = Zeroizing::new(Vec::new());
        secret.extend_from_slice(&check);
        secret.extend_from_slice(&check);
        put_string(&mut secret, self.algorithm().as_bytes());
        match self {
            KeyPair::Ed25519 { public, seed } => {
                put_string(&mut secret, public);
                let mut both = Zeroizing::new(seed.to_vec());
                both.extend_from_slice(public);
                put_string(&mut secret, &both);
            }
            KeyPair::Ecdsa { point, scalar } => {
                put_string(&mut secret, b"nistp256");
                put_string(&mut secret, point);
                put_mpint(&mut secret, scalar);
            }
        }
        put_string(&mut secret, comment.as_bytes());
        let mut pad = 1u8;
        while secret.len() % 8 != 0 {
            secret.push(pad);
            pad += 1;
        }
        let mut body = Zeroizing::new(b"openssh-key-v1\0".to_vec());
        put_string(&mut body, b"none");
        put_string(&mut body, b"none");
        put_string(&mut body, b"");
        body.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut body, &self.public_blob());
        put_string(&mut body, &secret);
        let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*body));
        let mut pem = Zeroizing::new(String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        for line in encoded.as_bytes().chunks(70) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mpints_are_minimal_and_positive() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0x00, 0x00, 0x7f, 0x01]);
        assert_eq!(out, [0, 0, 0, 2, 0x7f, 0x01]);
        let mut out = Vec::new();
        put_mpint(&mut out, &[0x80, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 0x00, 0x80, 0x01]);
    }

    #[test]
    fn deferred_types_follow_the_configuration() {
        assert_eq!(deferred_types(SshHostKeyType::Auto), ["rsa"]);
        assert_eq!(deferred_types(SshHostKeyType::Rsa), ["rsa"]);
        assert_eq!(deferred_types(SshHostKeyType::Dsa), ["dsa"]);
        assert!(deferred_types(SshHostKeyType::Ed25519).is_empty());
        assert!(deferred_types(SshHostKeyType::Ecdsa).is_empty());
    }

    #[test]
    fn old_keys_go_and_new_keys_have_sshd_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh = dir.path().join("etc/ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir");
        for old in ["ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_dsa_key", "ssh_host_ed25519_key"] {
            std::fs::write(ssh.join(old), "the image's key\n").expect("write");
        }
        std::fs::write(ssh.join("sshd_config"), "# kept\n").expect("write");
        let root = HostRoot::new(dir.path());
        let written = replace_with_fast_keys(&root, Path::new("/etc/ssh"), "vm1").expect("keys");
        assert_eq!(written.len(), 2);
        let mut names: Vec<String> = std::fs::read_dir(&ssh)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ssh_host_ecdsa_key",
                "ssh_host_ecdsa_key.pub",
                "ssh_host_ed25519_key",
                "ssh_host_ed25519_key.pub",
                "sshd_config"
            ]
        );
        for (name, mode) in [("ssh_host_ed25519_key", 0o600), ("ssh_host_ed25519_key.pub", 0o644)] {
            let m = std::fs::metadata(ssh.join(name)).expect("stat").permissions().mode() & 0o777;
            assert_eq!(m, mode, "{name}");
        }
        let public = std::fs::read_to_string(ssh.join("ssh_host_ed25519_key.pub")).expect("read");
        assert!(
            public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI") && public.ends_with(" root@vm1\n")
        );
        let private = std::fs::read_to_string(ssh.join("ssh_host_ed25519_key")).expect("read");
        assert!(private
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"));
        // Every call makes new keys.
        replace_with_fast_keys(&root, Path::new("/etc/ssh"), "vm1").expect("keys");
        assert_ne!(std::fs::read_to_string(ssh.join("ssh_host_ed25519_key")).expect("read"), private);
    }

    /// OpenSSH itself reads the keys: `ssh-keygen -y` derives the public key from each private
    /// key file, which must match the `.pub` wala wrote (ssh-keygen is on the build machine; the
    /// guest never runs it for these keys).
    #[test]
    fn openssh_reads_the_private_keys_back() {
        if std::process::Command::new("ssh-keygen").arg("-?").output().is_err() {
            crate::base::testing::skip("host_keys: ssh-keygen (openssh-client) is not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        for private in replace_with_fast_keys(&root, Path::new("/etc/ssh"), "vm1").expect("keys") {
            let out = std::process::Command::new("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(&private)
                .output()
                .expect("run");
            assert!(out.status.success(), "{}: {}", private.display(), String::from_utf8_lossy(&out.stderr));
            let derived = String::from_utf8_lossy(&out.stdout);
            let written = std::fs::read_to_string(private.with_extension("pub")).expect("pub");
            let first_two = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            assert_eq!(first_two(&derived), first_two(&written), "{}", private.display());
            // The private half matches the public one: a signature made with the private key
            // verifies against the .pub line (ssh-keygen -Y, OpenSSH 8.1 and later).
            let message = dir.path().join("message");
            std::fs::write(&message, b"wala host key check").expect("write");
            let signers = dir.path().join("allowed_signers");
            std::fs::write(&signers, format!("check@wala {}", written.trim())).expect("write");
            let signed = std::process::Command::new("ssh-keygen")
                .args(["-q", "-Y", "sign", "-n", "wala-test", "-f"])
                .arg(&private)
                .arg(&message)
                .output()
                .expect("run");
            assert!(signed.status.success(), "sign: {}", String::from_utf8_lossy(&signed.stderr));
            let verified = std::process::Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "wala-test", "-I", "check@wala", "-f"])
                .arg(&signers)
                .arg("-s")
                .arg(message.with_extension("sig"))
                .stdin(std::fs::File::open(&message).expect("open"))
                .output()
                .expect("run");
            assert!(
                verified.status.success(),
                "{}: {}",
                private.display(),
                String::from_utf8_lossy(&verified.stderr)
            );
            std::fs::remove_file(message.with_extension("sig")).expect("remove the signature");
        }
    }

    #[test]
    fn deferred_keys_are_made_by_ssh_keygen_and_its_failure_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let runner = crate::base::cmd::FakeRunner::new();
        make_deferred_keys(&root, &runner, Path::new("/etc/ssh"), &["rsa"]).expect("keygen");
        let key = dir.path().join("etc/ssh/ssh_host_rsa_key");
        assert_eq!(runner.command_lines(), [format!("ssh-keygen -q -N  -t rsa -f {}", key.display())]);
        let failing = crate::base::cmd::FakeRunner::new();
        failing.respond(
            "ssh-keygen",
            crate::base::cmd::CmdOutput { code: Some(1), stderr: "no entropy".into(), ..Default::default() },
        );
        let e = make_deferred_keys(&root, &failing, Path::new("/etc/ssh"), &["rsa"]).unwrap_err();
        assert!(e.to_string().contains("rsa") && format!("{:?}", e).contains("no entropy"), "{e:?}");
    }

    #[test]
    fn dsa_is_skipped_where_openssh_no_longer_has_it_and_only_dsa() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        // OpenSSH 10's ssh-keygen (Debian 13).
        let no_dsa = crate::base::cmd::FakeRunner::new();
        no_dsa.respond(
            "ssh-keygen",
            crate::base::cmd::CmdOutput {
                code: Some(255),
                stderr: "unknown key type dsa\n".into(),
                ..Default::default()
            },
        );
        make_deferred_keys(&root, &no_dsa, Path::new("/etc/ssh"), &["dsa"]).expect("DSA skipped");
        assert_eq!(no_dsa.command_lines().len(), 1, "ssh-keygen was asked");
        // The same answer for RSA is an error: RSA is never optional.
        let e = make_deferred_keys(&root, &no_dsa, Path::new("/etc/ssh"), &["rsa"]).unwrap_err();
        assert!(e.to_string().contains("rsa"), "{e}");
        // Another DSA failure is still one.
        let full = crate::base::cmd::FakeRunner::new();
        full.respond(
            "ssh-keygen",
            crate::base::cmd::CmdOutput { code: Some(1), stderr: "disk full".into(), ..Default::default() },
        );
        assert!(make_deferred_keys(&root, &full, Path::new("/etc/ssh"), &["dsa"]).is_err());
    }

    #[test]
    fn the_sshd_unit_is_found_by_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lib/systemd/system")).expect("mkdir");
        std::fs::write(dir.path().join("lib/systemd/system/ssh.service"), "").expect("write");
        let runner = crate::base::cmd::FakeRunner::new();
        reload_sshd(&HostRoot::new(dir.path()), &runner).expect("reload");
        assert_eq!(runner.command_lines(), ["systemctl try-reload-or-restart ssh.service"]);
    }

    #[test]
    fn each_family_reloads_its_own_sshd_unit() {
        use crate::base::testing::FakeOs;
        for os in FakeOs::ALL {
            let dir = tempfile::tempdir().expect("tempdir");
            let runner = crate::base::cmd::FakeRunner::new();
            reload_sshd(&os.build(dir.path()), &runner).expect("reload");
            let unit = match os {
                FakeOs::Debian12 | FakeOs::Ubuntu2404 => "ssh.service",
                FakeOs::Rhel9 | FakeOs::Rhel8 | FakeOs::AzureLinux3 | FakeOs::Sles15 => "sshd.service",
            };
            assert_eq!(runner.command_lines(), [format!("systemctl try-reload-or-restart {unit}")], "{os:?}");
        }
    }
}
