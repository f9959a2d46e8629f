//! `extensions::download::unpack`: any bytes as an extension package, unpacked for real into a
//! scratch directory. Either the package unpacks whole, every file inside the target with mode
//! 0744 and no symbolic link, or it is refused and nothing is left behind.
#![no_main]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wala::extensions::download::{unpack, UnpackLimits, DIR_MODE, FILE_MODE};

const LIMITS: UnpackLimits = UnpackLimits { max_entries: 200, max_size: 4 << 20 };

fn check_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the unpacked directory") {
        let entry = entry.expect("entry");
        let meta = std::fs::symlink_metadata(entry.path()).expect("stat");
        assert!(!meta.file_type().is_symlink(), "{}: a symbolic link", entry.path().display());
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            assert_eq!(mode & !DIR_MODE, 0, "{}: directory mode {mode:o}", entry.path().display());
            check_tree(&entry.path());
        } else {
            assert_eq!(mode, FILE_MODE, "{}: file mode {mode:o}", entry.path().display());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let scratch = std::env::temp_dir().join(format!("wala-fuzz-unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let target = scratch.join("Pub.Ext-1.0");
    match unpack(data, &target, LIMITS) {
        Ok(()) => check_tree(&target),
        Err(_) => {
            let left: Vec<_> = std::fs::read_dir(&scratch).expect("ls").flatten().map(|e| e.path()).collect();
            assert!(left.is_empty(), "a refused package left {left:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
});
