//! Every document wala reads or writes, as pure parsers and renderers: text or bytes in, typed
//! values out (or the reverse), never a file, a socket or a command. Each parser names the
//! document and the element or field that is wrong, and never panics on hostile input (the fuzz
//! targets run over these).
//!
//! * [`ovf`]: `ovf-env.xml`, the provisioning document on the DVD;
//! * [`conf`]: `/etc/waagent.conf`, parsed as waagent parses it;
//! * [`imds`]: the Instance Metadata Service's JSON;
//! * [`wire`]: the WireServer's XML documents and the bodies the agent posts;
//! * [`extensions`]: ExtensionsConfig, vmSettings, manifests, settings and status files;
//! * [`xml`]: the one XML reader the XML documents are built with;
//! * [`error`]: [`DocumentError`], why a platform document was rejected.

pub mod conf;
pub mod error;
pub mod extensions;
pub mod imds;
pub mod ovf;
pub mod wire;
pub mod xml;

pub use error::DocumentError;
