//! What an operator reads when a file is wrong: `slawatch policy check` and `slawatch config
//! check` name the file, line and column, say the true problem, suggest the nearest key,
//! report one typo once, and name the `SLAWATCH_*` variables that were applied.
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

/// Runs the binary in `dir` with no `SLAWATCH_*` variable but `env`.
fn slawatch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLAWATCH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run slawatch")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CLOCKS: &str = r#"[[policy]]
id = "general"

[[policy.clock]]
id = "first_response"
rule = "R5"
start = ["opened"]
stop = ["agent_reply"]
target = "30 s"

[[policy.clock]]
id = "resolution"
rule = "R14"
start = ["opened"]
stop = ["resolved"]
targt = "24h"
"#;

#[test]
fn policy_check_says_the_true_thing_once_per_mistake() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), CLOCKS).unwrap();
    let out = slawatch(dir.path(), &["policy", "check", "p.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // The space, not a "missing unit"; the typo with its suggestion, and no second, false
    // "missing field target".
    assert_eq!(
        lines[0],
        "p.toml:9:10: error: malformed duration for \"target\": invalid duration \"30 s\": \
         no space allowed between number and unit: write them together, as in \"30s\"",
        "{text}"
    );
    assert_eq!(
        lines[2], "p.toml:16:1: error: unknown field \"targt\" in [[policy.clock]]",
        "{text}"
    );
    assert!(
        lines[3].starts_with("  hint: did you mean \"target\"?"),
        "{text}"
    );
    assert!(!text.contains("missing field"), "{text}");
    assert_eq!(
        lines.last(),
        Some(&"p.toml: 2 error(s), 0 warning(s)"),
        "{text}"
    );
}

#[test]
fn config_check_locates_unknown_keys_and_suggests_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "brokers = \"localhost:9092\"\ncommit_intervl_ms = 50\n\n[topics]\nbreachs = \"x\"\n",
    )
    .unwrap();
    let out = slawatch(dir.path(), &["config", "check", "c.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "c.toml:2:1: unknown key \"commit_intervl_ms\"; did you mean \"commit_interval_ms\"?\n\
         c.toml:5:1: unknown key \"breachs\" in [topics]; did you mean \"breaches\"?\n"
    );
}

#[test]
fn config_check_locates_bad_values_and_names_the_variables_applied() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "bad.toml",
        "brokers = \"localhost:9092\"\ncommit_interval_ms = \"fast\"\n",
    );
    write("ok.toml", "brokers = \"localhost:9092\"\n");

    // A bad value in the file: its position, and no mention of overrides that are not set.
    let out = slawatch(dir.path(), &["config", "check", "bad.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "bad.toml:2:22: invalid type: string \"fast\", expected u64\n"
    );

    // A bad value from the environment: the variable is named.
    let env = [("SLAWATCH_COMMIT_INTERVAL_MS", "fast")];
    let out = slawatch(dir.path(), &["config", "check", "ok.toml"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "ok.toml with SLAWATCH_COMMIT_INTERVAL_MS from the environment: invalid type: \
         string \"fast\", expected u64\n"
    );

    // A misspelt variable gets the nearest one.
    let env = [("SLAWATCH_COMIT_INTERVAL_MS", "5")];
    let out = slawatch(dir.path(), &["config", "check", "ok.toml"], &env);
    assert_eq!(
        stdout(&out),
        "environment variable SLAWATCH_COMIT_INTERVAL_MS does not name a configuration key; \
         did you mean SLAWATCH_COMMIT_INTERVAL_MS?\n"
    );

    // The report of a good file says which variables were applied, or that none were.
    let out = slawatch(dir.path(), &["config", "check", "ok.toml"], &[]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("\nenvironment          = no SLAWATCH_* variable set\n"),
        "{}",
        stdout(&out)
    );
    let env = [("SLAWATCH_GROUP_ID", "g1"), ("SLAWATCH_BROKERS", "b:1")];
    let out = slawatch(dir.path(), &["config", "check", "ok.toml"], &env);
    let text = stdout(&out);
    assert!(
        text.contains("\nenvironment          = SLAWATCH_BROKERS, SLAWATCH_GROUP_ID\n"),
        "{text}"
    );
    assert!(text.contains("\nbrokers              = b:1\n"), "{text}");
}
