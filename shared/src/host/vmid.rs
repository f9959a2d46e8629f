//! The VM id: the SMBIOS system UUID as Azure's IMDS reports it (`compute.vmId`).
//!
//! Linux exposes the SMBIOS UUID in `/sys/class/dmi/id/product_uuid`. Hyper-V Gen1 VMs (BIOS, SMBIOS
//! 2.3) store the first three UUID fields in the other byte order than the kernel assumes, so on Gen1
//! the first three groups are byte-swapped to get the IMDS vmId; Gen2 (UEFI) VMs need no swap. Gen1 is
//! recognised by the absence of both `/sys/firmware/efi` and `/dev/efi`, as azure-init and cloud-init
//! do.
//!
//! waagent differs: its "instance id" (written without a newline to `/var/lib/waagent/provisioned`)
//! swaps whenever the text looks like a UUID, on every VM generation, keeps the input's letter case,
//! and passes empty or malformed text through unchanged. wala returns the IMDS vmId instead, keeps the
//! input's case too (the kernel prints lower case), and refuses text that is not a UUID
//! ([`VmIdError::NotAUuid`] carries the text, so a caller can still fall back to it). To recognise a
//! marker written by waagent (or by old agents that stored the raw order), compare with [`same_vm`],
//! which ignores case and byte order as waagent's own comparison does.

use std::io;
use std::path::PathBuf;

use crate::base::root::HostRoot;

/// Where the kernel exposes the SMBIOS system UUID.
pub const PRODUCT_UUID_PATH: &str = "/sys/class/dmi/id/product_uuid";
/// Present on UEFI (Gen2) systems.
pub const EFI_FIRMWARE_PATH: &str = "/sys/firmware/efi";
/// Present on some UEFI systems (older kernels, BSD-style layouts).
pub const EFI_DEVICE_PATH: &str = "/dev/efi";

/// Why no VM id could be read.
#[derive(Debug, thiserror::Error)]
pub enum VmIdError {
    /// The product UUID file could not be read (absent outside a VM, or unreadable without root
    /// unless the udev rule made it 0444).
    #[error("cannot read the VM id from {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The text is not a UUID (`8-4-4-4-12` hex digits). `value` is the trimmed text, not secret.
    #[error("the SMBIOS product UUID {value:?} is not a UUID")]
    NotAUuid { value: String },
}

impl VmIdError {
    /// A short one-line text for a failure report.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// The VM id of the machine under `root`: `product_uuid`, byte-swapped on Gen1 (see the module
/// documentation). Same letter case as the file (lower case on Linux).
pub fn vm_id(root: &HostRoot) -> Result<String, VmIdError> {
    let root = &root.kernel();
    let path = root.path(PRODUCT_UUID_PATH);
    let raw = std::fs::read_to_string(&path).map_err(|source| VmIdError::Read { path, source })?;
    from_product_uuid(&raw, is_gen1(root))
}

/// Whether the machine under `root` boots by BIOS (Hyper-V Gen1): neither `/sys/firmware/efi` nor
/// `/dev/efi` exists.
pub fn is_gen1(root: &HostRoot) -> bool {
    let root = &root.kernel();
    !root.path(EFI_FIRMWARE_PATH).exists() && !root.path(EFI_DEVICE_PATH).exists()
}

/// The VM id from the text of `product_uuid` (surrounding whitespace ignored): byte-swapped when
/// `gen1`, unchanged otherwise, letter case kept.
pub fn from_product_uuid(raw: &str, gen1: bool) -> Result<String, VmIdError> {
    let value = raw.trim();
    if !is_uuid(value) {
        return Err(VmIdError::NotAUuid { value: value.to_string() });
    }
    Ok(if gen1 { swap_first_three_groups(value) } else { value.to_string() })
}

/// Whether two VM ids name the same VM: equal ignoring case, or equal once either one's first three
/// groups are byte-swapped (waagent's `is_current_instance_id` accepts the swapped form because old
/// agents stored the raw order).
pub fn same_vm(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    is_uuid(a) && is_uuid(b) && swap_first_three_groups(a).eq_ignore_ascii_case(b)
}

/// `8-4-4-4-12` ASCII hex digits, either case.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reverse the byte order (pairs of hex digits) of the first three groups of a valid UUID.
fn swap_first_three_groups(uuid: &str) -> String {
    uuid.split('-')
        .enumerate()
        .map(|(i, group)| if i < 3 { reverse_hex_bytes(group) } else { group.to_string() })
        .collect::<Vec<_>>()
        .join("-")
}

fn reverse_hex_bytes(group: &str) -> String {
    let bytes = group.as_bytes();
    bytes.chunks(2).rev().map(|pair| String::from_utf8_lossy(pair).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen1_swaps_first_three_groups_and_keeps_case() {
        assert_eq!(
            from_product_uuid("544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8\n", true).unwrap(),
            "D0DF4C54-4ECB-4A4B-9954-5BDF3ED5C3B8"
        );
        assert_eq!(
            from_product_uuid("  544cdfd0-cb4e-4b4a-9954-5bdf3ed5c3b8 ", true).unwrap(),
            "d0df4c54-4ecb-4a4b-9954-5bdf3ed5c3b8"
        );
    }

    #[test]
    fn gen2_is_unchanged() {
        assert_eq!(
            from_product_uuid("550e8400-e29b-41d4-a716-446655440000\n", false).unwrap(),
            "550e8400-e29b-41d4-a716-446655440000"
        );
    }

    #[test]
    fn swapping_twice_is_identity() {
        let id = "00840e55-9be2-d441-a716-446655440000";
        let once = from_product_uuid(id, true).unwrap();
        assert_ne!(once, id);
        assert_eq!(from_product_uuid(&once, true).unwrap(), id);
    }

    #[test]
    fn rejects_non_uuids() {
        for bad in [
            "",
            "Value",
            "550e8400-e29b-41d4-a716-44665544000",
            "550e8400-e29b-41d4-a716-4466554400000",
            "550e8400e29b41d4a716446655440000",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b-41d4-a716-446655440000-00",
            "550e840é-e29b-41d4-a716-44665544000",
        ] {
            match from_product_uuid(bad, true) {
                Err(VmIdError::NotAUuid { value }) => assert_eq!(value, bad.trim()),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn same_vm_ignores_case_and_byte_order() {
        let raw = "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8";
        let swapped = "d0df4c54-4ecb-4a4b-9954-5bdf3ed5c3b8";
        assert!(same_vm(raw, swapped));
        assert!(same_vm(swapped, raw));
        assert!(same_vm(raw, &raw.to_lowercase()));
        assert!(!same_vm(raw, "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B9"));
        assert!(!same_vm(raw, ""));
    }

    #[test]
    fn reads_through_the_root_and_detects_generation() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        assert!(matches!(vm_id(&root), Err(VmIdError::Read { .. })));

        let uuid_file = root.path(PRODUCT_UUID_PATH);
        std::fs::create_dir_all(uuid_file.parent().unwrap()).unwrap();
        std::fs::write(&uuid_file, "550e8400-e29b-41d4-a716-446655440000\n").unwrap();
        assert!(is_gen1(&root));
        assert_eq!(vm_id(&root).unwrap(), "00840e55-9be2-d441-a716-446655440000");

        std::fs::create_dir_all(root.path(EFI_FIRMWARE_PATH)).unwrap();
        assert!(!is_gen1(&root));
        assert_eq!(vm_id(&root).unwrap(), "550e8400-e29b-41d4-a716-446655440000");

        std::fs::remove_dir(root.path(EFI_FIRMWARE_PATH)).unwrap();
        std::fs::create_dir_all(root.path("/dev")).unwrap();
        std::fs::write(root.path(EFI_DEVICE_PATH), "").unwrap();
        assert!(!is_gen1(&root));
    }
}
