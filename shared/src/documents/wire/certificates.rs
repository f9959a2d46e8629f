//! The Certificates document's envelope, fetched from the goal state's `Certificates` URL
//! (wire.md §4.5). Only the XML is read here: `Format` and the base64 `Data` (a DER CMS
//! EnvelopedData, encrypted to the transport certificate, wrapping a PKCS#12). Decryption is
//! elsewhere. Also the certificate summary (`Certificates.json`) waagent keeps in its history.

use base64::Engine;

use crate::documents::wire::{parse_root, Cursor, DocumentError};

const DOC: &str = "CertificateFile";

/// The only payload format waagent processes.
pub const PFX_FORMAT: &str = "Pkcs7BlobWithPfxContents";

/// A parsed `CertificateFile`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Certificates {
    pub version: Option<String>,
    pub incarnation: Option<String>,
    /// `Format`; `None` when absent or empty (then the payload is taken as [`PFX_FORMAT`]).
    pub format: Option<String>,
    /// `Data` with all whitespace removed (still base64); `None` when absent or empty.
    pub data: Option<String>,
}

/// What to do with a Certificates document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificatesPayload {
    /// No `Data`: the VM has no certificates.
    None,
    /// A DER CMS EnvelopedData whose content is a password-less PKCS#12.
    Pkcs7Pfx(Vec<u8>),
    /// A `Format` other than [`PFX_FORMAT`]: waagent skips such a document with a warning.
    UnsupportedFormat(String),
}

impl Certificates {
    /// Decide on the payload and decode its base64. Invalid base64 is an error naming `Data`.
    pub fn payload(&self) -> Result<CertificatesPayload, DocumentError> {
        let Some(data) = self.data.as_deref() else { return Ok(CertificatesPayload::None) };
        if let Some(format) = self.format.as_deref().filter(|f| *f != PFX_FORMAT) {
            return Ok(CertificatesPayload::UnsupportedFormat(format.to_string()));
        }
        base64::engine::general_purpose::STANDARD.decode(data).map(CertificatesPayload::Pkcs7Pfx).map_err(
            |_| {
                let value: String = data.chars().take(40).collect();
                DocumentError::invalid(DOC, "CertificateFile/Data", format!("{value:?}: not valid base64"))
            },
        )
    }
}

/// Parse a `CertificateFile` document.
pub fn parse_certificates(text: &str) -> Result<Certificates, DocumentError> {
    let root = parse_root(text, DOC)?;
    let doc = Cursor::new(DOC, &root);
    let data = root
        .child("Data")
        .map(|d| d.text.chars().filter(|c| !c.is_ascii_whitespace()).collect::<String>())
        .filter(|d| !d.is_empty());
    Ok(Certificates {
        version: doc.text("Version"),
        incarnation: doc.text("Incarnation"),
        format: doc.text("Format"),
        data,
    })
}

/// One entry of the certificate summary: `{"thumbprint": "...", "hasPrivateKey": bool}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateSummary {
    /// Upper-case hex SHA-1 of the certificate's DER, no colons.
    pub thumbprint: String,
    #[serde(rename = "hasPrivateKey")]
    pub has_private_key: bool,
}

/// Parse a certificate summary (`Certificates.json`): a JSON array of [`CertificateSummary`].
/// Thumbprints must be 40 hex digits (normalised to upper case); unknown keys are ignored.
pub fn parse_certificate_summary(text: &str) -> Result<Vec<CertificateSummary>, DocumentError> {
    const DOC: &str = "Certificates.json";
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DocumentError::json(DOC, e))?;
    let invalid = |element: String, value: &serde_json::Value, why: &str| {
        DocumentError::invalid(DOC, element, format!("{}: {why}", super::excerpt(&value.to_string())))
    };
    let items = value.as_array().ok_or_else(|| invalid(String::new(), &value, "expected an array"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            item.get(name)
                .ok_or_else(|| DocumentError::Missing { document: DOC, path: format!("[{i}].{name}") })
        };
        let tp = field("thumbprint")?;
        let thumbprint = tp
            .as_str()
            .filter(|t| t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| invalid(format!("[{i}].thumbprint"), tp, "expected 40 hex digits"))?
            .to_ascii_uppercase();
        let key = field("hasPrivateKey")?;
        let has_private_key = key
            .as_bool()
            .ok_or_else(|| invalid(format!("[{i}].hasPrivateKey"), key, "expected true or false"))?;
        out.push(CertificateSummary { thumbprint, has_private_key });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(inner: &str) -> String {
        format!("<?xml version=\"1.0\"?><CertificateFile><Version>2012-11-30</Version><Incarnation>3</Incarnation>{inner}</CertificateFile>")
    }

    #[test]
    fn payload_decisions() {
        let pfx =
            parse_certificates(&doc("<Format>Pkcs7BlobWithPfxContents</Format><Data>AAEC\n  Aw==\n</Data>"))
                .unwrap();
        assert_eq!(pfx.incarnation.as_deref(), Some("3"));
        assert_eq!(pfx.payload().ok(), Some(CertificatesPayload::Pkcs7Pfx(vec![0, 1, 2, 3])));
        let no_format = parse_certificates(&doc("<Format></Format><Data>AAEC</Data>")).unwrap();
        assert_eq!(no_format.format, None);
        assert_eq!(no_format.payload().ok(), Some(CertificatesPayload::Pkcs7Pfx(vec![0, 1, 2])));
        let other =
            parse_certificates(&doc("<Format>CertificatesNonPfxPackage</Format><Data>NotPFXData</Data>"))
                .unwrap();
        assert_eq!(
            other.payload().ok(),
            Some(CertificatesPayload::UnsupportedFormat("CertificatesNonPfxPackage".into()))
        );
        let none = parse_certificates(&doc("<Format>Pkcs7BlobWithPfxContents</Format>")).unwrap();
        assert_eq!(none.payload().ok(), Some(CertificatesPayload::None));
        let bad = parse_certificates(&doc("<Data>!!!</Data>")).unwrap();
        assert!(
            matches!(bad.payload(), Err(DocumentError::Invalid { ref path, .. }) if path == "CertificateFile/Data")
        );
    }

    #[test]
    fn summary() {
        let s = parse_certificate_summary(
            r#"[{"thumbprint":"dc45a99039d4f9cfb0cd84d566ba065a763f3762","hasPrivateKey":false,"x":1}]"#,
        )
        .unwrap();
        assert_eq!(
            s,
            [CertificateSummary {
                thumbprint: "DC45A99039D4F9CFB0CD84D566BA065A763F3762".into(),
                has_private_key: false
            }]
        );
        assert!(parse_certificate_summary(r#"[{"thumbprint":"abc","hasPrivateKey":false}]"#).is_err());
        assert!(parse_certificate_summary(r#"[{"thumbprint":"DC45A99039D4F9CFB0CD84D566BA065A763F3762"}]"#)
            .is_err());
        assert!(parse_certificate_summary("{}").is_err());
    }
}
