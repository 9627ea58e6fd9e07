//! The documentation's links: every relative link in README.md and the guides under docs/ (and
//! the other Markdown files of the repository) names a file that exists, and every `#anchor` a
//! heading of that file (as GitHub spells heading anchors).

use std::path::{Path, PathBuf};

use crate::support::markdown::{anchors, prose_lines, slug};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository, but for build output and installed packages.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The targets of the inline links of `text`: what stands in `](...)`, its title dropped.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            out.push(target.to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_of_the_documentation_resolves() {
    let mut files = Vec::new();
    markdown_files(&root(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")));
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        for target in link_targets(&text) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with('<')
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("in a folder").join(path)
            };
            let rel = file
                .strip_prefix(root())
                .unwrap_or(file)
                .display()
                .to_string();
            if !dest.exists() {
                broken.push(format!("{rel}: `{target}`: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let known = std::fs::read_to_string(&dest)
                    .map(|t| anchors(&t))
                    .unwrap_or_default();
                if !known.contains(anchor) {
                    broken.push(format!("{rel}: `{target}`: no such anchor"));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_spelled_as_github_spells_them() {
    assert_eq!(
        slug("WeChat-compatible facade: `GET /cgi-bin/token`, `POST /cgi-bin/stable_token`"),
        "wechat-compatible-facade-get-cgi-bintoken-post-cgi-binstable_token"
    );
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n<a id=\"x\"></a>\n");
    assert_eq!(
        a.into_iter().collect::<Vec<_>>(),
        ["a", "a-1", "x"].map(String::from)
    );
    assert_eq!(
        link_targets("see [a](b.md#c \"t\") and [d](#e)"),
        ["b.md#c", "#e"]
    );
}
