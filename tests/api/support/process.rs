//! Running the `wxtoken` binary: the command with the test environment, waiting for it to
//! listen or to exit, a server at trace level, and killing what a failed test leaves running.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_wxtoken");

pub fn wxtoken(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("WXTOKEN_CONFIG")
        .env_remove("RUST_LOG")
        .env("WXTOKEN_TEST_SHOP_SECRET", SHOP_SECRET)
        .env("WXTOKEN_TEST_BLOG_SECRET", BLOG_SECRET)
        .env("WXTOKEN_TEST_BILLING_KEY", BILLING_KEY)
        .stdin(Stdio::null());
    cmd
}

/// Waits for the process's log to name the address it listens on.
pub fn wait_for_listen_addr(log: &Path, child: &mut Child) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("wxtoken listening")) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("listening line names addr");
            return addr.to_string();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("wxtoken exited early ({status}): {text}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never listened: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary serving `config` (a configuration's text after its `[server]` table, which this
/// adds with a free port) with every log level on, its log in `dir`: the running server, its
/// base URL and the log file. For the tests that scan a whole log for secrets.
pub fn serve_at_trace(dir: &Path, config: &str) -> (KillOnDrop, String, std::path::PathBuf) {
    serve_logging_at(dir, config, "trace")
}

/// As [`serve_at_trace`], logging at `level` (`info` is what operators run).
pub fn serve_logging_at(
    dir: &Path,
    config: &str,
    level: &str,
) -> (KillOnDrop, String, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.join("wxtoken.toml");
    std::fs::write(
        &file,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{config}"),
    )
    .unwrap();
    let log = dir.join("log.txt");
    let child = wxtoken(&["serve", "--config", file.to_str().unwrap()])
        .env("WXTOKEN_LOG", level)
        .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let base = format!("http://{}", wait_for_listen_addr(&log, &mut child.0));
    (child, base, log)
}

/// Kills the server if the test fails before it stops it, so no process outlives the test.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` and waits for it: its output, once it succeeded (its stderr says why if not).
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
