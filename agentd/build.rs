//! Release builds of wala-agentd put the functions the daemon runs at rest together, in an output
//! section of their own just before `.text`: `idle.order` lists them (one symbol pattern per line,
//! made by `bench/idle-order.sh` from a profile), and this script turns the list into a linker
//! script fragment (`INSERT BEFORE .text`, which GNU ld and LLD add to their default script). The
//! kernel maps program pages 64 KiB around each page touched, so with the idle path together the
//! daemon at rest keeps a few such windows of its code resident instead of most of the program
//! (docs/daemon.md, "The idle path's code together"). With `WALA_IDLE_ORDER=off`, or a linker
//! that is neither GNU ld nor LLD, the program is linked as usual: the same code in another order.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=idle.order");
    println!("cargo:rerun-if-env-changed=WALA_IDLE_ORDER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("PROFILE") != "release"
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("WALA_IDLE_ORDER") == "off"
    {
        return;
    }
    // The linker cc runs by default: GNU ld and LLD both read `INSERT BEFORE`.
    let linker = Command::new("cc").arg("-Wl,--version").output();
    let known = linker.is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stdout);
        text.contains("GNU ld") || text.contains("LLD")
    });
    if !known {
        println!(
            "cargo:warning=the linker is neither GNU ld nor LLD: wala-agentd is linked without idle.order"
        );
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("idle.order");
    let list = std::fs::read_to_string(&order).expect("agentd/idle.order");
    let mut script = String::from(
        "/* Made by agentd/build.rs from idle.order. */\nSECTIONS\n{\n  .text.wala_idle :\n  {\n",
    );
    for pattern in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        // Symbol names are [A-Za-z0-9_.$] and the "*" put in for hashes; anything else would be
        // read as linker script syntax, so such a line is left out.
        if pattern.chars().all(|c| c.is_ascii_alphanumeric() || "_.$*".contains(c)) {
            // ".text*." takes ".text.<name>" and LLVM's ".text.unlikely.<name>", ".text.hot.<name>".
            let _ = writeln!(script, "    *(.text*.{pattern})");
        }
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = Path::new(&var("OUT_DIR")).join("idle.ld");
    std::fs::write(&out, script).expect("idle.ld in OUT_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", out.display());
}
