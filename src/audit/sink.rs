//! Where audit lines go: a file opened for appending (reopened on SIGHUP, for logrotate) or
//! standard output, and whether the last write reached it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::IntCounter;

/// The destination of the audit lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    Stdout,
    File(PathBuf),
}

/// Writes whole lines, one `write` each, so lines of concurrent writers never interleave and a
/// reader of the file never sees half a line from a crash between two writes.
pub struct Sink {
    kind: SinkKind,
    /// `None` while the file cannot be opened (every write then fails and is counted).
    file: Mutex<Option<File>>,
    /// Whether the last write (or reopen) succeeded: admin actions are refused while it did
    /// not, when the trail is to fail closed.
    healthy: AtomicBool,
    write_errors: IntCounter,
}

impl Sink {
    /// Opens the sink. A file that cannot be opened is not an error here: the sink starts
    /// unhealthy, every write is counted as failed until a reopen succeeds.
    pub fn open(kind: SinkKind, write_errors: IntCounter) -> Sink {
        let file = match &kind {
            SinkKind::Stdout => None,
            SinkKind::File(path) => open_append(path).ok(),
        };
        let healthy = matches!(kind, SinkKind::Stdout) || file.is_some();
        if !healthy {
            write_errors.inc();
        }
        Sink {
            kind,
            file: Mutex::new(file),
            healthy: AtomicBool::new(healthy),
            write_errors,
        }
    }

    /// Reopens the file by its path (after logrotate moved it away); stdout has nothing to do.
    pub fn reopen(&self) -> std::io::Result<()> {
        let SinkKind::File(path) = &self.kind else {
            return Ok(());
        };
        let opened = open_append(path);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match opened {
            Ok(f) => {
                *file = Some(f);
                self.healthy.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // The old handle (if any) keeps writing to the renamed file: better a line
                // there than none.
                self.fail();
                Err(e)
            }
        }
    }

    /// Appends `line` (a JSON object without its newline). A failure is counted, marks the
    /// sink unhealthy and is returned; a success marks it healthy again.
    pub fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let result = match &self.kind {
            SinkKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).and_then(|()| out.flush())
            }
            SinkKind::File(_) => {
                let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
                match file.as_mut() {
                    Some(f) => f.write_all(&bytes),
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the audit file is not open",
                    )),
                }
            }
        };
        match &result {
            Ok(()) => self.healthy.store(true, Ordering::Release),
            Err(_) => self.fail(),
        }
        result
    }

    /// Whether the last write reached the sink.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.write_errors.inc();
        self.healthy.store(false, Ordering::Release);
    }
}

/// `O_APPEND`: every write lands at the end even when logrotate's `copytruncate` shortened
/// the file, and writes of whole lines from one process never overlap.
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // The trail names clients and credentials: readable by the service's user only.
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    #[test]
    fn lines_are_appended_and_survive_a_reopen_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = Sink::open(SinkKind::File(path.clone()), counter());
        sink.write_line(r#"{"n":1}"#).unwrap();
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        // Before the reopen, lines still go to the renamed file.
        sink.write_line(r#"{"n":2}"#).unwrap();
        sink.reopen().unwrap();
        sink.write_line(r#"{"n":3}"#).unwrap();
        let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old, "{\"n\":1}\n{\"n\":2}\n");
        assert_eq!(new, "{\"n\":3}\n");
        assert!(sink.healthy());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_counted_and_marks_the_sink_unhealthy() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let errors = counter();
        let sink = Sink::open(SinkKind::File("/dev/full".into()), errors.clone());
        assert!(sink.healthy(), "opening /dev/full works");
        assert!(sink.write_line("{}").is_err());
        assert!(!sink.healthy());
        assert_eq!(errors.get(), 1);
        assert!(sink.write_line("{}").is_err());
        assert_eq!(errors.get(), 2);
    }

    #[test]
    fn a_file_that_cannot_be_opened_starts_unhealthy_and_recovers_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("audit.log");
        let errors = counter();
        let sink = Sink::open(SinkKind::File(path.clone()), errors.clone());
        assert!(!sink.healthy());
        assert_eq!(errors.get(), 1);
        assert!(sink.write_line("{}").is_err());
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        sink.reopen().unwrap();
        sink.write_line("{}").unwrap();
        assert!(sink.healthy());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
