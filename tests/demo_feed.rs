//! `slawatch demo` tells the truth at a glance: a `cleared` is never stamped before the
//! breach it clears, the status line says `ready` or why not, and the final line says how
//! it stopped (no bare `ready: false`). The in-window ordering by fired time is unit-tested
//! in `demo::feed`.
use std::collections::HashMap;
use std::process::Command;

#[test]
fn demo_feed_clears_after_their_breaches_and_the_status_lines_say_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args([
            "demo",
            "--duration",
            "12s",
            "--speed",
            "240",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every breach's time by (ticket, rule, clock); every cleared compared to it.
    let mut breached: HashMap<(String, String, String), String> = HashMap::new();
    let mut cleared = 0;
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].len() != 8 || f[0].as_bytes()[2] != b':' {
            continue;
        }
        let key = |i: usize| (f[i].to_string(), f[i + 1].to_string(), f[i + 2].to_string());
        match f[1] {
            "BREACH" => {
                breached.entry(key(2)).or_insert_with(|| f[0].to_string());
            }
            "cleared" => {
                if let Some(at) = breached.get(&key(2)) {
                    cleared += 1;
                    assert!(
                        f[0] >= at.as_str(),
                        "cleared at {} before its breach at {at}: {line}\n{stdout}",
                        f[0]
                    );
                }
            }
            _ => {}
        }
    }
    assert!(
        !breached.is_empty(),
        "the demo shows breaches within 48 simulated minutes:\n{stdout}"
    );
    eprintln!(
        "{} breaches shown, {cleared} of their clears checked",
        breached.len()
    );

    let heads: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("── simulated"))
        .collect();
    assert!(heads.len() >= 2, "{stdout}");
    for h in &heads[..heads.len() - 1] {
        let status = h.rsplit(" │ ").next().unwrap();
        assert!(
            status == "ready" || status.starts_with("not ready: "),
            "live status is `ready` or says why not: {h}"
        );
        assert!(!status.ends_with("not ready: "), "{h}");
    }
    let last = heads[heads.len() - 1];
    assert!(
        last.ends_with("│ stopped: everything consumed is committed"),
        "final status: {last}"
    );
    assert!(!stdout.contains("ready: false"), "{stdout}");
}
