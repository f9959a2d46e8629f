//! Waiting for block devices: udev events through mio, instead of sleeping in a loop.

use std::time::Duration;

/// Waits for udev block-device events; falls back to plain timeouts when udev is not available.
pub struct BlockEvents {
    inner: Option<(mio::Poll, udev::MonitorSocket, mio::Events)>,
}

impl BlockEvents {
    pub fn new() -> Self {
        let open = || -> std::io::Result<(mio::Poll, udev::MonitorSocket, mio::Events)> {
            let mut socket = udev::MonitorBuilder::new()?.match_subsystem("block")?.listen()?;
            let poll = mio::Poll::new()?;
            poll.registry().register(&mut socket, mio::Token(0), mio::Interest::READABLE)?;
            Ok((poll, socket, mio::Events::with_capacity(8)))
        };
        Self { inner: open().map_err(|e| log::debug!("no udev monitor ({e}); polling instead")).ok() }
    }

    /// Return after the next block-device event, or after `timeout`.
    pub fn wait(&mut self, timeout: Duration) {
        match &mut self.inner {
            Some((poll, socket, events)) => {
                if poll.poll(events, Some(timeout)).is_ok() {
                    for event in socket.iter() {
                        log::debug!(
                            "udev: {:?} {}",
                            event.event_type(),
                            event.device().sysname().to_string_lossy()
                        );
                    }
                }
            }
            None => std::thread::sleep(timeout),
        }
    }
}

impl Default for BlockEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BlockEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEvents").field("udev", &self.inner.is_some()).finish()
    }
}
