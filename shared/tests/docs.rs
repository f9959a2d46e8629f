//! Documentation generated from the code stays true to it. Run with `UPDATE_DOCS=1` to rewrite.

use std::path::PathBuf;

#[test]
fn configuration_doc_lists_every_key_with_its_default() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let rendered = wala::documents::conf::render_docs();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/configuration.md is out of date: run `UPDATE_DOCS=1 cargo test -p wala --test docs`"
    );
    for key in
        ["ResourceDisk.SwapSizeMB", "Provisioning.Agent", "OS.EnableFirewall", "Extensions.GoalStatePeriod"]
    {
        assert!(rendered.contains(&format!("| `{key}` |")), "{key} missing");
    }
}
