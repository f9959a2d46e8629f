//! Dotted numeric versions as waagent compares them (`FlexibleVersion`): `3.1 < 4.0.0.0`, compared
//! part by part like tuples, so `1.0 < 1.0.0`; a requested version *matches* any version it is a
//! prefix of (`2.1` matches `2.1.6`).

use std::fmt;

/// A version made of dot-separated non-negative integers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlexibleVersion(Vec<u64>);

impl FlexibleVersion {
    /// Parse `1.2.3.4`. Whitespace around it is ignored; an empty part, a sign or any other
    /// character is refused (the text is returned as the error).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty version".to_string());
        }
        t.split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(format!("not a dotted numeric version: {:?}", super::excerpt(text)))
                } else {
                    p.parse::<u64>()
                        .map_err(|_| format!("version part too large: {:?}", super::excerpt(text)))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(FlexibleVersion)
    }

    /// Whether `self` (a requested version) is a prefix of `other`.
    pub fn matches(&self, other: &FlexibleVersion) -> bool {
        self.0.len() <= other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a == b)
    }

    /// The numeric parts.
    pub fn parts(&self) -> &[u64] {
        &self.0
    }
}

impl serde::Serialize for FlexibleVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for FlexibleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> FlexibleVersion {
        FlexibleVersion::parse(s).unwrap()
    }

    #[test]
    fn order_and_prefix_match() {
        assert!(v("3.1") < v("4.0.0.0"));
        assert!(v("1.10") > v("1.9.9"));
        assert!(v("1.0") < v("1.0.0"));
        assert!(v("2.1").matches(&v("2.1.6")));
        assert!(!v("2.1").matches(&v("2.10")));
        assert!(!v("2.1.6").matches(&v("2.1")));
        assert_eq!(v(" 1.0.8.133 ").to_string(), "1.0.8.133");
        for bad in ["", "1..2", "1.a", "-1", "1.2.", "99999999999999999999999"] {
            assert!(FlexibleVersion::parse(bad).is_err(), "{bad}");
        }
    }
}
