//! The WireServer firewall (`OS.EnableFirewall`): only root may open TCP connections to the
//! WireServer address, except DNS (TCP/53), which everyone may use. waagent's three iptables rules
//! in the `security` table, or its single nft rule in table `ip walinuxagent` where iptables is
//! missing (spec wire.md §14), checked and repaired periodically by the daemon
//! ([`crate::daemon::firewall_task`]).
//!
//! Where firewalld runs (RHEL and its rebuilds when it is enabled), the same three rules also go
//! into firewalld's permanent configuration as direct passthrough rules, as waagent does:
//! firewalld puts them back whenever it starts or reloads (a reload with its iptables backend
//! flushes every chain, the runtime rules included), so they hold from boot without
//! `wala-network-setup.service`, whose file is removed.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::base::cmd::{Cmd, CmdError, Runner};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("neither iptables nor nft is installed")]
    NoTool,
    #[error("firewall command failed: {0}")]
    Cmd(#[from] CmdError),
    #[error("the rules are still wrong after repair: {0}")]
    NotConverged(String),
}

/// Which tool manages the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nft,
}

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleState {
    Present,
    Missing,
    /// Some rules present, some missing or different.
    Partial,
}

/// iptables if it runs, else nft (waagent's preference).
pub fn backend(runner: &dyn Runner) -> Result<Backend, FirewallError> {
    if runner.exists("iptables") && runner.run(&Cmd::new("iptables").arg("--version")).is_ok() {
        Ok(Backend::Iptables)
    } else if runner.exists("nft") {
        Ok(Backend::Nft)
    } else {
        Err(FirewallError::NoTool)
    }
}

/// The three iptables rules, in order, after `-A`/`-C`/`-D OUTPUT`.
pub fn iptables_rules(dst: Ipv4Addr, uid: u32) -> [Vec<String>; 3] {
    let d = dst.to_string();
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = ["-d", &d, "-p", "tcp"].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    [
        base(&["--destination-port", "53", "-j", "ACCEPT"]),
        base(&["-m", "owner", "--uid-owner", &uid.to_string(), "-j", "ACCEPT"]),
        base(&["-m", "conntrack", "--ctstate", "INVALID,NEW", "-j", "DROP"]),
    ]
}

/// The rule agents up to 2.2.25 installed, removed on sight.
fn legacy_rule(dst: Ipv4Addr) -> Vec<String> {
    ["-d", &dst.to_string(), "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID,NEW", "-j", "ACCEPT"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn iptables(op: &str, rule: &[String]) -> Cmd {
    Cmd::new("iptables")
        .args(["-w", "-t", "security", op, "OUTPUT"])
        .args(rule)
        .timeout(Duration::from_secs(30))
}

/// The nft script that creates the table, chain and rule.
pub fn nft_script(dst: Ipv4Addr, uid: u32) -> String {
    format!(
        "add table ip walinuxagent\n\
         add chain ip walinuxagent output {{ type filter hook output priority 0 ; policy accept ; }}\n\
         add rule ip walinuxagent output ip daddr {dst} tcp dport != 53 skuid != {uid} ct state invalid,new counter drop\n"
    )
}

/// Check the rules.
pub fn check(
    runner: &dyn Runner,
    backend: Backend,
    dst: Ipv4Addr,
    uid: u32,
) -> Result<RuleState, FirewallError> {
    match backend {
        Backend::Iptables => {
            let mut present = 0;
            for rule in iptables_rules(dst, uid) {
                if runner.output(&iptables("-C", &rule))?.success() {
                    present += 1;
                }
            }
            Ok(match present {
                3 => RuleState::Present,
                0 => RuleState::Missing,
                _ => RuleState::Partial,
            })
        }
        Backend::Nft => {
            let out =
                runner.output(&Cmd::new("nft").args(["--json", "list", "table", "ip", "walinuxagent"]))?;
            if !out.success() {
                return Ok(RuleState::Missing);
            }
            Ok(if nft_rule_is_right(&out.stdout_str(), dst, uid) {
                RuleState::Present
            } else {
                RuleState::Partial
            })
        }
    }
}

/// Whether `nft --json list table` shows exactly one rule with waagent's matches and a drop.
pub fn nft_rule_is_right(json: &str, dst: Ipv4Addr, uid: u32) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else { return false };
    let rules: Vec<&serde_json::Value> = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .map(|items| items.iter().filter_map(|i| i.get("rule")).collect())
        .unwrap_or_default();
    let [rule] = rules.as_slice() else { return false };
    let text = rule.get("expr").map(|e| e.to_string()).unwrap_or_default();
    text.contains(&format!("\"{dst}\""))
        && text.contains("\"dport\"")
        && text.contains("\"!=\"")
        && text.contains(":53")
        && text.contains("\"skuid\"")
        && text.contains(&format!(":{uid}"))
        && text.contains("\"drop\"")
}

/// Make the rules right: nothing if they are; add them if missing; if only some are there,
/// remove them all and add them again. Returns what was found.
pub fn ensure(
    runner: &dyn Runner,
    backend: Backend,
    dst: Ipv4Addr,
    uid: u32,
) -> Result<RuleState, FirewallError> {
    if backend == Backend::Iptables {
        delete_all(runner, &legacy_rule(dst))?;
    }
    let found = check(runner, backend, dst, uid)?;
    if found == RuleState::Present {
        return Ok(found);
    }
    if found == RuleState::Partial {
        log::warn!("the WireServer firewall rules are not configured correctly; resetting them");
    }
    match backend {
        Backend::Iptables => {
            for rule in iptables_rules(dst, uid) {
                delete_all(runner, &rule)?;
            }
            for rule in iptables_rules(dst, uid) {
                runner.run(&iptables("-A", &rule))?;
            }
        }
        Backend::Nft => {
            let _ = runner.output(&Cmd::new("nft").args(["delete", "table", "ip", "walinuxagent"]));
            runner.run(&Cmd::new("nft").args(["-f", "-"]).stdin(nft_script(dst, uid)))?;
        }
    }
    match check(runner, backend, dst, uid)? {
        RuleState::Present => {
            log::info!("WireServer firewall rules set for {dst} ({backend:?})");
            Ok(found)
        }
        other => Err(FirewallError::NotConverged(format!("{other:?}"))),
    }
}

/// Whether firewalld runs: `firewall-cmd --state` prints `running`.
pub fn firewalld_running(runner: &dyn Runner) -> bool {
    runner.exists("firewall-cmd")
        && runner
            .output(&Cmd::new("firewall-cmd").arg("--state").timeout(Duration::from_secs(30)))
            .is_ok_and(|o| o.success() && o.stdout_str().trim() == "running")
}

/// `firewall-cmd --permanent --direct <op> ipv4 -t security <chain_op> OUTPUT <rule>`.
fn firewalld(op: &str, chain_op: &str, rule: &[String]) -> Cmd {
    Cmd::new("firewall-cmd")
        .args(["--permanent", "--direct", op, "ipv4", "-t", "security", chain_op, "OUTPUT"])
        .args(rule)
        .timeout(Duration::from_secs(30))
}

/// The DNS rule agents up to 2.7.0.6 inserted (`-I`) into firewalld's configuration; later ones
/// append it. Removed on sight, or DNS would be allowed twice.
fn firewalld_legacy_rule(dst: Ipv4Addr) -> Vec<String> {
    iptables_rules(dst, 0)[0].clone()
}

/// Check firewalld's permanent rules.
pub fn check_permanent(runner: &dyn Runner, dst: Ipv4Addr, uid: u32) -> Result<RuleState, FirewallError> {
    let mut present = 0;
    for rule in iptables_rules(dst, uid) {
        if runner.output(&firewalld("--query-passthrough", "-A", &rule))?.success() {
            present += 1;
        }
    }
    Ok(match present {
        3 => RuleState::Present,
        0 => RuleState::Missing,
        _ => RuleState::Partial,
    })
}

/// Make firewalld's permanent configuration hold the three rules (firewalld applies them at its
/// next start or reload; the runtime rules are [`ensure`]'s). Returns what was found.
pub fn ensure_permanent(runner: &dyn Runner, dst: Ipv4Addr, uid: u32) -> Result<RuleState, FirewallError> {
    let legacy = firewalld_legacy_rule(dst);
    if runner.output(&firewalld("--query-passthrough", "-I", &legacy))?.success() {
        runner.run(&firewalld("--remove-passthrough", "-I", &legacy))?;
    }
    let found = check_permanent(runner, dst, uid)?;
    if found == RuleState::Present {
        return Ok(found);
    }
    if found == RuleState::Partial {
        log::warn!("firewalld's permanent WireServer rules are not configured correctly; resetting them");
        for rule in iptables_rules(dst, uid) {
            runner.output(&firewalld("--remove-passthrough", "-A", &rule))?;
        }
    }
    for rule in iptables_rules(dst, uid) {
        runner.run(&firewalld("--passthrough", "-A", &rule))?;
    }
    match check_permanent(runner, dst, uid)? {
        RuleState::Present => {
            log::info!("WireServer firewall rules for {dst} made permanent in firewalld");
            Ok(found)
        }
        other => Err(FirewallError::NotConverged(format!("firewalld permanent rules: {other:?}"))),
    }
}

/// Delete every copy of an iptables rule (at most 99, as waagent).
fn delete_all(runner: &dyn Runner, rule: &[String]) -> Result<(), FirewallError> {
    for _ in 0..99 {
        if !runner.output(&iptables("-D", rule))?.success() {
            break;
        }
    }
    Ok(())
}

/// The uid whose connections the rules allow: the agent's own.
pub fn agent_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The file `wala-network-setup.service` reads at boot to restore the rules before the network
/// comes up (waagent's `waagent-network-setup.service` equivalent).
pub const PERSIST_FILE: &str = "wala-network-setup.env";

/// Record (or, with `None`, forget) the address whose rules are restored at boot.
pub fn persist(
    root: &crate::base::root::HostRoot,
    lib_dir: &std::path::Path,
    dst: Option<Ipv4Addr>,
) -> Result<(), crate::base::files::FileError> {
    let path = root.path(lib_dir.join(PERSIST_FILE));
    match dst {
        Some(ip) => {
            let text = format!("WALA_WIRESERVER={ip}\n");
            if crate::base::files::read_optional(&path)?.as_deref() != Some(text.as_str()) {
                crate::base::files::write_atomic(
                    &path,
                    text.as_bytes(),
                    crate::base::files::WriteOptions::mode(0o644),
                )?;
            }
            Ok(())
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::base::files::FileError::new("remove", &path, e))
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

    #[test]
    fn iptables_rules_match_waagent() {
        let r = iptables_rules(WS, 0);
        assert_eq!(r[0].join(" "), "-d 168.63.129.16 -p tcp --destination-port 53 -j ACCEPT");
        assert_eq!(r[1].join(" "), "-d 168.63.129.16 -p tcp -m owner --uid-owner 0 -j ACCEPT");
        assert_eq!(r[2].join(" "), "-d 168.63.129.16 -p tcp -m conntrack --ctstate INVALID,NEW -j DROP");
    }

    #[test]
    fn persistence_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::root::HostRoot::new(dir.path());
        let lib = std::path::Path::new("/var/lib/waagent");
        std::fs::create_dir_all(root.path(lib)).expect("mkdir");
        persist(&root, lib, Some(WS)).expect("persist");
        let file = root.path(lib.join(PERSIST_FILE));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "WALA_WIRESERVER=168.63.129.16\n");
        persist(&root, lib, None).expect("forget");
        assert!(!file.exists());
        persist(&root, lib, None).expect("idempotent");
    }

    #[test]
    fn nft_json_check() {
        let good = r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"walinuxagent"}},
          {"chain":{"name":"output"}},
          {"rule":{"expr":[{"match":{"op":"==","left":{"payload":{"field":"daddr"}},"right":"168.63.129.16"}},
            {"match":{"op":"!=","left":{"payload":{"field":"dport"}},"right":53}},
            {"match":{"op":"!=","left":{"meta":{"key":"skuid"}},"right":0}},
            {"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["invalid","new"]}},
            {"counter":{}},{"drop":null}]}}]}"#;
        assert!(nft_rule_is_right(good, WS, 0));
        assert!(!nft_rule_is_right(good, WS, 1000));
        assert!(!nft_rule_is_right(&good.replace("drop", "accept"), WS, 0));
        assert!(!nft_rule_is_right("not json", WS, 0));
    }
}
