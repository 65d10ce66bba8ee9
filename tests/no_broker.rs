//! `slawatch run` with no reachable broker: one reconnect line per attempt with its back-off,
//! the reason on `/readyz`, no colour codes in a piped log, and SIGTERM / SIGINT during
//! start-up ending the process at once with exit 0 and a message saying nothing was lost.
//! No broker is started: the configured one is a port nobody listens on.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHUTDOWN_TIMEOUT_MS: u64 = 3000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

struct Run {
    child: Child,
    log: PathBuf,
    admin: u16,
    broker: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn start(name: &str, extra_args: &[&str]) -> Run {
        let dir =
            std::env::temp_dir().join(format!("slawatch-nobroker-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A port that was free a moment ago: nothing answers on it.
        let broker = free_port();
        let admin = free_port();
        let config = dir.join("slawatch.toml");
        std::fs::write(
            &config,
            format!(
                "brokers = \"127.0.0.1:{broker}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nshutdown_timeout_ms = {SHUTDOWN_TIMEOUT_MS}\n"
            ),
        )
        .unwrap();
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_slawatch"))
            .args(extra_args)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("SLAWATCH_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Run {
            child,
            log,
            admin,
            broker,
            _dir: TempDir(dir),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `n` lines containing `needle`.
    fn wait_for_lines(&self, needle: &str, n: usize, within: Duration) {
        let t = Instant::now();
        while self.log().matches(needle).count() < n {
            assert!(
                t.elapsed() < within,
                "no {n} lines with {needle:?} within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and returns the exit status and how long the exit took.
    fn stop(&mut self, signal: &str) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        assert!(Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_millis(SHUTDOWN_TIMEOUT_MS + 5000),
                "{signal} did not stop slawatch; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `/readyz` response body once it answers (the admin listener starts before Kafka is
/// contacted).
fn readyz(run: &Run) -> (String, serde_json::Value) {
    let t = Instant::now();
    loop {
        if let Some(resp) = http_get(run.admin, "/readyz") {
            if let Some((head, body)) = resp.split_once("\r\n\r\n") {
                let status = head.lines().next().unwrap_or_default().to_string();
                let json = serde_json::from_str(body.trim())
                    .unwrap_or_else(|e| panic!("/readyz body is not JSON ({e}): {body:?}"));
                return (status, json);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "/readyz never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_broker_start_logs_each_attempt_once_reports_why_on_readyz_and_sigterm_exits_cleanly() {
    let mut run = Run::start("term", &[]);
    // Attempt 1 fails after its 3 s timeout, attempt 2 half a second later.
    run.wait_for_lines("cannot reach Kafka", 2, Duration::from_secs(30));
    let (status, body) = readyz(&run);
    assert!(status.contains("503"), "{status} {body}");
    assert_eq!(body["ready"], false, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", run.broker)) && reason.contains("Kafka"),
        "/readyz reason does not name the unreachable brokers: {body}"
    );

    let (exit, took) = run.stop("-TERM");
    let log = run.log();
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    assert!(
        took < Duration::from_millis(SHUTDOWN_TIMEOUT_MS),
        "SIGTERM took {took:?}, more than shutdown_timeout_ms; log:\n{log}"
    );
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(
        log.contains("stopped during start-up: nothing was consumed, nothing to commit"),
        "{log}"
    );

    // One line per attempt, each with its back-off, growing: 0.5 s, 1 s, 2 s …
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot reach Kafka"))
        .collect();
    assert!(attempts.len() >= 2, "{log}");
    assert!(
        attempts[0].contains("retrying in 0.5 s") && attempts[0].contains("attempt=1"),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[1].contains("retrying in 1.0 s") && attempts[1].contains("attempt=2"),
        "{}",
        attempts[1]
    );
    assert!(
        attempts[0].contains("Connection refused") || attempts[0].contains("down"),
        "the attempt line gives librdkafka's reason: {}",
        attempts[0]
    );
    // librdkafka's own per-client retry noise stays out of the log (debug level).
    assert!(
        !log.contains("librdkafka"),
        "librdkafka lines leaked:\n{log}"
    );
    assert!(
        !log.contains("Kafka client error"),
        "per-client errors leaked:\n{log}"
    );
    // Written to a file: no ANSI colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a file log:\n{log}"
    );
}

#[test]
fn sigint_during_start_up_exits_at_once_and_json_logs_are_one_object_per_line() {
    let mut run = Run::start("int", &["--log-format", "json"]);
    run.wait_for_lines("cannot reach Kafka", 1, Duration::from_secs(30));
    let (exit, took) = run.stop("-INT");
    let log = run.log();
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    assert!(
        took < Duration::from_millis(SHUTDOWN_TIMEOUT_MS),
        "SIGINT took {took:?}"
    );
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        messages.iter().any(|m| m.starts_with("cannot reach Kafka")),
        "{log}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == "SIGINT: stopping (a second one exits at once)"),
        "{log}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == "stopped during start-up: nothing was consumed, nothing to commit"),
        "{log}"
    );
    // The attempt's fields are fields, not text: a shipper can alert on them.
    let attempt = log
        .lines()
        .find(|l| l.contains("cannot reach Kafka"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    assert_eq!(attempt["attempt"], 1, "{attempt}");
    assert_eq!(attempt["retry_in_ms"], 500, "{attempt}");
    assert_eq!(
        attempt["brokers"],
        format!("127.0.0.1:{}", run.broker),
        "{attempt}"
    );
}
