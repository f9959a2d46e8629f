//! The errors at the seams: what a provisioning step ([`crate::provision::ProvisionError`]) or a
//! daemon task ([`crate::daemon::TaskError`]) failed on, as a typed [`Cause`].
//!
//! Every module below keeps its own error type, naming what it knows (the element of a document,
//! the command that failed, the HTTP status). At the seams those errors are not turned into text:
//! they are wrapped in a [`Cause`], so a caller can match on the kind of failure
//! (`Cause::Disk(DiskError::Changed { .. })`), walk the chain with
//! [`std::error::Error::source`], and still get the short text a health or status report needs
//! from `reason()`.
//!
//! This module sits between `extensions` and `provision`: it names the errors of the folders
//! below it; the errors of the folders above (`provision::plan::PlanError`,
//! `provision::ProvisionError`, `commands::collect_logs::LogCollectError`) convert into
//! [`Cause::Other`] where they are defined.

use crate::base::cmd::CmdError;
use crate::base::files::FileError;
use crate::crypto::helper::HelperError;
use crate::crypto::openssl_certs::CertError;
use crate::documents::conf::ConfError;
use crate::documents::imds::ImdsError;
use crate::documents::ovf::OvfError;
use crate::documents::DocumentError;
use crate::host::customdata::CustomDataError;
use crate::host::disk::DiskError;
use crate::host::dvd::DvdError;
use crate::host::firewall::FirewallError;
use crate::host::host_keys::HostKeyError;
use crate::host::hostname::HostnameError;
use crate::host::jit_accounts::RemoteAccessError;
use crate::host::kvp::KvpError;
use crate::host::link_watch::LinkWatchError;
use crate::host::route_wait::RouteWaitError;
use crate::host::ssh::SshError;
use crate::host::user::UserError;
use crate::host::vmid::VmIdError;
use crate::platform::endpoint::RouteError;
use crate::platform::hostgaplugin::HostGaPluginError;
use crate::platform::http::HttpError;
use crate::platform::imds::ImdsClientError;
use crate::platform::imds_reprovision::ReprovisionError;
use crate::platform::status_blob::UploadError;
use crate::platform::wireserver::WireClientError;
use crate::platform::PlatformError;

/// Why a provisioning step or a daemon task failed: the error of the module that failed, kept
/// whole. Its text is that error's text; [`Cause::reason`] is the same text, for reports.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    // Documents.
    #[error(transparent)]
    Ovf(#[from] OvfError),
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error(transparent)]
    Imds(#[from] ImdsError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    // The platform.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    WireServer(#[from] WireClientError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    ImdsClient(#[from] ImdsClientError),
    #[error(transparent)]
    Reprovision(#[from] ReprovisionError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    StatusUpload(#[from] UploadError),
    #[error(transparent)]
    HostGaPlugin(#[from] HostGaPluginError),
    #[error(transparent)]
    Crypto(#[from] HelperError),
    #[error(transparent)]
    Certificate(#[from] CertError),
    // The host.
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Dvd(#[from] DvdError),
    #[error(transparent)]
    CustomData(#[from] CustomDataError),
    #[error(transparent)]
    VmId(#[from] VmIdError),
    #[error(transparent)]
    Kvp(#[from] KvpError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    RemoteAccess(#[from] RemoteAccessError),
    #[error(transparent)]
    LinkWatch(#[from] LinkWatchError),
    #[error(transparent)]
    RouteWait(#[from] RouteWaitError),
    // The ground floor.
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CmdError),
    /// A file operation that has no error type of its own: what was done to which path.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The error of a module above this one (a provisioning plan, a provisioning stage run by a
    /// daemon task, log collection), which implements `From` into `Cause` itself; reach it with
    /// `downcast_ref`.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
    /// A failure that is only a sentence: a condition wala checks itself ("user x does not
    /// exist"), or one recorded as text by an earlier stage (the state file keeps the reason,
    /// not the error).
    #[error("{0}")]
    Message(String),
}

impl Cause {
    /// A file operation's failure: `what` names the operation and the path.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    /// Short text for a health or status report: the wrapped error's own `reason()` where it
    /// has one worded for reports (the OVF's, in waagent's words), its text otherwise.
    pub fn reason(&self) -> String {
        match self {
            Self::Ovf(e) => e.reason(),
            _ => self.to_string(),
        }
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Self::Message(text)
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Self::Message(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_the_error_it_wraps_and_its_text() {
        let cause = Cause::from(DocumentError::missing("GoalState", "GoalState/Container"));
        assert!(
            matches!(&cause, Cause::Document(DocumentError::Missing { path, .. }) if path == "GoalState/Container")
        );
        assert_eq!(cause.reason(), "GoalState: missing GoalState/Container");

        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cause = Cause::io("write /etc/hostname", io);
        assert!(cause.reason().starts_with("write /etc/hostname: "), "{cause}");
        let source = std::error::Error::source(&cause).expect("the io error is the source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }
}
