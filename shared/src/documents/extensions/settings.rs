//! The settings files the agent writes for an extension (wire.md §9.3):
//! `config/<seq>.settings`, or `config/<extName>.<seq>.settings` for multi-config.
//!
//! Content: `{"runtimeSettings":[{"handlerSettings":{"publicSettings":…,"protectedSettings":…,
//! "protectedSettingsCertThumbprint":…}}]}` with nulls kept (extensions rely on
//! `"publicSettings": null`). Protected settings stay encrypted; the extension decrypts them with
//! the certificate named by the thumbprint. The rendered text is returned as a [`Secret`] because
//! it carries the protected settings.

use serde_json::Value;

use crate::base::secret::Secret;
use crate::documents::extensions::extensions_goal_state::{Extension, ExtensionSettings};

/// The settings file name for `settings` of `handler`: `<seq>.settings`, or
/// `<extName>.<seq>.settings` when the handler is multi-config. A handler without settings uses
/// `0.settings` (see [`render_settings`]).
pub fn settings_file_name(handler: &Extension, settings: Option<&ExtensionSettings>) -> String {
    match settings {
        None => "0.settings".to_string(),
        Some(s) if handler.is_multi_config => format!("{}.{}.settings", s.name, s.sequence_number),
        Some(s) => format!("{}.settings", s.sequence_number),
    }
}

/// The content of a settings file. `None` (a handler with no settings) renders an empty file.
pub fn render_settings(settings: Option<&ExtensionSettings>) -> Secret<String> {
    let Some(s) = settings else {
        return Secret::new(String::new());
    };
    let json = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "null".to_string());
    let string = |v: Option<&str>| json(v.map(|t| Value::String(t.to_string())).as_ref());
    let protected = string(s.protected_settings.as_ref().map(|p| p.expose().as_str()));
    Secret::new(format!(
        "{{\"runtimeSettings\":[{{\"handlerSettings\":{{\"publicSettings\":{},\"protectedSettings\":{},\"protectedSettingsCertThumbprint\":{}}}}}]}}",
        json(s.public_settings.as_ref()),
        protected,
        string(s.certificate_thumbprint.as_deref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::extensions::extensions_goal_state::ExtensionState;

    fn settings(public: Option<Value>, protected: Option<&str>) -> ExtensionSettings {
        ExtensionSettings {
            name: "mc1".into(),
            sequence_number: 4,
            state: ExtensionState::Enabled,
            public_settings: public,
            protected_settings: protected.map(|p| Secret::new(p.to_string())),
            certificate_thumbprint: protected.map(|_| "ABC".to_string()),
            dependency_level: 0,
            depends_on: vec![],
            settings_unparsable: false,
        }
    }

    #[test]
    fn renders_with_nulls_kept() {
        let s = settings(None, None);
        assert_eq!(
            render_settings(Some(&s)).expose(),
            r#"{"runtimeSettings":[{"handlerSettings":{"publicSettings":null,"protectedSettings":null,"protectedSettingsCertThumbprint":null}}]}"#
        );
        let s = settings(Some(serde_json::json!({"a": "b\"c"})), Some("MIIB+/="));
        let text = render_settings(Some(&s));
        let v: Value = serde_json::from_str(text.expose()).unwrap();
        let hs = &v["runtimeSettings"][0]["handlerSettings"];
        assert_eq!(hs["publicSettings"]["a"], "b\"c");
        assert_eq!(hs["protectedSettings"], "MIIB+/=");
        assert_eq!(hs["protectedSettingsCertThumbprint"], "ABC");
        assert_eq!(format!("{text:?}"), "<redacted>");
        assert_eq!(render_settings(None).expose(), "");
    }

    #[test]
    fn file_names() {
        let mut h = Extension::new("H".into(), "1".into());
        let s = settings(None, None);
        assert_eq!(settings_file_name(&h, Some(&s)), "4.settings");
        assert_eq!(settings_file_name(&h, None), "0.settings");
        h.is_multi_config = true;
        assert_eq!(settings_file_name(&h, Some(&s)), "mc1.4.settings");
    }
}
