//! The README's Kafka quick start works as written: scripts/quickstart.sh (which the README
//! shows) starts the project's broker, runs `slawatch run` with the example config, publishes
//! the sample events and prints the breaches from sla.breaches; here with the `slawatch`
//! this test binary was built with first on PATH, and its output must be the README's. The
//! log of `slawatch run` must be free of terminal colour codes (it goes to a file).
use std::process::Command;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

/// The breaches the sample events cause, in the README's order (per partition the order is
/// fixed; across partitions it is not, so the test compares them sorted).
const EXPECTED: &[&str] = &[
    "10:01:00  BREACH      CHAT-1001 R1   first_response     policy chat",
    "10:01:30  cleared     CHAT-1001 R1   first_response",
    "10:15:30  BREACH      MAIL-2001 R19  responders_answer  policy urgent",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_readme_quick_start_shows_the_sample_breaches() {
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let mut cmd = Command::new(format!("{ROOT}/scripts/quickstart.sh"));
    cmd.env("PATH", path)
        .env(
            "SLAWATCH_ADMIN_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env_remove("KAFKA_BOOTSTRAP")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("SLAWATCH_") && k != "SLAWATCH_KAFKA_LIBS" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run scripts/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart.sh failed ({:?}) after {:?}:\n{stdout}\n{stderr}",
        out.status,
        started.elapsed()
    );
    let mut breaches: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("BREACH") || l.contains("cleared"))
        .collect();
    breaches.sort();
    assert_eq!(breaches, EXPECTED, "{stdout}");
    assert!(
        stdout.contains("published 17 events to conversations")
            || stderr.contains("published 17 events to conversations"),
        "{stdout}{stderr}"
    );

    // The README shows the script and this output.
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(
        readme.contains("scripts/quickstart.sh"),
        "README does not show the script"
    );
    for line in EXPECTED {
        assert!(
            readme.contains(line),
            "README lacks the output line {line:?}"
        );
    }

    // A log written to a file carries no ANSI escape codes.
    let log = std::fs::read_to_string(format!("{ROOT}/target/quickstart/slawatch.log"))
        .expect("slawatch.log");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}
