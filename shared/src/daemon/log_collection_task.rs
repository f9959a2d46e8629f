//! The log-collection task (`Logs.Collect`): [`crate::commands::collect_logs::collect`] then an upload to the
//! HostGAPlugin, on a worker thread of its own.

use crate::commands::collect_logs::{collect, Limits};
use crate::daemon::{Env, Lane, Task, TaskError};
use crate::error::Cause;

/// `Logs.Collect`: the daemon collects the logs every `Logs.CollectPeriod` (first after 5 minutes,
/// as waagent) and uploads them through the HostGAPlugin's `vmAgentLog`, at low priority: its worker
/// thread (its own, so the periodic tasks never wait for it) runs the collection at nice 19 and
/// idle I/O priority, then goes back to normal.
pub struct UploadTask {
    pub hgap: crate::platform::hostgaplugin::HostGaPluginClient,
    pub period: std::time::Duration,
}

impl std::fmt::Debug for UploadTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadTask").field("period", &self.period).finish_non_exhaustive()
    }
}

/// Set this thread's CPU and I/O priority (`low`: nice 19 and the idle I/O class; else normal).
fn thread_priority(low: bool) {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    let (nice, ioprio) = if low { (19, 3 << IOPRIO_CLASS_SHIFT) } else { (0, 0) };
    // SAFETY: setpriority and ioprio_set on this thread's own id; failures are harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
        libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, ioprio);
    }
}

impl Task for UploadTask {
    fn name(&self) -> &'static str {
        "log-collection"
    }
    fn period(&self) -> std::time::Duration {
        self.period
    }
    fn initial_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(300)
    }
    /// Collection reads and zips up to 256 MiB: never on the periodic worker.
    fn lane(&self) -> Lane {
        Lane::Own
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let result = self.collect_and_upload(env);
        // The collection's code (file walking, zip writing) is not the idle loop's: let go of the
        // program pages it mapped, or they stay resident until the hourly release
        // ([`super::memory`]; 3.8 → 4.6 MiB natively at the first collection, before this).
        if let Err(e) = super::memory::release_program_pages() {
            log::debug!("program pages: {e}");
        }
        // And of the heap its buffers left free.
        super::memory::release_free_heap();
        result
    }
}

impl UploadTask {
    fn collect_and_upload(&self, env: &Env<'_>) -> Result<(), TaskError> {
        let Some(who) = env.state.identity() else {
            return Err(TaskError::from("no goal state yet"));
        };
        thread_priority(true);
        let collected = collect(env.host.root, env.host.runner, env.host.config, None, Limits::normal());
        thread_priority(false);
        let collection = collected?;
        let zip_path = env.host.root.path(&collection.zip);
        let zip =
            std::fs::read(&zip_path).map_err(|e| Cause::io(format!("read {}", zip_path.display()), e))?;
        self.hgap.put_vm_agent_log(&who, zip)?;
        log::info!("uploaded the logs ({} bytes) to the HostGAPlugin", collection.zip_size);
        Ok(())
    }
}
