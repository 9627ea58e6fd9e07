//! The audit trail: one JSON line per admin action, and token reads rolled up per client,
//! credential and minute. Lines name clients, credentials and token fingerprints, never a
//! secret, a token or a key.

mod rollup;
mod sink;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;

pub use rollup::Reads;
pub use sink::SinkKind;

use crate::secret::{AccessToken, Fingerprint};

/// The fields every line has, by the names operators' tools read them by (the contract of the
/// trail's format; read-roll-up lines add `count`).
pub const LINE_FIELDS: [&str; 8] = [
    "time",
    "event",
    "client",
    "remote_addr",
    "route",
    "credential",
    "outcome",
    "fingerprints",
];

/// How often the read roll-up is written: "per minute", as the lines say.
pub const ROLLUP_INTERVAL: Duration = Duration::from_secs(60);

/// What the trail records, from `[audit]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    pub sink: SinkKind,
    /// Record admin actions (`events` holds `"admin"`).
    pub admin: bool,
    /// Record token reads, rolled up (`events` holds `"reads"`).
    pub reads: bool,
    /// Refuse admin actions (503) while the trail cannot be written.
    pub fail_closed: bool,
}

/// The admin actions the trail names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Revoke,
    Reload,
    Reconcile,
    AuthorizerImport,
    AuthorizerRemove,
    KeyRotation,
    /// A refetch forced by a client's report that its token was rejected.
    Invalidate,
    DeadLetterRetry,
    DeadLetterDiscard,
}

/// Who asked, from where, through which route.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub client: String,
    pub remote_addr: Option<String>,
    pub route: String,
}

/// One admin action as the trail records it.
#[derive(Debug)]
pub struct Entry<'a> {
    pub action: Action,
    pub caller: &'a Caller,
    pub credential: Option<&'a str>,
    /// `"ok"`, or a short word for what went wrong (never an upstream message, which may quote
    /// a value).
    pub outcome: &'a str,
    pub fingerprints: Vec<Fingerprint>,
}

#[derive(Serialize)]
struct Line<'a, E: Serialize> {
    time: String,
    event: E,
    client: &'a str,
    remote_addr: Option<&'a str>,
    route: &'a str,
    credential: Option<&'a str>,
    outcome: &'a str,
    fingerprints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
}

/// The trail refuses an admin action: it cannot be written, and `fail_closed` is on.
#[derive(Debug, thiserror::Error)]
#[error(
    "the audit trail cannot be written; admin actions are refused until it can (audit.fail_closed)"
)]
pub struct TrailUnavailable;

/// The running trail; cheap to clone. With no `[audit]` section it records nothing.
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    settings: AuditSettings,
    sink: sink::Sink,
    rollup: rollup::Rollup,
}

impl Audit {
    /// A trail that records nothing (no `[audit]` section).
    pub fn off() -> Audit {
        Audit::default()
    }

    /// Opens the sink. A file that cannot be opened does not stop the server: it is logged and
    /// counted, and with `fail_closed` admin actions are refused until a reopen (SIGHUP)
    /// succeeds.
    pub fn open(settings: AuditSettings, write_errors: IntCounter) -> Audit {
        let sink = sink::Sink::open(settings.sink.clone(), write_errors);
        if !sink.healthy() {
            tracing::error!(sink = ?settings.sink, "the audit file cannot be opened; audit lines are lost until it can (SIGHUP reopens it)");
        }
        let inner = Inner {
            settings,
            sink,
            rollup: rollup::Rollup::default(),
        };
        // The first line says the trail starts, and proves at once that it can be written: a
        // trail on a full disk refuses the first admin action, not only the second.
        if inner.sink.healthy() {
            inner.write_json(&Line {
                time: crate::time::rfc3339(SystemTime::now()),
                event: "start",
                client: "",
                remote_addr: None,
                route: "",
                credential: None,
                outcome: "ok",
                fingerprints: Vec::new(),
                count: None,
            });
        }
        Audit {
            inner: Some(Arc::new(inner)),
        }
    }

    /// Called before an admin action: refuses it when the trail is to fail closed and its last
    /// write failed. The action whose own line fails is already done; the ones after it wait
    /// for the trail (a reopen, or any later write that succeeds, such as this check's).
    pub fn admit(&self, caller: &Caller, action: Action) -> Result<(), TrailUnavailable> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if !inner.settings.admin || !inner.settings.fail_closed || inner.sink.healthy() {
            return Ok(());
        }
        // Try again: the disk may have room now. The refusal itself is a line of the trail.
        let refused = Entry {
            action,
            caller,
            credential: None,
            outcome: "refused_audit_unavailable",
            fingerprints: Vec::new(),
        };
        inner.write(&refused);
        if inner.sink.healthy() {
            // That line was written, so the trail works again; but this attempt was recorded
            // as refused, so it is refused: the caller retries.
            tracing::info!("the audit trail can be written again");
        }
        Err(TrailUnavailable)
    }

    /// Records an admin action that happened (or failed).
    pub fn record(&self, entry: &Entry<'_>) {
        if let Some(inner) = &self.inner {
            if inner.settings.admin {
                inner.write(entry);
            }
        }
    }

    /// Counts a token read; written with the minute's roll-up. The fingerprint is computed
    /// only when reads are recorded: this is on the token read path.
    pub fn read(&self, client: &str, credential: &str, token: &AccessToken) {
        if let Some(inner) = &self.inner {
            if inner.settings.reads {
                inner.rollup.count(client, credential, token.fingerprint());
            }
        }
    }

    /// Writes the reads counted since the last roll-up, one line per client and credential.
    pub fn flush_reads(&self) {
        let Some(inner) = &self.inner else { return };
        let time = crate::time::rfc3339(SystemTime::now());
        for reads in inner.rollup.take() {
            let line = Line {
                time: time.clone(),
                event: "reads",
                client: &reads.client,
                remote_addr: None,
                route: "",
                credential: Some(&reads.credential),
                outcome: "ok",
                fingerprints: reads.fingerprints,
                count: Some(reads.count),
            };
            inner.write_json(&line);
        }
    }

    /// Reopens the file (SIGHUP, after logrotate moved it).
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            if let Err(e) = inner.sink.reopen() {
                tracing::error!(error = %e, "the audit file cannot be reopened");
            }
        }
    }

    /// Whether admin actions would be refused right now.
    pub fn refusing(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.settings.admin && i.settings.fail_closed && !i.sink.healthy())
    }

    /// Writes the roll-up every [`ROLLUP_INTERVAL`] on the current runtime, until the process
    /// ends (the last partial minute is written by [`Audit::flush_reads`] at shutdown).
    pub fn spawn_rollup(&self) {
        if self.inner.as_ref().is_none_or(|i| !i.settings.reads) {
            return;
        }
        let audit = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(ROLLUP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // A minute's roll-up may be many lines of file writes: off the runtime's
                // threads, so no request waits behind the disk.
                let audit = audit.clone();
                let _ = actix_web::rt::task::spawn_blocking(move || audit.flush_reads()).await;
            }
        });
    }
}

impl Inner {
    fn write(&self, entry: &Entry<'_>) {
        let line = Line {
            time: crate::time::rfc3339(SystemTime::now()),
            event: entry.action,
            client: &entry.caller.client,
            remote_addr: entry.caller.remote_addr.as_deref(),
            route: &entry.caller.route,
            credential: entry.credential,
            outcome: entry.outcome,
            fingerprints: entry.fingerprints.iter().map(|f| f.to_string()).collect(),
            count: None,
        };
        self.write_json(&line);
    }

    fn write_json<E: Serialize>(&self, line: &Line<'_, E>) {
        let text = match serde_json::to_string(line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "an audit line did not serialize");
                return;
            }
        };
        if let Err(e) = self.sink.write_line(&text) {
            tracing::error!(error = %e, "an audit line was not written (counted in wxtoken_audit_write_errors_total)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(path: &std::path::Path, fail_closed: bool) -> AuditSettings {
        AuditSettings {
            sink: SinkKind::File(path.to_owned()),
            admin: true,
            reads: true,
            fail_closed,
        }
    }

    fn caller() -> Caller {
        Caller {
            client: "ops".into(),
            remote_addr: Some("127.0.0.1:5000".into()),
            route: "/v1/apps/shop/revoke".into(),
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["event"] != "start")
            .collect()
    }

    #[test]
    fn an_admin_action_is_one_line_with_the_named_fields_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(settings(&path, false), IntCounter::new("e", "e").unwrap());
        let old = Fingerprint::of("OLD_TOKEN_VALUE");
        let new = Fingerprint::of("NEW_TOKEN_VALUE");
        audit.admit(&caller(), Action::Revoke).unwrap();
        audit.record(&Entry {
            action: Action::Revoke,
            caller: &caller(),
            credential: Some("shop"),
            outcome: "ok",
            fingerprints: vec![old, new],
        });
        let got = lines(&path);
        assert_eq!(got.len(), 1);
        let line = &got[0];
        for field in LINE_FIELDS {
            assert!(line.get(field).is_some(), "{field} missing from {line}");
        }
        assert_eq!(line["event"], "revoke");
        assert_eq!(line["client"], "ops");
        assert_eq!(line["credential"], "shop");
        assert_eq!(
            line["fingerprints"],
            serde_json::json!([old.to_string(), new.to_string()])
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("TOKEN_VALUE"));
    }

    #[test]
    fn reads_are_written_as_a_rollup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(settings(&path, false), IntCounter::new("e", "e").unwrap());
        let token = AccessToken::new("T");
        let t = token.fingerprint();
        for _ in 0..75_000 {
            audit.read("crm", "shop", &token);
        }
        audit.flush_reads();
        let got = lines(&path);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["event"], "reads");
        assert_eq!(got[0]["count"], 75_000);
        assert_eq!(got[0]["fingerprints"], serde_json::json!([t.to_string()]));
    }

    #[test]
    fn events_not_chosen_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut s = settings(&path, false);
        s.reads = false;
        let audit = Audit::open(s, IntCounter::new("e", "e").unwrap());
        audit.read("crm", "shop", &AccessToken::new("T"));
        audit.flush_reads();
        assert!(lines(&path).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn failing_closed_refuses_admin_actions_while_the_trail_cannot_be_written() {
        let errors = IntCounter::new("e", "e").unwrap();
        let audit = Audit::open(settings("/dev/full".as_ref(), true), errors.clone());
        // The sink opened, but its first line (the start) failed: the first admin action is
        // refused already, and each refusal is one more failed write.
        assert_eq!(errors.get(), 1);
        assert!(audit.refusing());
        assert!(audit.admit(&caller(), Action::Revoke).is_err());
        assert_eq!(errors.get(), 2);
        // Reads go on: counting never fails.
        audit.read("crm", "shop", &AccessToken::new("T"));
        // Not failing closed: admitted, and still counted as lost.
        let open = Audit::open(settings("/dev/full".as_ref(), false), errors.clone());
        assert!(open.admit(&caller(), Action::Revoke).is_ok());
        assert_eq!(errors.get(), 3);
    }
}
