//! A real Prometheus server for integration tests, and the small pieces around it: child
//! processes that never outlive the test, a minimal HTTP/1.0 client, and the query API.
//!
//! [`Prometheus::start`] runs Debian's `prometheus` binary (`$PROMETHEUS`, else `prometheus`
//! on PATH) on a free loopback port with its own data directory, scraping one target every
//! second. [`prometheus_binary`] finds the binary, or fails with install instructions
//! (`SLAWATCH_SKIP_PROMETHEUS=1` skips instead).
//!
//! Every process started here is a [`Guarded`]: dropping it (normally or while a failing
//! test unwinds) sends SIGTERM, then SIGKILL after a grace period. And since a test process
//! can also die without unwinding (SIGKILL, `abort`), each child gets a watchdog shell
//! whose stdin is a pipe only this process writes to: when this process ends, however it
//! ends, the kernel closes the pipe and the watchdog kills the child.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Kills `$1` when this shell's stdin reaches end-of-file (the test process is gone); exits
/// quietly once `$1` is gone.
const WATCHDOG: &str = r#"
pid="$1"
while kill -0 "$pid" 2>/dev/null; do
    rc=0
    read -r -t 1 _ || rc=$?
    if [ "$rc" -gt 0 ] && [ "$rc" -le 128 ]; then
        kill -TERM "$pid" 2>/dev/null
        sleep 3
        kill -KILL "$pid" 2>/dev/null
        exit 0
    fi
done
"#;

/// A child process that is stopped when this value is dropped, and by its watchdog when
/// the test process dies without dropping it.
pub struct Guarded {
    pub name: String,
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Guarded {
    /// Spawns `cmd` with stdout and stderr appended to `log`, and its watchdog.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Guarded {
        let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(child.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .map(|mut w| {
                let pipe = w.stdin.take().expect("piped stdin");
                (w, pipe)
            });
        if watchdog.is_none() {
            eprintln!("[{name}] no watchdog (bash missing?): only Drop stops it");
        }
        Guarded {
            name: name.to_string(),
            child,
            watchdog,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics (with the log tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        // The watchdog first, so it never signals a pid that was reaped and reused.
        if let Some((mut w, pipe)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(pipe);
        }
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[{}] did not stop within {grace:?}: SIGKILL", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// `GET path` (path and query, already encoded) over HTTP/1.0 (so the body is never
/// chunked): (status code, body).
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: not an HTTP response: {text:.200}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line {head:.100}"))?;
    Ok((status, body.to_string()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `f` every `every` until it returns `Some`, or panics after `timeout` with `what`
/// and the last value `last` describes.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
            }
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// The `prometheus` binary: `$PROMETHEUS`, else the first on PATH. `None` (skip the test)
/// only when it is missing and `SLAWATCH_SKIP_PROMETHEUS=1`; otherwise a missing binary
/// panics with install instructions.
pub fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        });
    if found.is_some() {
        return found;
    }
    if std::env::var("SLAWATCH_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!("prometheus not found; test skipped because SLAWATCH_SKIP_PROMETHEUS=1");
        return None;
    }
    panic!(
        "the `prometheus` server binary is not on PATH. This test runs a real Prometheus \
         against the processor. Install Debian's `prometheus` package (scripts/test.sh and CI \
         do): `sudo apt-get install -y --no-install-recommends prometheus`, or set \
         PROMETHEUS=/path/to/prometheus. To skip this test set SLAWATCH_SKIP_PROMETHEUS=1."
    );
}

/// One sample of an instant query's result.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A running Prometheus server.
pub struct Prometheus {
    /// `127.0.0.1:PORT` of its HTTP API.
    pub addr: String,
    pub process: Guarded,
    pub config_file: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (config, data and log go there) scraping `target`
    /// (`host:port`, path `/metrics`) as job `job` every second, with `rule_files`
    /// evaluated every second; returns once `/-/ready` answers 200. A port taken between
    /// choosing it and binding it is retried with another.
    pub fn start(
        binary: &Path,
        dir: &Path,
        job: &str,
        target: &str,
        rule_files: &[PathBuf],
    ) -> Prometheus {
        let config_file = dir.join("prometheus.yml");
        let mut cfg = String::from(
            "# Written by tests/prom/mod.rs\n\
             global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        if !rule_files.is_empty() {
            cfg.push_str("rule_files:\n");
            for f in rule_files {
                cfg.push_str(&format!("  - {}\n", yaml_str(&f.display().to_string())));
            }
        }
        cfg.push_str(&format!(
            "scrape_configs:\n  - job_name: {}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
            yaml_str(job),
            yaml_str(target)
        ));
        std::fs::write(&config_file, cfg).expect("write prometheus.yml");
        let mut last_failure = String::new();
        for attempt in 1..=3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let data = dir.join(format!("data-{attempt}"));
            let mut cmd = Command::new(binary);
            cmd.arg(format!("--config.file={}", config_file.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--storage.tsdb.retention.time=1d")
                .arg("--log.level=info")
                .current_dir(dir);
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let mut process = Guarded::spawn("prometheus", cmd, &log);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = process.exited() {
                    last_failure = format!(
                        "prometheus exited ({status}); {}:\n{}",
                        log.display(),
                        process.log_tail(30)
                    );
                    break;
                }
                if let Ok((200, _)) = http_get(&addr, "/-/ready", Duration::from_secs(2)) {
                    return Prometheus {
                        addr,
                        process,
                        config_file,
                    };
                }
                if Instant::now() >= deadline {
                    panic!(
                        "prometheus not ready at {addr} within 60 s; {}:\n{}",
                        log.display(),
                        process.log_tail(30)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !last_failure.contains("address already in use") {
                break;
            }
        }
        panic!("cannot start prometheus: {last_failure}");
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer, or the error text.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/{path_and_query}"),
            Duration::from_secs(30),
        )?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body:.300}"))?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {status}: {}: {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or(&body)
            ));
        }
        if let Some(w) = v.get("warnings") {
            if w.as_array().is_some_and(|w| !w.is_empty()) {
                return Err(format!("warnings: {w}"));
            }
        }
        Ok(v["data"].clone())
    }

    /// An instant query at the current time: the samples of its vector or scalar result.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("query?query={}", url_encode(promql)))?;
        let parse_value = |v: &Value| -> Result<f64, String> {
            let s = v[1]
                .as_str()
                .ok_or_else(|| format!("bad sample value {v}"))?;
            match s {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                _ => s.parse().map_err(|e| format!("bad sample value {s}: {e}")),
            }
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .ok_or("no result array")?
                .iter()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Sample {
                        labels,
                        value: parse_value(&r["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(&data["result"])?,
            }]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// The single value of `promql` (summed if it has several samples); `None` when empty.
    pub fn value(&self, promql: &str) -> Result<Option<f64>, String> {
        let s = self.query(promql)?;
        Ok(if s.is_empty() {
            None
        } else {
            Some(s.iter().map(|x| x.value).sum())
        })
    }

    /// Polls until `promql` has a value for which `ok` holds.
    pub fn wait_value(
        &self,
        what: &str,
        promql: &str,
        timeout: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        poll(what, timeout, Duration::from_millis(250), || {
            match self.value(promql)? {
                Some(v) if ok(v) => Ok(v),
                other => Err(format!("{promql} = {other:?}")),
            }
        })
    }
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}
