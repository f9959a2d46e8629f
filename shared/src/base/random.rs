//! Random bytes from the kernel (`getrandom(2)`), for keys and jitter: no library in between.

/// Fill `buf` with random bytes from the kernel's pool (`getrandom(2)`, blocking only until the
/// pool is first initialised, which a booted system's is).
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Whether the kernel's random pool is initialised, so that [`fill`] would not block: early in
/// boot (the initramfs) it may not be yet on a machine whose CPU has no random-number
/// instruction the kernel trusts. `getrandom(2)` with `GRND_NONBLOCK`; a kernel without the call
/// counts as ready ([`fill`] then reports the error).
pub fn ready() -> bool {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: `byte` is a valid, writable buffer of 1 byte.
        let n = unsafe { libc::getrandom(byte.as_mut_ptr().cast(), 1, libc::GRND_NONBLOCK) };
        if n >= 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return false,
            _ => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booted_system_has_its_pool_ready() {
        assert!(ready());
    }

    #[test]
    fn fills_the_whole_buffer_with_bytes_that_differ_between_calls() {
        let (mut a, mut b) = ([0u8; 600], [0u8; 600]);
        fill(&mut a).expect("getrandom");
        fill(&mut b).expect("getrandom");
        assert_ne!(a, b);
        // 600 random bytes with no zero byte in their last 100 is a 1-in-50 chance per byte run;
        // a buffer left unfilled past the first syscall would be all zeros there.
        assert!(a[500..].iter().any(|&x| x != 0) && b[500..].iter().any(|&x| x != 0));
        fill(&mut []).expect("an empty buffer is fine");
    }
}
