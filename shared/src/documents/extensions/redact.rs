//! Protected settings taken out of a document before anyone else may read it: the value of every
//! `protectedSettings` key, in JSON and in JSON embedded in XML (an ExtensionsConfig, a settings
//! file, a goal-state history entry). Pure text in, text out; `None` when an occurrence cannot be
//! redacted for certain, so that the caller drops the document rather than keep a secret.

/// Replace the value of every `protectedSettings` key with `"<redacted>"`, in JSON and in JSON
/// embedded in XML (quotes written `"` or `&quot;`). `protectedSettingsCertThumbprint` is kept.
/// `None` when some occurrence cannot be redacted for certain (the caller then drops the file).
pub fn redact_protected_settings(text: &str) -> Option<String> {
    redact_protected_settings_as(text, "<redacted>")
}

/// [`redact_protected_settings`] with `marker` as the replacement (it must not contain a quote).
pub fn redact_protected_settings_as(text: &str, marker: &str) -> Option<String> {
    const KEY: &str = "protectedSettings";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = find_ignore_case(rest, KEY) {
        let (before, after_start) = rest.split_at(i);
        let after = &after_start[KEY.len()..];
        out.push_str(before);
        out.push_str(&after_start[..KEY.len()]);
        // A longer identifier (protectedSettingsCertThumbprint) is not the key.
        if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            rest = after;
            continue;
        }
        let quote = if before.ends_with('"') && after.starts_with('"') {
            "\""
        } else if before.ends_with("&quot;") && after.starts_with("&quot;") {
            "&quot;"
        } else {
            // Not a JSON key (an XML element or prose mentioning the name): nothing is certain.
            return None;
        };
        let after_key = &after[quote.len()..];
        let after_colon = after_key.trim_start().strip_prefix(':')?;
        let value = after_colon.trim_start();
        out.push_str(quote);
        out.push_str(&after_key[..after_key.len() - after_colon.len()]);
        out.push_str(&after_colon[..after_colon.len() - value.len()]);
        if let Some(v) = value.strip_prefix("null") {
            out.push_str("null");
            rest = v;
            continue;
        }
        let body = value.strip_prefix(quote)?;
        let end = if quote == "\"" { closing_quote(body)? } else { body.find("&quot;")? };
        // A value running into XML markup was not a JSON string in XML text (base64 never holds a
        // `<`): nothing is certain.
        if body[..end].contains('<') {
            return None;
        }
        out.push_str(quote);
        out.push_str(marker);
        out.push_str(quote);
        rest = &body[end + quote.len()..];
    }
    out.push_str(rest);
    Some(out)
}

fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Index of the first unescaped `"` in a JSON string body.
fn closing_quote(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_settings_are_redacted_in_json_and_xml() {
        let json = r#"{"runtimeSettings":[{"handlerSettings":{"protectedSettingsCertThumbprint":"ABC","protectedSettings" : "MIIB\"x+/=","publicSettings":{"a":1}}}]}"#;
        let out = redact_protected_settings(json).unwrap();
        assert_eq!(
            out,
            r#"{"runtimeSettings":[{"handlerSettings":{"protectedSettingsCertThumbprint":"ABC","protectedSettings" : "<redacted>","publicSettings":{"a":1}}}]}"#
        );
        let xml = "<RuntimeSettings>{&quot;protectedSettings&quot;:&quot;SECRET&quot;, &quot;x&quot;:1}</RuntimeSettings>";
        assert_eq!(
            redact_protected_settings(xml).unwrap(),
            "<RuntimeSettings>{&quot;protectedSettings&quot;:&quot;<redacted>&quot;, &quot;x&quot;:1}</RuntimeSettings>"
        );
        assert_eq!(
            redact_protected_settings(r#"{"protectedSettings":null}"#).unwrap(),
            r#"{"protectedSettings":null}"#
        );
        // Not certain: dropped.
        assert_eq!(redact_protected_settings(r#"{"protectedSettings":{"a":"SECRET"}}"#), None);
        assert_eq!(redact_protected_settings(r#"{"protectedSettings":"SECRET"#), None);
        assert_eq!(redact_protected_settings("<ProtectedSettings>SECRET</ProtectedSettings>"), None);
        assert_eq!(redact_protected_settings("no secrets here").unwrap(), "no secrets here");
    }
}
