//! `documents::wire::parse_remote_access`: a WireServer document (any bytes, read as UTF-8 with replacement),
//! then what the daemon does with it before touching the host: `host::jit_accounts::parse_expiration` of
//! every `Expiration` and `host::jit_accounts::plan` against a host that has some of the names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::host::jit_accounts::{self as remote_access, Managed, Snapshot};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = wala::documents::wire::parse_remote_access(&text) else { return };
    for u in &doc.users {
        if let Some(Ok(t)) = u.expiration.as_deref().map(remote_access::parse_expiration) {
            // A parsed time always makes a date useradd can read.
            let date = remote_access::date_of_day(remote_access::expire_day(t));
            assert_eq!(date.len(), 10, "{date}");
        }
    }
    // The first listed name is a remote-access account, the second another account.
    let mut host = Snapshot::default();
    if let Some(u) = doc.users.first() {
        host.managed.insert(u.name.clone(), Managed { name: u.name.clone(), expire_day: 1 });
    }
    if let Some(u) = doc.users.get(1) {
        host.others.insert(u.name.clone(), "another account".into());
    }
    for now in [i64::MIN, 0, 1_893_456_000, i64::MAX] {
        let plan = remote_access::plan(Some(&doc), &host, now);
        // Only what the host has as a remote-access account is ever deleted.
        for step in &plan.steps {
            if let remote_access::Step::Delete { name, .. } = step {
                assert!(host.managed.contains_key(name), "{name}");
            }
        }
    }
});
