//! Reading small files named by the configuration: regular files only, never blocking, bounded.
//!
//! A path in the configuration may name anything: a FIFO (opening it for reading blocks until a
//! writer appears, which froze every actor during a reload), `/dev/zero` (read until memory runs
//! out), a directory. So the path is checked with `stat` before it is opened, the open itself is
//! non-blocking (the path may have been swapped in between), the open file is checked again with
//! `fstat`, and at most `limit` bytes are read: a larger file is an error, never a truncation.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Why a file could not be read. The messages name the path and never the content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {what}, not a regular file")]
    NotRegular { path: String, what: &'static str },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
}

/// Reads the whole of the regular file `path`, at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let io = |source| FileError::Io {
        path: shown(),
        source,
    };
    // stat before open: a FIFO or a device is refused without being opened at all.
    regular(path, &std::fs::metadata(path).map_err(io)?)?;
    // O_NONBLOCK: if the path became a FIFO since the stat, the open still returns at once (a
    // regular file ignores the flag), and the fstat below refuses it.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    regular(path, &file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a file of exactly `limit` bytes from a larger one.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: shown(),
            limit,
        });
    }
    Ok(bytes)
}

/// As [`read_bounded`], as UTF-8 text.
pub fn read_bounded_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| FileError::NotText {
        path: path.display().to_string(),
    })
}

fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), FileError> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    };
    Err(FileError::NotRegular {
        path: path.display().to_string(),
        what,
    })
}

/// Makes a FIFO at `path`: a file that blocks a reader, for the tests of the readers here and
/// of the configuration's secret files.
#[cfg(test)]
pub(crate) fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_are_read_whole_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(read_bounded(&p, 4).unwrap(), b"abcd");
        let e = read_bounded(&p, 3).unwrap_err().to_string();
        assert!(e.contains("larger than 3 bytes"), "{e}");
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let start = Instant::now();
        for (p, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (dir.path(), "a directory"),
        ] {
            let e = read_bounded(p, 4096).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn binary_content_is_not_text_and_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, [0xff, 0xfe, b's']).unwrap();
        let e = read_bounded_text(&p, 4096).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
