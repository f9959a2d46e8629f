//! Benchmark: `ovf-env.xml` from a provisioning-DVD image on a read-only loop device, read
//! in-process (`dvd::medium`) versus the mount path it replaces (`mount -o ro -t
//! udf,iso9660,vfat`, read, `umount`: the commands `dvd::read_from_device` runs, without the
//! eject). Each read is timed cold (the loop device's page cache dropped first, `BLKFLSBUF`) and
//! warm. Where the kernel has neither `udf` nor `iso9660`, the mount cannot succeed: the failed
//! `mount` is timed instead, as a lower bound of that path. Needs root and genisoimage.
//! `cargo bench -p wala --bench dvd`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wala::host::dvd::medium::{self, Device};

const RUNS: u32 = 50;

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Median of `RUNS` timings of `f`, after `prepare` (not timed) each time.
fn median(prepare: &dyn Fn(), f: &mut dyn FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            prepare();
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || wala::base::cmd::find_program("genisoimage").is_none() {
        println!("dvd benchmark: needs root (loop devices, mount) and genisoimage; not run");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    // A provisioning DVD's size of ovf-env.xml: a few KiB with CustomData.
    let ovf = format!("<Environment>{}</Environment>\n", "<x>0123456789abcdef</x>".repeat(200));
    std::fs::write(src.join("ovf-env.xml"), &ovf).expect("write");
    let img = dir.path().join("dvd.iso");
    sh(
        "genisoimage",
        &["-quiet", "-udf", "-J", "-r", "-o", img.to_str().expect("utf-8"), src.to_str().expect("utf-8")],
    )
    .expect("genisoimage");
    let dev =
        sh("losetup", &["--find", "--show", "--read-only", img.to_str().expect("utf-8")]).expect("losetup");
    let flush = || {
        let _ = sh("blockdev", &["--flushbufs", &dev]);
    };
    let nothing = || {};

    let mut direct = || {
        let bytes = medium::read_ovf(&Device::open(Path::new(&dev)).expect("open")).expect("read");
        assert_eq!(bytes.as_deref(), Some(ovf.as_bytes()));
    };
    let direct_cold = median(&flush, &mut direct);
    let direct_warm = median(&nothing, &mut direct);

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mnt_s = mnt.to_str().expect("utf-8").to_string();
    let mount_args = ["-o", "ro", "-t", "udf,iso9660,vfat", dev.as_str(), mnt_s.as_str()];
    let mount_result = sh("mount", &mount_args);
    println!("ovf-env.xml of {} bytes on {dev} ({}); median of {RUNS} runs", ovf.len(), img.display());
    println!("{:<52} {:>9.3} ms", "direct read, cold (open, recognise, UDF, read)", ms(direct_cold));
    println!("{:<52} {:>9.3} ms", "direct read, warm", ms(direct_warm));
    match mount_result {
        Ok(_) => {
            let _ = sh("umount", &[&mnt_s]);
            let mut mounted = || {
                sh("mount", &mount_args).expect("mount");
                let bytes = std::fs::read(mnt.join("ovf-env.xml")).expect("read");
                assert_eq!(bytes, ovf.as_bytes());
                sh("umount", &[&mnt_s]).expect("umount");
            };
            let cold = median(&flush, &mut mounted);
            let warm = median(&nothing, &mut mounted);
            println!("{:<52} {:>9.3} ms", "mount + read + umount, cold", ms(cold));
            println!("{:<52} {:>9.3} ms", "mount + read + umount, warm", ms(warm));
        }
        Err(why) => {
            let mut failing = || {
                let _ = sh("mount", &mount_args);
            };
            let lower = median(&nothing, &mut failing);
            println!("{:<52} {:>9.3} ms", "mount (fails here: a lower bound of that path)", ms(lower));
            println!("  mount: {why}");
        }
    }
    let _ = sh("losetup", &["--detach", &dev]);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
