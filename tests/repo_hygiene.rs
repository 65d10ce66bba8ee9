//! A clone of the repository is self-contained: no file refers to a path or document outside
//! it (a checkout beside it, an absolute path of some machine, the contract's
//! upstream file names), and every relative Markdown link resolves to a file inside it.
//! The contract, the rules and the real logs live in docs/ and tests/data/; cite those.
use std::path::{Component, Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Substrings that point outside the repository. Spelt in pieces so that this file does not
/// match itself.
fn outside_markers() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("..{}", "/shared"),
            "a sibling checkout beside the clone",
        ),
        (format!("/{}/", "work"), "an absolute path of one machine"),
        (format!("/{}/", "home"), "an absolute path of one machine"),
        (format!("{}-SEMANTICS", "SLA"), "cite docs/sla-semantics.md"),
        (format!("{}-RULES", "POLICY"), "cite docs/policy-rules.md"),
        (
            format!("{}-HARNESS", "KAFKA"),
            "a document outside the repository",
        ),
        (
            format!("{}/", "seeds"),
            "the rules' sources are described in docs/policy-rules.md",
        ),
        (
            format!("shared {}", "contract"),
            "cite docs/sla-semantics.md or docs/contract.md",
        ),
    ]
}

/// Files a clone holds: tracked ones plus new, not ignored ones (so a file is checked before
/// its first commit). Falls back to walking the tree when this is not a git checkout.
fn repo_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(ROOT)
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| Path::new(ROOT).join(p))
            .filter(|p| p.is_file())
            .collect(),
        _ => {
            let mut files = Vec::new();
            walk(Path::new(ROOT), &mut files);
            files
        }
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | ".kafka")) {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// One problem: `file:line: what`.
fn scan_text(rel: &str, text: &str) -> Vec<String> {
    let markers = outside_markers();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (marker, why) in &markers {
            if line.contains(marker.as_str()) {
                problems.push(format!("{rel}:{}: refers to `{marker}` ({why})", n + 1));
            }
        }
    }
    problems
}

/// Relative targets of Markdown links `[text](target)` with their line numbers.
fn markdown_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let external = target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:");
            if !external {
                links.push((n + 1, target.to_string()));
            }
            rest = &after[end..];
        }
    }
    links
}

/// `base/target` with `.` and `..` resolved lexically; `None` when it climbs above `/`.
fn normalize(base: &Path, target: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in base.join(target).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    Some(out)
}

fn scan_links(root: &Path, file: &Path, rel: &str, text: &str) -> Vec<String> {
    let dir = file.parent().expect("file in a directory");
    let mut problems = Vec::new();
    for (line, target) in markdown_links(text) {
        let path = target.split('#').next().unwrap_or("");
        if path.starts_with('/') {
            problems.push(format!("{rel}:{line}: link `{target}` is an absolute path"));
            continue;
        }
        match normalize(dir, path) {
            Some(p) if p.starts_with(root) && p.exists() => {}
            Some(p) if p.starts_with(root) => {
                problems.push(format!("{rel}:{line}: link `{target}` names no file"))
            }
            _ => problems.push(format!(
                "{rel}:{line}: link `{target}` leaves the repository"
            )),
        }
    }
    problems
}

#[test]
fn no_file_refers_outside_the_repository() {
    let root = Path::new(ROOT);
    let files = repo_files();
    assert!(
        files.iter().any(|f| f.ends_with("docs/sla-semantics.md")),
        "the file list is incomplete: {} files",
        files.len()
    );
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue; // binary (the gzip logs): nothing to cite
        };
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        problems.extend(scan_text(&rel, &text));
        if rel.ends_with(".md") {
            problems.extend(scan_links(root, file, &rel, &text));
        }
    }
    assert!(
        problems.is_empty(),
        "{} reference(s) outside the repository:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_scan_catches_what_it_is_for() {
    let sibling = format!("see ..{}/data/real/x.csv.gz", "/shared");
    assert_eq!(scan_text("a.rs", &format!("ok\n{sibling}\n")).len(), 1);
    let absolute = format!("path /{}/main/x", "work");
    assert!(scan_text("a.rs", &absolute)[0].starts_with("a.rs:1: refers to"));
    assert!(scan_text("a.rs", "docs/sla-semantics.md §2 rule 4").is_empty());

    let root = Path::new(ROOT);
    let readme = root.join("README.md");
    let text = "[ok](docs/semantics.md) [anchor](#x) [web](https://example.org)\n\
                [gone](docs/nothing.md)\n[out](../elsewhere/README.md)\n[abs](/etc/passwd)";
    let problems = scan_links(root, &readme, "README.md", text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains(":2: link `docs/nothing.md` names no file"));
    assert!(problems[1].contains(":3: link `../elsewhere/README.md` leaves the repository"));
    assert!(problems[2].contains(":4: link `/etc/passwd` is an absolute path"));
}
