//! RemoteAccess (JIT users), fetched from the goal state's `Container/RemoteAccessInfo` URL
//! (wire.md §4.6). Each user's `Password` is base64 DER CMS (decrypted elsewhere); it is held in a
//! [`Secret`] and never printed or serialised.

use crate::base::secret::Secret;
use crate::documents::wire::{parse_root, Cursor, DocumentError};

const DOC: &str = "RemoteAccess";

/// A parsed RemoteAccess document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteAccess {
    pub version: Option<String>,
    pub incarnation: Option<String>,
    /// `Users/User`, in document order; empty for `<Users />` or no `Users`.
    pub users: Vec<RemoteAccessUser>,
}

/// One `Users/User`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteAccessUser {
    /// `Name`. Required.
    pub name: String,
    /// `Password`: encrypted, base64 DER CMS. Required; never serialised.
    #[serde(skip)]
    pub encrypted_password: Secret<String>,
    /// `Expiration`, as sent (e.g. `2019-01-01`).
    pub expiration: Option<String>,
    /// `Groups/GroupName`.
    pub groups: Vec<String>,
}

/// Parse a RemoteAccess document. A user without `Name` or `Password` is an error naming it.
pub fn parse_remote_access(text: &str) -> Result<RemoteAccess, DocumentError> {
    let root = parse_root(text, DOC)?;
    let doc = Cursor::new(DOC, &root);
    let mut users = Vec::new();
    for (i, user) in root.child("Users").into_iter().flat_map(|u| u.children_named("User")).enumerate() {
        let user = Cursor::new(DOC, user);
        let name = user.require_text("Name", &format!("RemoteAccess/Users/User[{i}]/Name"))?.to_string();
        let password = user.require_text("Password", &format!("RemoteAccess/Users/User[{i}]/Password"))?;
        let groups = user
            .element
            .child("Groups")
            .into_iter()
            .flat_map(|g| g.children_named("GroupName"))
            .filter_map(|g| g.text_trimmed().map(str::to_string))
            .collect();
        users.push(RemoteAccessUser {
            name,
            encrypted_password: Secret::new(password.to_string()),
            expiration: user.text("Expiration"),
            groups,
        });
    }
    Ok(RemoteAccess { version: doc.text("Version"), incarnation: doc.text("Incarnation"), users })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_in_order_with_secret_password() {
        let ra = parse_remote_access(
            "<RemoteAccess><Version>1</Version><Incarnation>2</Incarnation><Users>\
             <User><Name>a</Name><Password>c2VjcmV0</Password><Expiration>2030-01-01</Expiration>\
             <Groups><GroupName>G1</GroupName><GroupName>G2</GroupName></Groups></User>\
             <User><Name>b</Name><Password>eA==</Password></User></Users></RemoteAccess>",
        )
        .unwrap();
        assert_eq!(ra.incarnation.as_deref(), Some("2"));
        let names: Vec<&str> = ra.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(ra.users[0].encrypted_password.expose(), "c2VjcmV0");
        assert_eq!(ra.users[0].groups, ["G1", "G2"]);
        assert_eq!(ra.users[1].expiration, None);
        assert!(!format!("{ra:?}").contains("c2VjcmV0"));
        assert!(!serde_json::to_string(&ra).unwrap().contains("c2VjcmV0"));
    }

    #[test]
    fn missing_parts() {
        assert!(parse_remote_access("<RemoteAccess><Users/></RemoteAccess>").unwrap().users.is_empty());
        let err =
            parse_remote_access("<RemoteAccess><Users><User><Name>a</Name></User></Users></RemoteAccess>")
                .unwrap_err();
        assert!(err.to_string().contains("User[0]/Password"), "{err}");
    }
}
