//! The daemon's resident memory at rest: one malloc arena, and its program's pages let go once
//! start-up is over and every hour after.
//!
//! glibc gives each thread that allocates an arena of its own; the daemon's threads allocate
//! little and seldom at the same time, so [`one_malloc_arena`] keeps them in one (about 100 KiB
//! less resident at rest), and gives large blocks mappings of their own. What the heap holds free
//! after work the idle loop does not do (extensions, log collection, start-up) goes back to the
//! kernel ([`release_free_heap`]).
//!
//! Start-up runs code the daemon does not run again (argument parsing, the configuration, the
//! first goal state, extension handling), and the kernel maps program pages 64 KiB at a time
//! around each one touched ("fault-around"), so after start-up nearly the whole executable stays
//! mapped. [`ProgramPagesTask`] drops those mappings (`madvise(MADV_DONTNEED)`) for the
//! executable's read-only mappings that hold no private copy of a page (`Anonymous: 0` in
//! `/proc/self/smaps`: code and constants, never the relocated or writable data): the pages stay
//! in the page cache, where the kernel may reclaim them once nothing maps them (a mapped
//! executable page is kept longer), and those the idle loop runs are mapped again on their next
//! use, without I/O while they are cached. What the idle loop maps again, 64 KiB around each page
//! it runs, is most of the program (docs/daemon.md gives the figures): this lets go of
//! start-up's share, and of what an extension run mapped since the last hour.

use std::time::Duration;

use crate::daemon::{Env, Task, TaskError};

/// Once start-up has settled (the first goal state is taken in within seconds), then hourly.
#[derive(Debug)]
pub struct ProgramPagesTask;

impl Task for ProgramPagesTask {
    fn name(&self) -> &'static str {
        "program-pages"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn initial_delay(&self) -> Duration {
        Duration::from_secs(15)
    }
    fn run(&mut self, _env: &Env<'_>) -> Result<(), TaskError> {
        release_free_heap();
        let released = release_program_pages().map_err(|e| TaskError::from(format!("program pages: {e}")))?;
        log::debug!("let go of {released} KiB of program pages");
        Ok(())
    }
}

/// The allocation size from which a block gets a mapping of its own, returned to the kernel when
/// freed (glibc's default starting point).
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Keeps every thread's allocations in the main arena (`mallopt(M_ARENA_MAX, 1)`), and gives
/// every block of 128 KiB or more a mapping of its own (`M_MMAP_THRESHOLD` set, which also keeps
/// it there: by default glibc raises the threshold to the size of each such block freed, so the
/// buffers of a log collection or an extension package, once freed, would be heap that stays
/// resident). Call it before the daemon starts its threads.
pub fn one_malloc_arena() {
    // SAFETY: mallopt only changes allocator settings; both pairs are valid.
    let ok = unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1 && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    };
    if !ok {
        log::debug!("mallopt(M_ARENA_MAX / M_MMAP_THRESHOLD) refused");
    }
}

/// Gives the heap's free pages back to the kernel (`malloc_trim(0)`: the top of the heap, and
/// whole free pages inside it), after work whose allocations the idle loop does not need.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// One mapping of `/proc/self/smaps`: its range, permissions, device and inode, resident and
/// anonymous (private copy) sizes in KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    dev: (u32, u32),
    inode: u64,
    rss_kib: u64,
    anonymous_kib: u64,
}

/// The mappings of `smaps` (the text of `/proc/<pid>/smaps`).
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // A header: "start-end perms offset major:minor inode [path]".
        if let [range, perms, _offset, dev, inode, ..] = fields[..] {
            if let (Some((s, e)), Some((ma, mi))) = (range.split_once('-'), dev.split_once(':')) {
                if let (Ok(start), Ok(end), Ok(major), Ok(minor), Ok(inode)) = (
                    usize::from_str_radix(s, 16),
                    usize::from_str_radix(e, 16),
                    u32::from_str_radix(ma, 16),
                    u32::from_str_radix(mi, 16),
                    inode.parse::<u64>(),
                ) {
                    out.push(Mapping {
                        start,
                        end,
                        perms: perms.to_string(),
                        dev: (major, minor),
                        inode,
                        rss_kib: 0,
                        anonymous_kib: 0,
                    });
                    continue;
                }
            }
        }
        let Some(last) = out.last_mut() else { continue };
        let kib = || fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match fields.first() {
            Some(&"Rss:") => last.rss_kib = kib(),
            // Unknown means not clean: such a mapping is left alone.
            Some(&"Anonymous:") => {
                last.anonymous_kib = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
            }
            _ => {}
        }
    }
    out
}

/// The mappings that may be let go: the executable's (`dev`, `inode`), not writable, and holding
/// no private copy of a page.
fn releasable(all: &[Mapping], dev: (u32, u32), inode: u64) -> Vec<&Mapping> {
    all.iter()
        .filter(|m| m.dev == dev && m.inode == inode && inode != 0)
        .filter(|m| m.perms.starts_with('r') && !m.perms.contains('w') && m.anonymous_kib == 0)
        .collect()
}

/// Drops this process's mappings of its own executable's clean read-only pages; returns the KiB
/// that were resident in them.
pub fn release_program_pages() -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata("/proc/self/exe")?;
    let dev = (libc::major(exe.dev()), libc::minor(exe.dev()));
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let all = mappings(&smaps);
    let mut released = 0;
    for m in releasable(&all, dev, exe.ino()) {
        // SAFETY: the range is one whole mapping of this process, page-aligned as the kernel
        // lists it; it maps the executable's file read-only and holds no private copy of a page,
        // so MADV_DONTNEED only removes page-table entries of clean file pages, which the next
        // access maps again from the page cache with the same contents. No Rust reference can
        // observe a difference: the bytes read before and after are the file's.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        released += m.rss_kib;
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0040000 r--p 00000000 fd:01 1234 /usr/sbin/wala-agentd
Rss:                 256 kB
Anonymous:             0 kB
55d0c0040000-55d0c0200000 r-xp 00040000 fd:01 1234 /usr/sbin/wala-agentd
Rss:                1800 kB
Anonymous:             0 kB
55d0c0200000-55d0c0210000 r--p 00200000 fd:01 1234 /usr/sbin/wala-agentd
Rss:                  64 kB
Anonymous:            60 kB
55d0c0210000-55d0c0212000 rw-p 00210000 fd:01 1234 /usr/sbin/wala-agentd
Rss:                   8 kB
Anonymous:             8 kB
7f0000000000-7f0000100000 r-xp 00028000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                 300 kB
Anonymous:           300 kB
";

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_let_go() {
        let all = mappings(SMAPS);
        assert_eq!(all.len(), 6);
        let chosen: Vec<_> = releasable(&all, (0xfd, 1), 1234).iter().map(|m| (m.start, m.rss_kib)).collect();
        // Not the relocated read-only data (private copies), the writable data, libc or the heap.
        assert_eq!(chosen, [(0x55d0c0000000, 256), (0x55d0c0040000, 1800)]);
        assert!(releasable(&all, (0xfd, 2), 1234).is_empty(), "another device's inode 1234");
    }

    #[test]
    fn a_mapping_whose_private_copies_cannot_be_read_is_left_alone() {
        let smaps = "55d0c0000000-55d0c0040000 r-xp 00000000 fd:01 1234 /usr/sbin/wala-agentd\nRss: 256 kB\nAnonymous: ? kB\n";
        assert!(releasable(&mappings(smaps), (0xfd, 1), 1234).is_empty());
    }

    #[test]
    fn this_process_lets_go_of_its_program_pages_and_keeps_running_them() {
        fn resident_program_kib() -> u64 {
            use std::os::unix::fs::MetadataExt;
            let exe = std::fs::metadata("/proc/self/exe").expect("exe");
            let dev = (libc::major(exe.dev()), libc::minor(exe.dev()));
            let all = mappings(&std::fs::read_to_string("/proc/self/smaps").expect("smaps"));
            releasable(&all, dev, exe.ino()).iter().map(|m| m.rss_kib).sum()
        }
        let parsed = mappings(SMAPS);
        let before = resident_program_kib();
        assert!(before > 0);
        let released = release_program_pages().expect("released");
        assert!(released > 0);
        let after = resident_program_kib();
        assert!(after < before, "{after} KiB resident after, {before} before");
        // Code and constants are mapped again on use, with the same contents.
        assert_eq!(mappings(SMAPS), parsed);
        assert!(release_program_pages().is_ok());
    }

    #[test]
    fn freed_heap_pages_go_back_to_the_kernel() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("KiB")
        }
        // 40 MiB in blocks under the mmap threshold (so in an arena), written to, then all freed
        // but the last, which keeps the free space inside the arena rather than at its top
        // (glibc trims its top by itself when a block is freed).
        let mut blocks: Vec<Vec<u8>> = (0..400).map(|_| vec![1u8; 100 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        let freed = rss_kib();
        release_free_heap();
        let after = rss_kib();
        drop(last);
        // Other tests of this binary run meanwhile: expect most of the 40 MiB, not all of it.
        assert!(freed >= after + 20 * 1024, "RSS {freed} KiB before the release, {after} KiB after");
    }
}
