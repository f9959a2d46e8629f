//! VM id derivation against the reference test vectors (`identity/*.tsv`, MANIFEST kind
//! `vmid-vectors`): columns `source`, `input_system_uuid`, `generation`, `expected_vm_id`, `note`.
//!
//! The `generation` column says `gen2` when EFI is present (no swap). Every other row is a Gen1 case
//! or, for waagent's vectors, waagent's `get_instance_id`, which swaps on every VM: both mean
//! `gen1 = true`. For text that is not a UUID waagent passes it through unchanged; wala refuses it
//! with an error carrying that same text (see `wala::host::vmid`), which is what is checked here.

mod common;

use wala::host::vmid::{self, VmIdError};

#[test]
fn reference_vm_id_vectors() {
    let Some(dir) = common::reference_fixtures("vmid_vectors") else { return };
    let rows = common::manifest_rows(&dir, "vmid-vectors");
    assert!(!rows.is_empty(), "no vmid-vectors rows in the MANIFEST");
    let (mut swapped, mut unswapped, mut refused) = (0, 0, 0);
    for row in rows {
        let path = dir.join(&row.path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(cols.len() >= 4, "{}:{}: expected at least 4 columns", row.path, n + 1);
            let (input, generation, expected) = (cols[1], cols[2], cols[3]);
            let gen1 = !generation.to_ascii_lowercase().contains("gen2");
            let at = format!("{}:{} ({input:?}, {generation})", row.path, n + 1);
            match vmid::from_product_uuid(input, gen1) {
                Ok(id) => {
                    assert_eq!(id, expected, "{at}");
                    assert!(vmid::same_vm(&id, input), "{at}: same_vm must accept the raw order");
                    if id == input {
                        unswapped += 1;
                    } else {
                        swapped += 1;
                    }
                }
                Err(VmIdError::NotAUuid { value }) => {
                    // waagent passes non-UUID text through; wala reports it instead.
                    assert_eq!(
                        expected, input,
                        "{at}: a refused input must be one the vector passes through"
                    );
                    assert_eq!(value, input.trim(), "{at}");
                    refused += 1;
                }
                Err(e) => panic!("{at}: {e}"),
            }
        }
    }
    assert!(swapped > 0 && unswapped > 0, "vectors must exercise both generations");
    eprintln!("vm id vectors: {swapped} swapped, {unswapped} unswapped, {refused} refused");
}
