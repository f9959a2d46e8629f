//! The project's own documents that `bench/parsers-vs-waagent.sh` adds so that every kind it times
//! has a document in a plain clone, in the shapes waagent 2.7.3 also accepts (gaFamilies with
//! `uris`; a HostingEnvironmentConfig with its Deployment, Incarnation and Role). Checked here
//! for what wala reads from them; no timing.

mod common;

use wala::documents::extensions::{parse_vm_settings, VmSettingsDocument};

fn read(rel: &str) -> String {
    let path = common::project_fixtures().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn hosting_env_with_deployment_role_and_instance() {
    let he = wala::documents::wire::parse_hosting_env(&read("hostingenv/deployment.xml")).unwrap();
    assert_eq!(he.goal_state_incarnation.as_deref(), Some("2"));
    assert_eq!(he.vm_name.as_deref(), Some("bench-vm"));
    assert_eq!(he.role_name.as_deref(), Some("bench-vm"));
    assert_eq!(he.deployment_name.as_deref(), Some("6e3f0a52c1d94b7f8a2e4c5d6b7a8f90"));
    assert_eq!(he.stored_certificates.len(), 1);
    assert_eq!(
        he.stored_certificates[0].sha1_thumbprint().as_deref(),
        Some("0123456789ABCDEF0123456789ABCDEF01234567")
    );
}

#[test]
fn vm_settings_with_family_uris() {
    let doc = parse_vm_settings(&read("ext/vm_settings-family-uris.json"), "7").unwrap();
    let VmSettingsDocument::Supported(gs) = doc else { panic!("not supported: {doc:?}") };
    assert!(gs.is_fast_track());
    assert_eq!(gs.svd_sequence_number, 3);
    assert_eq!(gs.agent_families.len(), 1);
    assert_eq!(gs.agent_families[0].name, "Prod");
    assert_eq!(gs.agent_families[0].uris.len(), 2);
    assert_eq!(gs.extensions.len(), 1);
    let ext = &gs.extensions[0];
    assert_eq!((ext.name.as_str(), ext.version.as_str()), ("Contoso.Tools.Script", "1.2.3"));
    assert_eq!(ext.manifest_uris.len(), 3, "{:?}", ext.manifest_uris);
}
