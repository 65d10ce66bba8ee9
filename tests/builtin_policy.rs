//! The default policy is built into the binary: `slawatch policy show-default` prints
//! deploy/policies/default.toml byte for byte (so the file stays the source and the binary
//! cannot drift from it), and `replay`, `config check` (as `run` loads it) and `demo` use it
//! when no policy is named — from a directory that has no deploy/ beside it.
use slawatch::core::policy::parse::check_policy;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> String {
    format!("{ROOT}/{path}")
}

/// Runs the binary in `dir` (an empty temporary directory unless given).
fn slawatch(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run slawatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn show_default_prints_the_policy_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = slawatch(dir.path(), &["policy", "show-default"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::read(repo("deploy/policies/default.toml")).unwrap();
    assert!(
        out.stdout == file,
        "`slawatch policy show-default` differs from deploy/policies/default.toml \
         ({} vs {} bytes): rebuild the binary",
        out.stdout.len(),
        file.len()
    );
    // And it compiles to the same policy set, without a single diagnostic.
    let (shown, diagnostics) = check_policy(&text(&out.stdout), "show-default");
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let (from_file, _) = check_policy(&text(&file), "default.toml");
    let (shown, from_file) = (shown.unwrap(), from_file.unwrap());
    assert_eq!(shown.version, from_file.version);
    assert_eq!(format!("{shown:?}"), format!("{from_file:?}"));
}

#[test]
fn replay_without_policy_uses_the_built_in_default_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let input = repo("examples/sample-events.jsonl");
    let common = ["--input", &input, "--until", "2024-03-05T00:00:00Z"];
    let built_in = slawatch(dir.path(), &[&["replay"][..], &common].concat());
    assert!(built_in.status.success(), "{}", text(&built_in.stderr));
    let policy = repo("deploy/policies/default.toml");
    let named = slawatch(
        dir.path(),
        &[&["replay", "--policy", &policy][..], &common].concat(),
    );
    assert!(named.status.success(), "{}", text(&named.stderr));
    assert!(!built_in.stdout.is_empty(), "no SLA events");
    assert_eq!(text(&built_in.stdout), text(&named.stdout));
}

#[test]
fn config_without_policy_file_loads_the_built_in_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "brokers = \"localhost:9092\"\n").unwrap();
    let out = slawatch(dir.path(), &["config", "check", "c.toml"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("policy_file          = built-in default policy"),
        "{stdout}"
    );
    // A named file that is missing is an error naming it, not a silent fallback.
    std::fs::write(
        dir.path().join("d.toml"),
        "brokers = \"localhost:9092\"\npolicy_file = \"missing.toml\"\n",
    )
    .unwrap();
    let out = slawatch(dir.path(), &["config", "check", "d.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("missing.toml"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn demo_runs_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = slawatch(
        dir.path(),
        &["demo", "--duration", "3s", "--admin-listen", "127.0.0.1:0"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("cannot read policy file"));
}
