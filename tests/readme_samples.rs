//! The README's replay example and docs/whatif.md's explain example are what the commands
//! print: the test runs the commands of each block (`$ …` lines, with `\` continuations)
//! and compares the document's lines with the real output. In the README, a line `...` stands for any number of lines and `…`
//! inside a line for any text (an elided event id), nothing else may differ.
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

/// A `$ command` with the lines the README shows after it.
struct Shown {
    command: String,
    output: Vec<String>,
}

/// The `$` commands of the first ```text block that contains `$ <marker>`.
fn block_with(readme: &str, marker: &str) -> Vec<Shown> {
    let mut blocks = readme
        .split("```text\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap());
    let block = blocks
        .find(|b| b.contains(&format!("$ {marker}")))
        .unwrap_or_else(|| panic!("the document has no ```text block with `$ {marker}`"));
    let mut shown: Vec<Shown> = Vec::new();
    let mut continued = false;
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            shown.push(Shown {
                command: cmd.trim_end_matches('\\').trim().to_string(),
                output: Vec::new(),
            });
            continued = cmd.ends_with('\\');
        } else if continued {
            let last = shown.last_mut().unwrap();
            last.command.push(' ');
            last.command.push_str(line.trim_end_matches('\\').trim());
            continued = line.ends_with('\\');
        } else if let Some(last) = shown.last_mut() {
            last.output.push(line.to_string());
        }
    }
    shown
}

/// Runs one README command in `dir`: `slawatch …` / `cargo run --release -- …` with this
/// build's binary, `head -N FILE` natively.
fn run(dir: &Path, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let args: &[&str] = match words.as_slice() {
        ["cargo", "run", "--release", "--", rest @ ..] | ["slawatch", rest @ ..] => rest,
        ["head", n, file] => {
            let n: usize = n.trim_start_matches('-').parse().expect("head -N");
            let text = std::fs::read_to_string(dir.join(file)).expect("head's file");
            return text.lines().take(n).map(|l| format!("{l}\n")).collect();
        }
        _ => panic!("the README's block runs a command this test does not know: {command}"),
    };
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run slawatch");
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A README line against a real one: equal, or equal around each `…`.
fn line_matches(shown: &str, real: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    if parts.len() == 1 {
        return shown == real;
    }
    let mut rest = match real.strip_prefix(parts[0]) {
        Some(r) => r,
        None => return false,
    };
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Every README line matches the next real line; `...` skips any number of real lines.
fn check(command: &str, shown: &[String], real: &str) -> Result<(), String> {
    let real: Vec<&str> = real.lines().collect();
    let mut r = 0;
    let mut skipping = false;
    for s in shown {
        if s == "..." {
            skipping = true;
            continue;
        }
        loop {
            match real.get(r) {
                Some(line) if line_matches(s, line) => {
                    r += 1;
                    skipping = false;
                    break;
                }
                Some(_) if skipping => r += 1,
                Some(line) => {
                    return Err(format!(
                        "`{command}`: the README shows\n  {s}\nwhere the command prints\n  {line}"
                    ))
                }
                None => {
                    return Err(format!(
                        "`{command}`: the README shows\n  {s}\nafter the command's last line"
                    ))
                }
            }
        }
    }
    if !skipping && r < real.len() {
        return Err(format!(
            "`{command}` prints more than the README shows (end the block with `...`): {}",
            real[r]
        ));
    }
    Ok(())
}

/// A working directory where the documents' relative paths (deploy/, examples/) resolve.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["deploy", "examples"] {
        std::os::unix::fs::symlink(format!("{ROOT}/{d}"), dir.path().join(d)).unwrap();
    }
    dir
}

#[test]
fn the_readme_replay_example_is_what_replay_prints() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let dir = sandbox();
    let commands = block_with(&readme, "cargo run --release -- replay");
    assert!(
        commands.len() >= 2,
        "the block runs replay and shows its output"
    );
    let mut problems = Vec::new();
    for c in &commands {
        let real = run(dir.path(), &c.command);
        if let Err(e) = check(&c.command, &c.output, &real) {
            problems.push(e);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_whatif_docs_explain_example_is_what_explain_prints() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/whatif.md")).unwrap();
    let dir = sandbox();
    let commands = block_with(&doc, "slawatch explain");
    assert_eq!(commands.len(), 1, "the block runs explain once");
    let c = &commands[0];
    assert!(c.output.len() >= 5, "the block shows explain's output");
    let real = run(dir.path(), &c.command);
    if let Err(e) = check(&c.command, &c.output, &real) {
        panic!("docs/whatif.md: {e}");
    }
}

#[test]
fn the_matcher_catches_a_drifted_count() {
    let shown = vec!["17 records, 15 SLA events".to_string(), "...".to_string()];
    assert!(check("x", &shown, "17 records, 15 SLA events\nmore\n").is_ok());
    assert!(check("x", &shown, "17 records, 14 SLA events\nmore\n").is_err());
    let elided = vec![r#"{"eventId":"99f4…","ticketId":"M"}"#.to_string()];
    assert!(check("x", &elided, r#"{"eventId":"99f4a48b","ticketId":"M"}"#).is_ok());
    assert!(check("x", &elided, r#"{"eventId":"00f4a48b","ticketId":"M"}"#).is_err());
    let more = "{\"eventId\":\"99f4a\",\"ticketId\":\"M\"}\nextra";
    assert!(
        check("x", &elided, more).is_err(),
        "unshown lines are refused"
    );
}
