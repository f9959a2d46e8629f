//! JIT remote-access accounts: what the goal state's RemoteAccess document (wire.md §4.6) asks of
//! the host, planned against the accounts that exist, then applied.
//!
//! What waagent does (`azurelinuxagent/ga/remoteaccess.py`), and wala with it:
//! * an account is created for each listed user that does not exist yet and has not expired:
//!   `useradd -m -e <expiration + 1 day> -c JIT_Account`, the password decrypted from the document
//!   with the transport key (CMS, UTF-16 inside) and hashed with `Provisioning.PasswordCryptId`,
//!   and a line `<name> ALL=(ALL) ALL` in `<OS.SudoersDir>/waagent`; a failure after `useradd` removes
//!   the account again;
//! * a listed account whose `Expiration` has passed is deleted (`userdel -f -r` and its sudoers
//!   line), and so is every account carrying the marker that the document no longer lists, or all
//!   of them when the goal state names no document;
//! * the marker is the GECOS field `JIT_Account`: only such accounts are ever deleted.
//!
//! Where wala is stricter (docs/differences.md): an account is wala's to delete only when it carries
//! the marker *and* an expiry date in the shadow file (which its user cannot set: a user who puts
//! `JIT_Account` in their own GECOS with `chfn` is not deleted), is a regular account
//! ([`user::system_account_reason`]) and is not the provisioned admin user; a listed name that
//! already exists as another account is refused (waagent resets that account's password and gives
//! it sudo); the password never goes into a command line (waagent runs `usermod -p <hash>`); an empty
//! password is refused; a listed account whose expiration moved gets the new date (`usermod -e`).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;

use crate::base::civil_date;
use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::files;
use crate::base::root::HostRoot;
use crate::base::secret::Secret;
use crate::crypto::TransportKeys;
use crate::documents::conf::PasswordCryptId;
use crate::documents::wire::RemoteAccess;
use crate::host::user::{self, UserError};

/// The GECOS field waagent (and wala) give the accounts they create (`REMOTE_ACCESS_ACCOUNT_COMMENT`).
pub const ACCOUNT_COMMENT: &str = "JIT_Account";

const DAY: i64 = 86_400;

/// Why a remote-access change failed. Never carries a password, its hash or the encrypted text.
#[derive(Debug, thiserror::Error)]
pub enum RemoteAccessError {
    #[error("remote access user {name}: cannot decrypt the password: {why}")]
    Decrypt { name: String, why: String },
    #[error("remote access user {name}: {source}")]
    User {
        name: String,
        #[source]
        source: UserError,
    },
    #[error("remote access user {name}: {source}")]
    Command {
        name: String,
        #[source]
        source: CmdError,
    },
    /// The account is not one wala may change or delete (see [`classify`]).
    #[error("remote access user {name} is left alone: {why}")]
    NotManaged { name: String, why: String },
}

/// Parse an `Expiration` as waagent does (`%a, %d %b %Y %H:%M:%S %Z`, e.g.
/// `Mon, 01 Jan 2030 00:00:00 GMT`; the zone is `GMT` or `UTC` and the time is UTC) into seconds
/// since the epoch. The error says what is wrong, without echoing the value.
pub fn parse_expiration(text: &str) -> Result<i64, &'static str> {
    const FORMAT: &str = "expected a date like \"Mon, 01 Jan 2030 00:00:00 GMT\"";
    const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const MONTHS: [&str; 12] =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let mut it = text.split_whitespace();
    let mut next = || it.next().ok_or(FORMAT);
    let (weekday, day, month, year, time, zone) = (next()?, next()?, next()?, next()?, next()?, next()?);
    if it.next().is_some() {
        return Err(FORMAT);
    }
    let weekday = weekday.strip_suffix(',').ok_or(FORMAT)?;
    if !WEEKDAYS.iter().any(|w| w.eq_ignore_ascii_case(weekday)) {
        return Err("unknown day of the week");
    }
    if !["GMT", "UTC"].iter().any(|z| z.eq_ignore_ascii_case(zone)) {
        return Err("the time zone must be GMT or UTC");
    }
    let number = |s: &str, max_digits: usize| -> Result<i64, &'static str> {
        if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FORMAT);
        }
        s.parse().map_err(|_| FORMAT)
    };
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month)).ok_or("unknown month")? + 1;
    if year.len() != 4 {
        return Err(FORMAT);
    }
    let year = number(year, 4)?;
    if year == 0 {
        return Err("there is no year 0");
    }
    let day = number(day, 2)?;
    let month = u32::try_from(month).map_err(|_| FORMAT)?;
    if day < 1 || day > days_in_month(year, month) {
        return Err("no such day in that month");
    }
    let mut hms = time.split(':');
    let (Some(h), Some(m), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next()) else {
        return Err(FORMAT);
    };
    let (h, m, s) = (number(h, 2)?, number(m, 2)?, number(s, 2)?);
    if h > 23 || m > 59 || s > 59 {
        return Err("no such time of day");
    }
    let day = u32::try_from(day).map_err(|_| FORMAT)?;
    let t = civil_date::to_days(year, month, day) * DAY + h * 3600 + m * 60 + s;
    // The account's expiry is the day after, which must still be a four-digit year (waagent fails
    // on it too).
    if expire_day(t) > civil_date::to_days(9999, 12, 31) {
        return Err("too far in the future");
    }
    Ok(t)
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The date of day `days` since 1970-01-01, as `YYYY-MM-DD`.
pub fn date_of_day(days: i64) -> String {
    let (year, month, day) = civil_date::from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The account expiry day for an expiration time: the day after it, as waagent sets it, so the
/// day-granular lock never comes before the expiration (wala deletes the account at the
/// expiration itself).
pub fn expire_day(expires_at: i64) -> i64 {
    expires_at.div_euclid(DAY) + 1
}

/// An account that is wala's to change and delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub name: String,
    /// The shadow file's expiry day (days since 1970-01-01).
    pub expire_day: i64,
}

/// The accounts on the host, as the plan needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Remote-access accounts wala may change and delete, by name.
    pub managed: BTreeMap<String, Managed>,
    /// Every other account, with the reason it is not wala's.
    pub others: BTreeMap<String, String>,
}

/// Read `<root>/etc/passwd` and the shadow file (`OS.PasswordPath`), and sort every account into
/// [`Snapshot::managed`] and [`Snapshot::others`] with [`classify`]. `admin` is the provisioned
/// admin user's name, when known.
pub fn snapshot(root: &HostRoot, shadow: &Path, admin: Option<&str>) -> Result<Snapshot, UserError> {
    let passwd = files::read_optional(&root.path("/etc/passwd"))?.unwrap_or_default();
    let shadow = files::read_optional(&root.path(shadow))?.unwrap_or_default();
    let mut snap = Snapshot::default();
    for line in passwd.lines() {
        let Some(entry) = PasswdEntry::parse(line) else { continue };
        match classify(root, &entry, &shadow, admin) {
            Ok(m) => {
                snap.managed.insert(m.name.clone(), m);
            }
            Err(why) => {
                snap.others.insert(entry.name.to_string(), why);
            }
        }
    }
    Ok(snap)
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    gecos: &'a str,
    home: &'a str,
    shell: &'a str,
}

impl<'a> PasswdEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with(['+', '-', '#']) {
            return None;
        }
        Some(Self {
            name: f[0],
            uid: f[2].parse().unwrap_or(u32::MAX),
            gid: f[3].parse().unwrap_or(u32::MAX),
            gecos: f[4],
            home: f[5],
            shell: f[6],
        })
    }
}

/// The expiry day (shadow field 8) of `name`, when set.
fn shadow_expire_day(shadow: &str, name: &str) -> Option<i64> {
    shadow.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 8 && f[0] == name).then(|| f[7].trim().parse().ok()).flatten()
    })
}

/// Whether an account is wala's to change and delete, and if not, why: it must carry the marker
/// GECOS `JIT_Account`, have an expiry date in the shadow file, be a regular account
/// ([`user::system_account_reason`], never relaxed by `Provisioning.AllowResetSysUser`) and not be
/// the provisioned admin user.
fn classify(
    root: &HostRoot,
    entry: &PasswdEntry<'_>,
    shadow: &str,
    admin: Option<&str>,
) -> Result<Managed, String> {
    if entry.gecos != ACCOUNT_COMMENT {
        return Err("it is not a remote access account".into());
    }
    if admin == Some(entry.name) {
        return Err("it is the provisioned admin user".into());
    }
    let account = user::Account {
        name: entry.name.to_string(),
        uid: entry.uid,
        gid: entry.gid,
        home: entry.home.into(),
        shell: entry.shell.into(),
    };
    if let Some(why) = user::system_account_reason(root, &account, false) {
        return Err(format!("it carries the {ACCOUNT_COMMENT} marker but is a system account ({why})"));
    }
    let Some(expire_day) = shadow_expire_day(shadow, entry.name) else {
        return Err(format!(
            "it carries the {ACCOUNT_COMMENT} marker but has no expiry date in the shadow file, which every \
             remote access account gets"
        ));
    };
    Ok(Managed { name: entry.name.to_string(), expire_day })
}

/// Why an account is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its `Expiration` has passed.
    Expired,
    /// The document no longer lists it.
    Removed,
    /// The goal state names no RemoteAccess document any more.
    NoDocument,
}

impl DeleteReason {
    pub fn text(self) -> &'static str {
        match self {
            DeleteReason::Expired => "its expiration has passed",
            DeleteReason::Removed => "the RemoteAccess document no longer lists it",
            DeleteReason::NoDocument => "the goal state has no RemoteAccess document",
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the account (expiring at `expires_at`, seconds since the epoch).
    Create { name: String, expires_at: i64, encrypted_password: Secret<String> },
    /// Set the account's expiry day to follow a changed `Expiration`.
    Extend { name: String, expires_at: i64 },
    /// Delete the account.
    Delete { name: String, why: DeleteReason },
}

/// What to do, what to say about it, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Listed users left alone, with the reason (logged as warnings).
    pub refused: Vec<(String, String)>,
    /// The earliest expiration (seconds since the epoch) of an account the plan keeps or creates:
    /// the plan must be made again then.
    pub next_expiry: Option<i64>,
}

/// Plan the changes for `doc` (`None`: the goal state names no document) at `now` (seconds since
/// the epoch). A listed user is created when no account has the name and it has not expired
/// (`now < expiration`); a managed account is deleted when it has expired or is no longer listed;
/// anything else is left alone. Of a name listed twice, the first entry counts.
pub fn plan(doc: Option<&RemoteAccess>, host: &Snapshot, now: i64) -> Plan {
    let mut plan = Plan::default();
    let mut listed = BTreeMap::new();
    for (i, u) in doc.map(|d| d.users.as_slice()).unwrap_or_default().iter().enumerate() {
        if listed.insert(u.name.as_str(), ()).is_some() {
            plan.refused.push((
                u.name.clone(),
                format!("listed again (RemoteAccess/Users/User[{i}]); the first entry counts"),
            ));
            continue;
        }
        if let Err(e) = user::validate_name(&u.name) {
            plan.refused.push((u.name.clone(), e.to_string()));
            continue;
        }
        let expires_at = match u.expiration.as_deref().map(parse_expiration) {
            Some(Ok(t)) => t,
            Some(Err(why)) => {
                plan.refused
                    .push((u.name.clone(), format!("RemoteAccess/Users/User[{i}]/Expiration: {why}")));
                continue;
            }
            None => {
                plan.refused
                    .push((u.name.clone(), format!("RemoteAccess/Users/User[{i}]/Expiration is missing")));
                continue;
            }
        };
        let expired = now >= expires_at;
        let keep = |plan: &mut Plan| {
            plan.next_expiry = Some(plan.next_expiry.map_or(expires_at, |t: i64| t.min(expires_at)));
        };
        match (host.managed.get(&u.name), host.others.get(&u.name)) {
            (Some(_), _) if expired => {
                plan.steps.push(Step::Delete { name: u.name.clone(), why: DeleteReason::Expired })
            }
            (Some(m), _) => {
                if m.expire_day != expire_day(expires_at) {
                    plan.steps.push(Step::Extend { name: u.name.clone(), expires_at });
                }
                keep(&mut plan);
            }
            (None, Some(why)) => {
                if !expired {
                    plan.refused
                        .push((u.name.clone(), format!("an account with that name exists and {why}")));
                }
            }
            (None, None) if expired => {}
            (None, None) => {
                plan.steps.push(Step::Create {
                    name: u.name.clone(),
                    expires_at,
                    encrypted_password: u.encrypted_password.clone(),
                });
                keep(&mut plan);
            }
        }
    }
    for name in host.managed.keys() {
        if !listed.contains_key(name.as_str()) {
            let why = if doc.is_some() { DeleteReason::Removed } else { DeleteReason::NoDocument };
            plan.steps.push(Step::Delete { name: name.clone(), why });
        }
    }
    plan
}

/// Decrypt a `Password`: base64 of a DER CMS envelope addressed to the transport key, whose content
/// is the password in UTF-16 (little-endian unless a byte-order mark says otherwise), as waagent
/// decrypts it (`openssl cms -decrypt -inform DER`, then `decode('utf-16')`).
pub fn decrypt_password(keys: &TransportKeys, encrypted: &Secret<String>) -> Result<Secret<String>, String> {
    let compact: String = encrypted.expose().chars().filter(|c| !c.is_whitespace()).collect();
    let der = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| "Password is not base64".to_string())?,
    );
    let plain = keys.decrypt(&der, crate::crypto::helper::Envelope::Password).map_err(|e| e.to_string())?;
    decode_utf16(&plain)
}

fn decode_utf16(bytes: &[u8]) -> Result<Secret<String>, String> {
    if bytes.len() % 2 != 0 {
        return Err("the decrypted Password is not UTF-16 (odd length)".into());
    }
    let (big_endian, body) = match bytes {
        [0xFE, 0xFF, rest @ ..] => (true, rest),
        [0xFF, 0xFE, rest @ ..] => (false, rest),
        _ => (false, bytes),
    };
    let units: zeroize::Zeroizing<Vec<u16>> =
        zeroize::Zeroizing::new(
            body.chunks_exact(2)
                .map(|c| {
                    if big_endian {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    }
                })
                .collect(),
        );
    let text = String::from_utf16(&units).map_err(|_| "the decrypted Password is not UTF-16".to_string())?;
    Ok(Secret::new(text))
}

/// Turns a `Password` into the password ([`decrypt_password`] with the transport keys), or says why not.
pub type Decrypt<'a> = dyn Fn(&Secret<String>) -> Result<Secret<String>, String> + 'a;

/// Where and how accounts are changed.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `OS.PasswordPath`.
    pub shadow: &'a Path,
    /// `OS.SudoersDir`.
    pub sudoers_dir: &'a Path,
    /// `Provisioning.PasswordCryptId` and `Provisioning.PasswordCryptSaltLength`.
    pub crypt: (PasswordCryptId, usize),
    /// The provisioned admin user, never deleted.
    pub admin: Option<&'a str>,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Report {
    pub created: Vec<String>,
    pub extended: Vec<String>,
    pub deleted: Vec<String>,
    pub failed: Vec<RemoteAccessError>,
}

/// Apply `plan`, one step after the other; a failed step is reported and the others still run.
/// `decrypt` turns a `Password` into the password (see [`decrypt_password`]).
pub fn apply(
    root: &HostRoot,
    runner: &dyn Runner,
    settings: &Settings<'_>,
    plan: &Plan,
    decrypt: &Decrypt<'_>,
) -> Report {
    let mut report = Report::default();
    for step in &plan.steps {
        match step {
            Step::Create { name, expires_at, encrypted_password } => {
                match create(root, runner, settings, name, *expires_at, encrypted_password, decrypt) {
                    Ok(()) => report.created.push(name.clone()),
                    Err(e) => report.failed.push(e),
                }
            }
            Step::Extend { name, expires_at } => match extend(root, runner, settings, name, *expires_at) {
                Ok(()) => report.extended.push(name.clone()),
                Err(e) => report.failed.push(e),
            },
            Step::Delete { name, why } => {
                log::info!("Removing remote access user {name}: {}", why.text());
                match delete(root, runner, settings, name) {
                    Ok(()) => report.deleted.push(name.clone()),
                    Err(e) => report.failed.push(e),
                }
            }
        }
    }
    report
}

fn with_prefix(root: &HostRoot, cmd: Cmd) -> Cmd {
    if root.is_live() {
        cmd
    } else {
        cmd.arg("--prefix").arg(root.prefix())
    }
}

fn create(
    root: &HostRoot,
    runner: &dyn Runner,
    s: &Settings<'_>,
    name: &str,
    expires_at: i64,
    encrypted: &Secret<String>,
    decrypt: &Decrypt<'_>,
) -> Result<(), RemoteAccessError> {
    let user_err = |source| RemoteAccessError::User { name: name.into(), source };
    // Everything that can fail without touching the host comes first: no account is left behind
    // for a password that cannot be read.
    let password = decrypt(encrypted).map_err(|why| RemoteAccessError::Decrypt { name: name.into(), why })?;
    if password.expose().is_empty() {
        return Err(RemoteAccessError::Decrypt { name: name.into(), why: "the password is empty".into() });
    }
    let hash = Secret::new(user::hash_password(&password, s.crypt.0, s.crypt.1).map_err(user_err)?);
    drop(password);
    let date = date_of_day(expire_day(expires_at));
    log::info!("Adding remote access user {name} with expiration date {date}");
    let cmd = with_prefix(
        root,
        Cmd::new("useradd").args(["-m", "-s", "/bin/bash", "-e", &date, "-c", ACCOUNT_COMMENT]),
    );
    runner
        .run(&cmd.arg("--").arg(name))
        .map_err(|source| RemoteAccessError::Command { name: name.into(), source })?;
    let finish = || -> Result<(), UserError> {
        let account = user::lookup(root, name)?
            .ok_or_else(|| UserError::NotCreated { name: name.into(), passwd: root.path("/etc/passwd") })?;
        user::check_regular(root, &account, false)?;
        user::set_shadow_password(root, s.shadow, name, user::PasswordField::Hash(hash.expose()))?;
        log::info!("Adding remote access user {name} to sudoers");
        user::configure_sudoers(root, runner, s.sudoers_dir, name, false)
    };
    if let Err(e) = finish() {
        // As waagent: an account half set up is removed again.
        if let Err(undo) = delete(root, runner, s, name) {
            log::warn!("removing the half-created remote access user again: {undo}");
        }
        return Err(user_err(e));
    }
    let facts = crate::base::distro::OsFacts::detect(root);
    crate::host::selinux::restore_labels(root, runner, &facts, &[s.shadow.into(), s.sudoers_dir.into()]);
    Ok(())
}

fn extend(
    root: &HostRoot,
    runner: &dyn Runner,
    s: &Settings<'_>,
    name: &str,
    expires_at: i64,
) -> Result<(), RemoteAccessError> {
    check_managed(root, s, name)?;
    let date = date_of_day(expire_day(expires_at));
    log::info!("Remote access user {name}: expiration date now {date}");
    let cmd = with_prefix(root, Cmd::new("usermod").args(["-e", &date]));
    runner
        .run(&cmd.arg("--").arg(name))
        .map_err(|source| RemoteAccessError::Command { name: name.into(), source })?;
    Ok(())
}

/// Check again, just before a change, that the account is still wala's.
fn check_managed(root: &HostRoot, s: &Settings<'_>, name: &str) -> Result<(), RemoteAccessError> {
    let user_err = |source| RemoteAccessError::User { name: name.into(), source };
    let passwd =
        files::read_optional(&root.path("/etc/passwd")).map_err(|e| user_err(e.into()))?.unwrap_or_default();
    let shadow =
        files::read_optional(&root.path(s.shadow)).map_err(|e| user_err(e.into()))?.unwrap_or_default();
    let entry =
        passwd.lines().filter_map(PasswdEntry::parse).find(|e| e.name == name).ok_or_else(|| {
            RemoteAccessError::NotManaged { name: name.into(), why: "no such account".into() }
        })?;
    classify(root, &entry, &shadow, s.admin)
        .map(drop)
        .map_err(|why| RemoteAccessError::NotManaged { name: name.into(), why })
}

/// Delete a remote-access account (`userdel -f -r`) and its sudoers line, after checking again that
/// it is one ([`classify`]).
fn delete(
    root: &HostRoot,
    runner: &dyn Runner,
    s: &Settings<'_>,
    name: &str,
) -> Result<(), RemoteAccessError> {
    check_managed(root, s, name)?;
    let cmd = with_prefix(root, Cmd::new("userdel").args(["-f", "-r"])).arg("--").arg(name);
    let out =
        runner.output(&cmd).map_err(|source| RemoteAccessError::Command { name: name.into(), source })?;
    // 12: the home directory could not be removed; the account itself is gone.
    if !out.success() && out.code != Some(12) {
        return Err(RemoteAccessError::Command {
            name: name.into(),
            source: CmdError::Failed { command: cmd.to_string(), code: out.code, stderr: out.stderr_str() },
        });
    }
    if !out.success() {
        log::info!("userdel {name}: {}", out.stderr_str().trim());
    }
    user::remove_sudoers(root, s.sudoers_dir, name)
        .map_err(|source| RemoteAccessError::User { name: name.into(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;
    use crate::documents::wire::RemoteAccessUser;

    const T2030: i64 = 1_893_456_000; // Tue, 01 Jan 2030 00:00:00 GMT

    #[test]
    fn expirations_as_waagent_reads_them() {
        assert_eq!(parse_expiration("Tue, 01 Jan 2030 00:00:00 GMT"), Ok(T2030));
        assert_eq!(parse_expiration("tue, 1 jan 2030 00:00:01 UTC"), Ok(T2030 + 1));
        assert_eq!(parse_expiration("  Thu, 29 Feb 2024 23:59:59   GMT "), Ok(1_709_251_199));
        assert_eq!(parse_expiration("Thu, 01 Jan 1970 00:00:00 GMT"), Ok(0));
        assert_eq!(parse_expiration("Mon, 01 Jan 0001 00:00:00 GMT"), Ok(-62_135_596_800));
        let last = parse_expiration("Thu, 30 Dec 9999 23:59:59 GMT").expect("the last day that works");
        assert_eq!(date_of_day(expire_day(last)), "9999-12-31");
        for bad in [
            "",
            "2019-01-01",
            "Tue 01 Jan 2030 00:00:00 GMT",
            "Tue, 01 Jan 2030 00:00:00",
            "Tue, 01 Jan 2030 00:00:00 CET",
            "Tue, 01 Jan 2030 00:00:00 GMT x",
            "Tue, 30 Feb 2030 00:00:00 GMT",
            "Fri, 29 Feb 2030 00:00:00 GMT",
            "Tue, 01 Foo 2030 00:00:00 GMT",
            "Tue, 01 Jan 30 00:00:00 GMT",
            "Tue, 01 Jan 2030 24:00:00 GMT",
            "Tue, 01 Jan 2030 00:60:00 GMT",
            "Tue, 01 Jan 2030 00:00 GMT",
            "Tue, 001 Jan 2030 00:00:00 GMT",
            "Tue, +1 Jan 2030 00:00:00 GMT",
            "Xyz, 01 Jan 2030 00:00:00 GMT",
            "Sat, 01 Jan 0000 00:00:00 GMT",
            "Fri, 31 Dec 9999 00:00:00 GMT",
        ] {
            assert!(parse_expiration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_and_expiry_days() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(T2030 / DAY), "2030-01-01");
        assert_eq!(date_of_day(19_782), "2024-02-29");
        for d in [-1, 0, 59, 60, 365, 10_000, 19_782, 30_000, 2_932_896] {
            let date = date_of_day(d);
            let parts: Vec<&str> = date.split('-').collect();
            let number = |i: usize| parts[i].parse::<u32>().expect("number");
            let year = parts[0].parse::<i64>().expect("year");
            assert_eq!(civil_date::to_days(year, number(1), number(2)), d, "{date}");
        }
        // The day after the expiration, as waagent's `(expiration + 1 day).strftime("%Y-%m-%d")`.
        assert_eq!(date_of_day(expire_day(T2030)), "2030-01-02");
        assert_eq!(date_of_day(expire_day(T2030 - 1)), "2030-01-01");
    }

    fn listed(name: &str, expiration: Option<&str>) -> RemoteAccessUser {
        RemoteAccessUser {
            name: name.into(),
            encrypted_password: Secret::new(format!("enc-{name}")),
            expiration: expiration.map(str::to_string),
            groups: Vec::new(),
        }
    }

    fn doc(users: Vec<RemoteAccessUser>) -> RemoteAccess {
        RemoteAccess { version: Some("1".into()), incarnation: Some("1".into()), users }
    }

    fn snap(managed: &[(&str, i64)], others: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            managed: managed
                .iter()
                .map(|(n, d)| (n.to_string(), Managed { name: n.to_string(), expire_day: *d }))
                .collect(),
            others: others.iter().map(|(n, w)| (n.to_string(), w.to_string())).collect(),
        }
    }

    const EXP: &str = "Tue, 01 Jan 2030 00:00:00 GMT";

    #[test]
    fn plan_creates_keeps_extends_expires_and_removes() {
        let now = T2030 - 3600;
        let d = doc(vec![
            listed("new", Some(EXP)),
            listed("kept", Some(EXP)),
            listed("moved", Some(EXP)),
            listed("gone", Some("Mon, 31 Dec 2029 22:00:00 GMT")),
            listed("late", Some("Mon, 31 Dec 2029 22:00:00 GMT")),
            listed("admin", Some(EXP)),
            listed("bad", Some("2019-01-01")),
            listed("nodate", None),
            listed("-rf", Some(EXP)),
            listed("new", Some(EXP)),
        ]);
        let host = snap(
            &[("kept", expire_day(T2030)), ("moved", 1), ("gone", expire_day(T2030)), ("stale", 5)],
            &[("admin", "it is the provisioned admin user"), ("root", "it is not a remote access account")],
        );
        let p = plan(Some(&d), &host, now);
        assert_eq!(
            p.steps,
            vec![
                Step::Create {
                    name: "new".into(),
                    expires_at: T2030,
                    encrypted_password: Secret::new("enc-new".to_string())
                },
                Step::Extend { name: "moved".into(), expires_at: T2030 },
                Step::Delete { name: "gone".into(), why: DeleteReason::Expired },
                Step::Delete { name: "stale".into(), why: DeleteReason::Removed },
            ]
        );
        let refused: Vec<&str> = p.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(refused, ["admin", "bad", "nodate", "-rf", "new"]);
        assert!(p.refused[0].1.contains("provisioned admin user"), "{:?}", p.refused[0]);
        assert!(p.refused[1].1.contains("User[6]/Expiration"), "{:?}", p.refused[1]);
        assert!(!p.refused[1].1.contains("2019"), "the value is not echoed: {:?}", p.refused[1]);
        assert_eq!(p.next_expiry, Some(T2030));
        // An hour later everything listed has expired: the kept accounts go, nothing is created.
        let p = plan(Some(&d), &host, T2030);
        let deleted: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::Delete { name, .. } => name.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(deleted, ["kept", "moved", "gone", "stale"]);
        assert_eq!(p.next_expiry, None);
    }

    #[test]
    fn without_a_document_every_managed_account_goes_and_nothing_else() {
        let host = snap(&[("a", 1), ("b", 2)], &[("azureuser", "it is not a remote access account")]);
        let p = plan(None, &host, 0);
        assert_eq!(
            p.steps,
            vec![
                Step::Delete { name: "a".into(), why: DeleteReason::NoDocument },
                Step::Delete { name: "b".into(), why: DeleteReason::NoDocument },
            ]
        );
        assert!(plan(Some(&doc(Vec::new())), &host, 0)
            .steps
            .iter()
            .all(|s| matches!(s, Step::Delete { why: DeleteReason::Removed, .. })));
        assert_eq!(plan(None, &Snapshot::default(), 0), Plan::default());
    }

    fn root_with(passwd: &str, shadow: &str) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/passwd"), passwd).expect("write");
        std::fs::write(dir.path().join("etc/shadow"), shadow).expect("write");
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        azureuser:x:1000:1000::/home/azureuser:/bin/bash\n\
        jit:x:1001:1001:JIT_Account:/home/jit:/bin/bash\n\
        chfn:x:1002:1002:JIT_Account:/home/chfn:/bin/bash\n\
        svc:x:998:998:JIT_Account:/var/svc:/bin/bash\n\
        locked:x:1003:1003:JIT_Account:/home/locked:/usr/sbin/nologin\n\
        admin:x:1004:1004:JIT_Account:/home/admin:/bin/bash\n\
        other:x:1005:1005:JIT_Account,,,:/home/other:/bin/bash\n";
    const SHADOW: &str = "root:*:19000:0:99999:7:::\nazureuser:*:19000:0:99999:7:::\n\
        jit:!:20000:::::21916:\nchfn:!:20000:0:99999:7:::\nsvc:!:20000:::::21916:\n\
        locked:!:20000:::::21916:\nadmin:!:20000:::::21916:\nother:!:20000:::::21916:\n";

    #[test]
    fn only_marked_regular_accounts_with_an_expiry_are_managed() {
        let (_d, root) = root_with(PASSWD, SHADOW);
        let s = snapshot(&root, Path::new("/etc/shadow"), Some("admin")).expect("snapshot");
        assert_eq!(s.managed.keys().collect::<Vec<_>>(), ["jit"]);
        assert_eq!(s.managed["jit"].expire_day, 21_916);
        let why = |n: &str| s.others[n].as_str();
        assert_eq!(why("azureuser"), "it is not a remote access account");
        assert_eq!(why("other"), "it is not a remote access account");
        assert!(why("chfn").contains("no expiry date"), "{}", why("chfn"));
        assert!(why("svc").contains("uid 998 < UID_MIN 1000"), "{}", why("svc"));
        assert!(why("locked").contains("allows no login"), "{}", why("locked"));
        assert_eq!(why("admin"), "it is the provisioned admin user");
        assert!(why("root").contains("not a remote access account"));
    }

    #[test]
    fn a_delete_checks_again_and_never_touches_an_account_that_is_not_managed() {
        let (d, root) = root_with(PASSWD, SHADOW);
        std::fs::create_dir_all(d.path().join("etc/sudoers.d")).expect("mkdir");
        std::fs::write(
            d.path().join("etc/sudoers.d/waagent"),
            "azureuser ALL=(ALL) ALL\njit ALL=(ALL) ALL\n",
        )
        .expect("write");
        let fake = FakeRunner::new();
        let settings = Settings {
            shadow: Path::new("/etc/shadow"),
            sudoers_dir: Path::new("/etc/sudoers.d"),
            crypt: (PasswordCryptId::Sha512, 10),
            admin: Some("admin"),
        };
        // A plan made from a stale view: every name but `jit` is refused when it comes to it.
        let names = ["azureuser", "chfn", "svc", "locked", "admin", "other", "root", "nobody", "jit"];
        let p = Plan {
            steps: names
                .iter()
                .map(|n| Step::Delete { name: n.to_string(), why: DeleteReason::NoDocument })
                .collect(),
            ..Plan::default()
        };
        let report = apply(&root, &fake, &settings, &p, &|_| Err("unused".into()));
        assert_eq!(report.deleted, ["jit"]);
        assert_eq!(report.failed.len(), names.len() - 1);
        assert!(report.failed.iter().all(|e| matches!(e, RemoteAccessError::NotManaged { .. })));
        let lines = fake.command_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("userdel -f -r --prefix ") && lines[0].ends_with(" -- jit"),
            "{}",
            lines[0]
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/sudoers.d/waagent")).expect("read"),
            "azureuser ALL=(ALL) ALL\n"
        );
    }

    #[test]
    fn a_create_that_cannot_decrypt_changes_nothing() {
        let (_d, root) = root_with(PASSWD, SHADOW);
        let fake = FakeRunner::new();
        let settings = Settings {
            shadow: Path::new("/etc/shadow"),
            sudoers_dir: Path::new("/etc/sudoers.d"),
            crypt: (PasswordCryptId::Sha512, 10),
            admin: None,
        };
        let create = |name: &str| Step::Create {
            name: name.into(),
            expires_at: T2030,
            encrypted_password: Secret::new("ENCRYPTED-SECRET".to_string()),
        };
        let p = Plan { steps: vec![create("a"), create("b")], ..Plan::default() };
        let report = apply(&root, &fake, &settings, &p, &|enc| {
            assert_eq!(enc.expose(), "ENCRYPTED-SECRET");
            Err("not a CMS envelope".into())
        });
        assert_eq!(report.failed.len(), 2);
        assert!(fake.calls().is_empty());
        let report = apply(&root, &fake, &settings, &p, &|_| Ok(Secret::new(String::new())));
        assert!(report.failed.iter().all(|e| e.to_string().contains("the password is empty")));
        assert!(fake.calls().is_empty());
        // useradd fails (the name was taken meanwhile): nothing is rolled back, since nothing was made.
        fake.respond(
            "useradd",
            crate::base::cmd::CmdOutput {
                code: Some(9),
                stderr: b"useradd: user 'a' already exists".to_vec(),
                ..Default::default()
            },
        );
        let report = apply(&root, &fake, &settings, &p, &|_| Ok(Secret::new("Pa55w.rd".to_string())));
        assert_eq!(report.failed.len(), 2);
        let lines = fake.command_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("useradd -m -s /bin/bash -e 2030-01-02 -c JIT_Account --prefix "),
            "{}",
            lines[0]
        );
        assert!(lines.iter().all(|l| !l.contains("Pa55w.rd") && !l.contains("$6$")), "{lines:?}");
    }

    #[test]
    fn utf16_passwords() {
        let le: Vec<u8> = "Pä55!".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode_utf16(&le).expect("le").expose(), "Pä55!");
        let mut bom_be = vec![0xFE, 0xFF];
        bom_be.extend("x1".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_utf16(&bom_be).expect("be").expose(), "x1");
        let mut bom_le = vec![0xFF, 0xFE];
        bom_le.extend("x1".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode_utf16(&bom_le).expect("le bom").expose(), "x1");
        assert!(decode_utf16(&[0x41]).is_err());
        assert!(decode_utf16(&[0x00, 0xD8]).is_err(), "a lone surrogate");
    }
}
