//! `slawatch run` and `slawatch config check`: configuration → telemetry → admin listener →
//! processor, with signals: SIGTERM/SIGINT stop gracefully within `shutdown_timeout_ms`
//! (a second one exits at once), SIGHUP reloads the policy file (validated first; tickets
//! opened after the reload use it, open tickets keep the policy they were matched under).
use crate::core::policy::builtin::PolicySource;
use crate::core::policy::PolicySet;
use crate::runtime::admin;
use crate::runtime::config::{Config, ConfigError};
use crate::runtime::control::Control;
use crate::runtime::kafka::connect::{wait_for_brokers, ConnectError};
use crate::runtime::processor::{self, ProcessorError, ProcessorOptions};
use crate::runtime::time_source::{Clock, WallClock};
use crate::runtime::topics::Topics;
use crate::telemetry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `slawatch run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Shadow mode: every output, dead-letter and internal topic and the group get the
    /// `shadow.` prefix.
    pub dry_run: bool,
    pub rebuild_from_input: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy {policy}:\n{diagnostics}")]
    Policy {
        policy: PolicySource,
        diagnostics: String,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("metrics: {0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("cannot listen on {addr} for the admin API: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("graceful shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
}

/// Loads and validates a policy (a file, or the built-in default).
pub fn load_policy(source: &PolicySource) -> Result<Arc<PolicySet>, RunError> {
    source.load().map(Arc::new).map_err(|d| RunError::Policy {
        policy: source.clone(),
        diagnostics: d
            .iter()
            .filter(|x| x.is_error())
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// `slawatch config check FILE`: the effective configuration (file + environment), the
/// policy file's validity. Returns the printed report.
pub fn config_check(path: &Path) -> Result<String, RunError> {
    let cfg = Config::load(path)?;
    let policy = load_policy(&cfg.policy_source())?;
    let clocks: usize = policy.policies.iter().map(|p| p.clocks.len()).sum();
    Ok(format!(
        "{}: ok\n{}policy               = {} policies, {} clocks, version {:016x}\n",
        path.display(),
        cfg.summary(),
        policy.policies.len(),
        clocks,
        policy.version
    ))
}

/// How the long-running commands write their log (`--log-format`, `SLAWATCH_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields) for log shippers.
    Json,
}

static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Chooses the log format for [`init_logging`] (set once, by the command line).
pub fn set_log_format(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
}

/// Logging for the long-running commands (`RUST_LOG` filters; info by default) on stderr.
/// Colour only on a terminal: a log file or a pipe to a shipper gets plain text.
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let echo = crate::runtime::kafka::close_echo::CloseEchoFilter;
    let _ = match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(echo)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .finish()
            .with(echo)
            .try_init(),
    };
}

/// `slawatch run`: blocks until a signal stops it or the processor fails.
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    let cfg = Config::load(&opts.config)?;
    let policy = load_policy(&cfg.policy_source())?;
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("slawatch-admin")
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let control = Control::new();
    control.set_starting(Some("starting".into()));
    let metrics = rt
        .block_on(async { telemetry::install_recorder(&telemetry::TelemetryOptions::default()) })?;
    let addr = cfg.admin_listen;
    let bound = rt
        .block_on(admin::serve(addr, control.clone(), Some(metrics)))
        .map_err(|source| RunError::Admin { addr, source })?;
    let topics = Topics::new(&cfg, opts.dry_run);
    tracing::info!(admin = %bound, dry_run = opts.dry_run, "slawatch {}\n{}", env!("CARGO_PKG_VERSION"), cfg.summary());
    // Signals first: a Ctrl-C while the brokers are unreachable must work too.
    rt.spawn(signals(control.clone(), cfg.policy_source()));
    let bound = Duration::from_millis(cfg.shutdown_timeout_ms);
    let starting = {
        let (cfg, control) = (cfg.clone(), control.clone());
        let rebuild_from_input = opts.rebuild_from_input;
        std::thread::Builder::new()
            .name("slawatch-start".into())
            .spawn(move || -> Result<processor::ProcessorHandle, RunError> {
                wait_for_brokers(&cfg, &control).map_err(|e| match e {
                    // The same error, with its fix hint, as when a running client is refused.
                    ConnectError::Authentication(why) => {
                        RunError::Processor(ProcessorError::Authentication(why))
                    }
                    e => RunError::Connect(e),
                })?;
                control.set_starting(Some(
                    "checking topics and joining the consumer group".into(),
                ));
                let clock: Arc<dyn Clock> = Arc::new(WallClock);
                let handle = processor::start(
                    ProcessorOptions {
                        cfg,
                        topics,
                        policy,
                        clock,
                        rebuild_from_input,
                        on_observation: None,
                        on_output: None,
                        describe_topic_configs: true,
                    },
                    control.clone(),
                )?;
                control.set_starting(None);
                Ok(handle)
            })
            .map_err(RunError::Runtime)?
    };
    // Start-up has consumed nothing and opened no transaction: a shutdown request during it
    // ends the process at once (the start-up thread is abandoned mid-request).
    while !starting.is_finished() {
        if control.shutdown_requested() {
            tracing::info!("stopped during start-up: nothing was consumed, nothing to commit");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let handle = match starting.join() {
        Ok(Ok(handle)) => handle,
        Ok(Err(RunError::Connect(ConnectError::Stopped(_)))) => {
            tracing::info!("stopped during start-up: nothing was consumed, nothing to commit");
            return Ok(());
        }
        Ok(Err(e)) => {
            control.set_starting(None);
            control.set_error(e.to_string());
            return Err(e);
        }
        Err(_) => return Err(RunError::Processor(ProcessorError::Panicked)),
    };
    wait(handle, &control, bound)?;
    tracing::info!("{}", stop_summary(&control));
    Ok(())
}

/// What a graceful stop leaves behind, for the last log line.
pub fn stop_summary(control: &Control) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "stopped: consumed {} records, produced {} SLA events and {} dead letters in {} commits; \
         everything consumed is committed",
        control.records_consumed.load(Relaxed),
        control.outputs_produced.load(Relaxed),
        control.dead_letters_produced.load(Relaxed),
        control.transactions_committed.load(Relaxed),
    )
}

/// Waits for the processor; after a shutdown request, at most `bound`.
pub fn wait(
    handle: processor::ProcessorHandle,
    control: &Control,
    bound: Duration,
) -> Result<(), RunError> {
    let mut asked: Option<Instant> = None;
    while !handle.is_finished() {
        if control.shutdown_requested() {
            let since = *asked.get_or_insert_with(Instant::now);
            if since.elapsed() > bound {
                return Err(RunError::ShutdownTimeout(bound));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.join()?;
    Ok(())
}

#[cfg(unix)]
async fn signals(control: Arc<Control>, policy: PolicySource) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => stop(&control, "SIGTERM"),
            _ = int.recv() => stop(&control, "SIGINT"),
            _ = hup.recv() => {
                let source = policy.clone();
                match tokio::task::spawn_blocking(move || load_policy(&source)).await {
                    Ok(Ok(set)) => {
                        tracing::info!(policy = %policy, "SIGHUP: policy valid; reloading");
                        control.reload_policy(set);
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: policy invalid; keeping the current one"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
                }
            }
        }
    }
}

#[cfg(not(unix))]
async fn signals(control: Arc<Control>, _policy: PolicySource) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop(&control, "Ctrl-C");
    }
}

fn stop(control: &Control, what: &str) {
    if control.shutdown_requested() {
        tracing::warn!("{what} again: exiting at once");
        std::process::exit(130);
    }
    tracing::info!("{what}: stopping (a second one exits at once)");
    control.request_shutdown();
}
