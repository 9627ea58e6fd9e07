//! `[audit]`: where the audit trail goes, what it records, and whether admin actions wait for
//! it; validated.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
pub use crate::audit::{AuditSettings, SinkKind};

/// `[audit]` as written. The section is optional: without it nothing is recorded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    sink: String,
    path: Option<PathBuf>,
    #[serde(default = "all_events")]
    events: Vec<String>,
    #[serde(default)]
    fail_closed: bool,
}

fn all_events() -> Vec<String> {
    vec!["admin".into(), "reads".into()]
}

pub(super) fn validate_audit(raw: Option<RawAudit>) -> Result<Option<AuditSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let sink =
        match (raw.sink.as_str(), raw.path) {
            ("file", Some(path)) if !path.as_os_str().is_empty() => SinkKind::File(path),
            ("file", _) => return Err(ConfigError::at(
                "audit.path",
                "sink = \"file\" needs a path (the file is appended to, and reopened on SIGHUP)",
            )),
            ("stdout", None) => SinkKind::Stdout,
            ("stdout", Some(_)) => {
                return Err(ConfigError::at(
                    "audit.path",
                    "only used with sink = \"file\"",
                ))
            }
            (other, _) => {
                return Err(ConfigError::at(
                    "audit.sink",
                    format!("unknown sink `{other}`; expected \"file\" or \"stdout\""),
                ))
            }
        };
    let mut admin = false;
    let mut reads = false;
    for event in &raw.events {
        match event.as_str() {
            "admin" => admin = true,
            "reads" => reads = true,
            other => {
                return Err(ConfigError::at(
                    "audit.events",
                    format!("unknown event kind `{other}`; expected \"admin\" or \"reads\""),
                ))
            }
        }
    }
    if raw.fail_closed && !admin {
        return Err(ConfigError::at(
            "audit.fail_closed",
            "refuses admin actions the trail cannot record, but audit.events does not hold \"admin\"",
        ));
    }
    Ok(Some(AuditSettings {
        sink,
        admin,
        reads,
        fail_closed: raw.fail_closed,
    }))
}

/// `[audit]` in the redacted view (nothing in it is secret).
#[derive(Serialize)]
pub(super) struct AuditView {
    sink: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    events: Vec<&'static str>,
    fail_closed: bool,
}

impl From<&AuditSettings> for AuditView {
    fn from(a: &AuditSettings) -> Self {
        let (sink, path) = match &a.sink {
            SinkKind::Stdout => ("stdout", None),
            SinkKind::File(p) => ("file", Some(p.display().to_string())),
        };
        let events = [("admin", a.admin), ("reads", a.reads)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        AuditView {
            sink,
            path,
            events,
            fail_closed: a.fail_closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Option<AuditSettings>, ConfigError> {
        let raw: RawAudit = toml::from_str(toml_text).unwrap();
        validate_audit(Some(raw))
    }

    #[test]
    fn a_file_sink_records_both_kinds_by_default() {
        let a = parse("sink = \"file\"\npath = \"/var/log/wxtoken/audit.log\"")
            .unwrap()
            .unwrap();
        assert_eq!(a.sink, SinkKind::File("/var/log/wxtoken/audit.log".into()));
        assert!(a.admin && a.reads && !a.fail_closed);
        assert_eq!(validate_audit(None).unwrap(), None);
    }

    #[test]
    fn bad_sections_are_refused_with_the_key_named() {
        for (text, key) in [
            ("sink = \"file\"", "audit.path"),
            ("sink = \"stdout\"\npath = \"x\"", "audit.path"),
            ("sink = \"syslog\"", "audit.sink"),
            ("sink = \"stdout\"\nevents = [\"writes\"]", "audit.events"),
            (
                "sink = \"stdout\"\nevents = [\"reads\"]\nfail_closed = true",
                "audit.fail_closed",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }
}
