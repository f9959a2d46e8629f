//! The RemoteAccess document (JIT users, spec wire.md §4.6).
//!
//! When users are set, the goal state carries `Container/RemoteAccessInfo` pointing at
//! `/machine/<container>?comp=remoteaccess&incarnation=<n>` (unless the scenario's goal state names
//! one itself), and that URL serves the document. Each user's `Password` is encrypted per request,
//! as the platform does: the password in UTF-16LE, in a CMS EnvelopedData (DER, base64) addressed
//! to the certificate of the `x-ms-guest-agent-public-x509-cert` header, with the cipher of
//! `x-ms-cipher-name`. `Expiration` is `Www, DD Mon YYYY HH:MM:SS GMT`.
//!
//! JSON form of the users (a scenario's `remote_access` file, `PUT /__fabric/remoteaccess`):
//! ```json
//! [{"name": "jituser", "password": "Pa55w.rd", "expiration": "Tue, 01 Jan 2030 00:00:00 GMT"},
//!  {"name": "brief", "password": "x", "expires_in_secs": 3600}]
//! ```
//! `expires_in_secs` (may be negative: already expired) is turned into an `expiration` when the users
//! are set.

use base64::Engine;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use serde::{Deserialize, Serialize};

use crate::certs::{self, CertError};

/// One user of the RemoteAccess document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JitUser {
    /// `Name`.
    pub name: String,
    /// The password in clear; served encrypted.
    pub password: String,
    /// `Expiration`, as served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Seconds from when the users are set to the expiration (instead of `expiration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

impl JitUser {
    /// A user expiring at `expiration` (served as is).
    pub fn new(name: &str, password: &str, expiration: &str) -> Self {
        JitUser {
            name: name.into(),
            password: password.into(),
            expiration: Some(expiration.into()),
            expires_in_secs: None,
        }
    }

    /// A user expiring `secs` seconds after the users are set (negative: already expired).
    pub fn expiring_in(name: &str, password: &str, secs: i64) -> Self {
        JitUser {
            name: name.into(),
            password: password.into(),
            expiration: None,
            expires_in_secs: Some(secs),
        }
    }
}

/// Parses the JSON array of users.
pub fn parse_users(text: &str) -> Result<Vec<JitUser>, serde_json::Error> {
    serde_json::from_str(text)
}

/// The users with every `expires_in_secs` turned into an `expiration`, counted from `now` (seconds
/// since the epoch).
pub fn resolve(users: Vec<JitUser>, now: i64) -> Vec<JitUser> {
    users
        .into_iter()
        .map(|u| match u.expires_in_secs {
            Some(secs) => {
                JitUser { expiration: Some(http_date(now.saturating_add(secs))), expires_in_secs: None, ..u }
            }
            None => u,
        })
        .collect()
}

/// `Www, DD Mon YYYY HH:MM:SS GMT` for `t` seconds since the epoch.
pub fn http_date(t: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The password encrypted as the platform does: UTF-16LE in a CMS envelope to `transport`.
pub fn encrypt_password(
    password: &str,
    transport: &openssl::x509::X509,
    cipher: openssl::symm::Cipher,
) -> Result<String, CertError> {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut recipients = Stack::new()?;
    recipients.push(transport.clone())?;
    let cms = CmsContentInfo::encrypt(&recipients, &utf16, cipher, CMSOptions::BINARY)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(cms.to_der()?))
}

/// The RemoteAccess document for `incarnation`, each password encrypted to the transport
/// certificate named by the request headers.
pub fn document(
    incarnation: u64,
    users: &[JitUser],
    transport_header: Option<&str>,
    cipher_header: Option<&str>,
) -> Result<String, CertError> {
    let transport = certs::parse_transport_cert(transport_header.ok_or(CertError::MissingTransportCert)?)?;
    let cipher = certs::cipher(cipher_header.unwrap_or(""))?;
    let mut doc = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<RemoteAccess>\n  <Version>1</Version>\n  \
         <Incarnation>{incarnation}</Incarnation>\n  <Users>\n"
    );
    for u in users {
        doc.push_str("    <User>\n");
        doc.push_str(&format!("      <Name>{}</Name>\n", escape(&u.name)));
        doc.push_str(&format!(
            "      <Password>{}</Password>\n",
            encrypt_password(&u.password, &transport, cipher)?
        ));
        if let Some(e) = &u.expiration {
            doc.push_str(&format!("      <Expiration>{}</Expiration>\n", escape(e)));
        }
        doc.push_str(
            "      <Groups>\n        <GroupName>Administrators</GroupName>\n        \
             <GroupName>RemoteDesktopUsers</GroupName>\n      </Groups>\n",
        );
        doc.push_str("    </User>\n");
    }
    doc.push_str("  </Users>\n</RemoteAccess>\n");
    Ok(doc)
}

/// The goal state with a `RemoteAccessInfo` element after `ContainerId`, unless it has one. The URL
/// uses the `{{wire}}` and `{{incarnation}}` tokens, rendered with the rest of the goal state.
pub fn with_remote_access_info(goal_state: &str, container_id: &str) -> String {
    if goal_state.contains("<RemoteAccessInfo") {
        return goal_state.to_string();
    }
    let Some(at) = goal_state.find("</ContainerId>").map(|i| i + "</ContainerId>".len()) else {
        return goal_state.to_string();
    };
    format!(
        "{}\n    <RemoteAccessInfo>{{{{wire}}}}/machine/{container_id}?comp=remoteaccess&amp;incarnation={{{{incarnation}}}}</RemoteAccessInfo>{}",
        &goal_state[..at],
        &goal_state[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_893_456_000), "Tue, 01 Jan 2030 00:00:00 GMT");
        assert_eq!(http_date(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(http_date(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn relative_expirations_are_fixed_when_set() {
        let users = parse_users(
            r#"[{"name":"a","password":"p","expires_in_secs":60},
                {"name":"b","password":"q","expiration":"Tue, 01 Jan 2030 00:00:00 GMT"}]"#,
        )
        .unwrap();
        let users = resolve(users, 0);
        assert_eq!(users[0].expiration.as_deref(), Some("Thu, 01 Jan 1970 00:01:00 GMT"));
        assert_eq!(users[0].expires_in_secs, None);
        assert_eq!(users[1], JitUser::new("b", "q", "Tue, 01 Jan 2030 00:00:00 GMT"));
        assert!(parse_users(r#"[{"name":"a","password":"p","extra":1}]"#).is_err());
    }

    #[test]
    fn remote_access_info_goes_after_the_container_id_once() {
        let gs = "<Container><ContainerId>c-1</ContainerId><RoleInstanceList/></Container>";
        let out = with_remote_access_info(gs, "c-1");
        assert!(out.contains(
            "</ContainerId>\n    <RemoteAccessInfo>{{wire}}/machine/c-1?comp=remoteaccess&amp;incarnation={{incarnation}}</RemoteAccessInfo><RoleInstanceList/>"
        ), "{out}");
        assert_eq!(with_remote_access_info(&out, "c-1"), out);
    }
}
