//! Finding and running the external tools, and reading the repository's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's top directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, relative to its top.
pub fn path(relative: &str) -> PathBuf {
    repo().join(relative)
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Where `scripts/test` installs the Python tools (a virtual environment of their own, since
/// checkov pins versions that would clash with the system's packages).
fn tools_venv() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WXTOKEN_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/wxtoken/tools"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The command `name`: from the tools' virtual environment first, then `PATH`. Fails (never
/// skips: the check must run in CI) when it is in neither, naming what installs it.
pub fn tool(name: &str, installed_by: &str) -> Command {
    let found = tools_venv()
        .map(|v| v.join("bin").join(name))
        .filter(|p| p.is_file())
        .or_else(|| on_path(name));
    match found {
        Some(p) => Command::new(p),
        None => panic!("{name} not found: run scripts/test, which installs {installed_by}"),
    }
}

/// Runs `cmd` and returns its output, whatever its exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, fails unless it exits 0, and returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every YAML document of `file`, as JSON values (PyYAML of the tools' environment reads it:
/// the project has no YAML parser of its own, and these checks need structure, not text).
pub fn yaml_documents(file: &Path) -> Vec<serde_json::Value> {
    const SCRIPT: &str = "import sys, json, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
        json.dump(docs, sys.stdout)\n";
    let text = run(tool("python3", "the tools' virtual environment (PyYAML)")
        .args(["-c", SCRIPT])
        .arg(file));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The one YAML document of `file`.
pub fn yaml(file: &Path) -> serde_json::Value {
    let mut docs = yaml_documents(file);
    assert_eq!(docs.len(), 1, "{} holds one document", file.display());
    docs.remove(0)
}
