//! The layout section of docs/design.md names every Rust file and folder of src/ and tests/ as
//! they are, so a file added, moved or renamed without a word there fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text of the section headed `## Repository layout and design`, up to its first
/// subsection.
fn layout_section(design: &str) -> &str {
    let start = design
        .find("## Repository layout and design")
        .expect("docs/design.md has a layout section");
    let section = &design[start..];
    let end = section.find("\n### ").unwrap_or(section.len());
    &section[..end]
}

/// The section's entries: the first word of each unindented line (`src/token/`,
/// `src/http/mod.rs`), with that line and the indented lines under it.
fn entries(section: &str) -> BTreeMap<&str, String> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    let mut current = None;
    for line in section.lines() {
        if line.starts_with(|c: char| !c.is_whitespace()) {
            current = line.split_whitespace().next();
        }
        if let Some(entry) = current {
            let text = out.entry(entry).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// Every `*.rs` under `dir`, as a path from the repository's root with `/` between names.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("readable folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root()).expect("under the root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// What of `files` the section does not name. A file is named by its path, or by its file
/// name among the words of its folder's entry (`src/push/` ... `crypto.rs (...)`); a folder
/// by its path with a trailing `/`.
fn unnamed(section: &str, files: &[String]) -> Vec<String> {
    let entries = entries(section);
    let words_of = |folder: &str| -> Vec<String> {
        entries
            .get(format!("{folder}/").as_str())
            .map(|text| {
                text.split(|c: char| c.is_whitespace() || ",;:()".contains(c))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut missing = Vec::new();
    let mut folders = std::collections::BTreeSet::new();
    for file in files {
        let (folder, name) = file.rsplit_once('/').expect("in a folder");
        folders.insert(folder);
        if !section.contains(file.as_str()) && !words_of(folder).iter().any(|w| w == name) {
            missing.push(file.clone());
        }
    }
    for folder in folders {
        if !section.contains(&format!("{folder}/")) {
            missing.push(format!("{folder}/"));
        }
    }
    missing
}

#[test]
fn the_layout_section_names_every_source_file_and_folder() {
    let design = std::fs::read_to_string(root().join("docs/design.md")).expect("readable");
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    assert!(files.len() > 100, "only {} files found", files.len());
    let missing = unnamed(layout_section(&design), &files);
    assert!(
        missing.is_empty(),
        "not named in docs/design.md's layout section:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_file_is_named_by_its_path_or_in_its_folders_entry() {
    let section = "## Repository layout and design\n\
        src/a.rs     the a\n\
        src/b/       mod.rs, c.rs (the c),\n\
        \x20            d.rs\n\
        src/e/f.rs   not g.rs\n";
    let files = [
        "src/a.rs",
        "src/b/c.rs",
        "src/b/d.rs",
        "src/e/f.rs",
        "src/e/g.rs",
        "src/h/i.rs",
    ]
    .map(String::from);
    assert_eq!(
        unnamed(section, &files),
        ["src/e/g.rs", "src/h/i.rs", "src/h/"]
    );
}
