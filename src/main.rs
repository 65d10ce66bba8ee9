//! The `slawatch` command line. Errors become exit codes here (anyhow stays in this file).
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use slawatch::core::engine::EngineConfig;
use slawatch::core::policy::builtin::{PolicySource, DEFAULT_POLICY_TOML};
use slawatch::core::policy::parse::{check_policy, Severity};
use slawatch::core::policy::PolicySet;
use slawatch::core::time::{Dur, Ts};
use slawatch::replay::{replay, ReplayOptions};
use slawatch::runtime::service::LogFormat;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "slawatch",
    version,
    about = "Real-time response-time SLA enforcement on Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format of `run` and `demo` on stderr: text, or json (one object per line, for log
    /// shippers). Default: $SLAWATCH_LOG_FORMAT, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Replays conversation events through a policy and writes the SLA events.
    Replay(ReplayArgs),
    /// Converts a real ticket event log (CSV, gzip or not) into ConversationEvent JSON lines
    /// for `replay`; exits 3 when malformed rows were skipped.
    Convert {
        /// Which log: uci (ServiceNow incident log) or helpdesk (Italian help desk).
        #[arg(long, value_parser = ["uci", "helpdesk"])]
        from: String,
        /// CSV file, gzip-compressed or not.
        #[arg(long)]
        input: PathBuf,
        /// Output file, or - for standard output.
        #[arg(long, default_value = "-")]
        output: String,
        /// Tenant of the events (default: the source's name).
        #[arg(long)]
        tenant: Option<String>,
        /// Keep the events the engine would drop (after 30 days idle or 7 days closed).
        #[arg(long)]
        keep_all: bool,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Runs the Kafka service: consumes conversation events, publishes SLA events.
    Run(RunArgs),
    /// Configuration files of `run`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// A self-contained demo: in-process mock Kafka, synthetic traffic, the real processor.
    Demo(DemoArgs),
    /// Replays the same history under two or more policies and writes report.json, an HTML
    /// report (index.html) and per-ticket pages to --out.
    Whatif(WhatifArgs),
    /// One ticket's audit trail under a policy: events in applied order, clocks, outputs.
    Explain(ExplainArgs),
    /// Publishes ConversationEvent JSON lines to a topic, keyed by ticket id (every line is
    /// checked first; a bad one is reported with its number and nothing is sent).
    Publish {
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "localhost:9092")]
        brokers: String,
        /// Input topic of `slawatch run`.
        #[arg(long, default_value = "conversations")]
        topic: String,
        /// JSON lines file, or - for standard input.
        #[arg(long, default_value = "-")]
        input: String,
    },
    /// Prints the SLA events of topics from their beginning, one readable line each (as the
    /// demo's feed), until --max records or --idle time without one, or Ctrl-C.
    Tail {
        /// Topics, e.g. sla.breaches sla.escalations.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "localhost:9092")]
        brokers: String,
        /// Print each record's JSON as it is.
        #[arg(long)]
        json: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this long without a record, e.g. 10s.
        #[arg(long)]
        idle: Option<String>,
    },
}

#[derive(clap::Args)]
struct WhatifArgs {
    /// ConversationEvent JSON lines (gzip when the name ends in .gz).
    #[arg(long)]
    input: PathBuf,
    /// A policy file; give it twice or more (the first is the baseline).
    #[arg(long, required = true, num_args = 1)]
    policy: Vec<PathBuf>,
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
    /// Only tickets opened at or after this instant (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only tickets opened before this instant; the replay ends here (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Allowed lateness of the engine, e.g. 1s.
    #[arg(long, default_value = "1s")]
    allowed_lateness: String,
    /// Most differing tickets listed in index.html and given a page (all are in report.json).
    #[arg(long, default_value_t = 200)]
    max_pages: usize,
    /// Pages for each policy's N tickets with the most breaches.
    #[arg(long, default_value_t = 10)]
    worst: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// ConversationEvent JSON lines (gzip when the name ends in .gz).
    #[arg(long)]
    input: PathBuf,
    /// Policy file (default: the built-in default policy).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The ticket's id.
    ticket_id: String,
    /// The ticket's tenant (needed when two tenants use the id).
    #[arg(long)]
    tenant: Option<String>,
    /// Advance the watermark to this instant (RFC 3339; default: the input's last instant).
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: ExplainFormat,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validates a config file (with the SLAWATCH_* environment applied) and its policy file;
    /// prints the effective settings.
    Check { file: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Config file (TOML); see deploy/slawatch.example.toml.
    #[arg(long)]
    config: PathBuf,
    /// Shadow mode: outputs, dead letters, internal topics and the group get the `shadow.`
    /// prefix, so replaying history through the live path can never page anyone.
    #[arg(long)]
    dry_run: bool,
    /// Ignore the state topic and rebuild state from the input topic's first offset
    /// (outputs suppressed up to the committed offset).
    #[arg(long)]
    rebuild_from_input: bool,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Event-time speed-up: simulated seconds per real second.
    #[arg(long, default_value_t = 120.0)]
    speed: f64,
    /// How long the demo runs (real time), e.g. 60s, 5m.
    #[arg(long, default_value = "60s")]
    duration: String,
    /// New tickets per simulated minute.
    #[arg(long, default_value_t = 15.0)]
    tickets_per_min: f64,
    /// Admin/metrics listen address (a free port is taken when busy).
    #[arg(long, default_value = "127.0.0.1:9898")]
    admin_listen: std::net::SocketAddr,
    /// Policy file (default: the built-in default policy, `slawatch policy show-default`).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Random seed of the traffic generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validates a policy file; prints each problem with its location and a fix hint.
    Check { file: PathBuf },
    /// Prints the built-in default policy (deploy/policies/default.toml as compiled in), a
    /// starting point for your own: `slawatch policy show-default > my-policy.toml`.
    ShowDefault,
}

/// `replay --format`: how records are framed (docs/replay.md "Input formats"); the
/// names and meanings of `codec::framing::InputFormat`, the `input_formats` of `run`.
#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    /// proto3 JSON lines, or length-delimited records each JSON, raw protobuf or Schema
    /// Registry framed (recognised per record, as `run` reads a topic without headers).
    Auto,
    /// proto3 JSON, one event per line (or length-delimited JSON values).
    Json,
    /// Length-delimited raw protobuf ConversationEvents.
    Protobuf,
    /// Length-delimited records framed by Confluent's protobuf serializer (magic byte,
    /// schema id, message indexes, protobuf).
    SchemaRegistryProtobuf,
    /// Length-delimited records framed by Confluent's JSON Schema serializer (magic byte,
    /// schema id, JSON).
    SchemaRegistryJson,
}

impl From<InputFormat> for slawatch::codec::framing::InputFormat {
    fn from(f: InputFormat) -> Self {
        use slawatch::codec::framing::InputFormat as F;
        match f {
            InputFormat::Auto => F::Auto,
            InputFormat::Json => F::Json,
            InputFormat::Protobuf => F::Protobuf,
            InputFormat::SchemaRegistryProtobuf => F::SchemaRegistryProtobuf,
            InputFormat::SchemaRegistryJson => F::SchemaRegistryJson,
        }
    }
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Policy file (TOML; default: the config's policy_file with --config, else the
    /// built-in default policy, `slawatch policy show-default`).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The config file of `slawatch run`: its [engine] limits and allowed_lateness_ms apply,
    /// so a replay reproduces a live run's decisions.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input file, or - for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    /// Advance the watermark to this instant at the end of input (RFC 3339); not before the
    /// input's last event.
    #[arg(long)]
    until: Option<String>,
    /// Allowed lateness, e.g. 1s, 500ms (default 1s, or the config's allowed_lateness_ms).
    #[arg(long)]
    allowed_lateness: Option<String>,
    /// Apply events in line order with the lateness rules, as a live run reads a topic,
    /// instead of in time order.
    #[arg(long)]
    as_stream: bool,
    /// Memory for sorting the input into time order; beyond it sorted runs spill to
    /// temporary files (e.g. 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB", conflicts_with = "as_stream")]
    sort_memory: String,
    /// Print a what-if report (first-response p50/p95, met/breached per rule).
    #[arg(long)]
    summary: bool,
    /// How the input's records are framed; `auto` tells JSON lines from length-delimited
    /// records, and recognises each record's framing.
    #[arg(long, value_enum, default_value = "auto")]
    format: InputFormat,
}

/// Usage errors exit 2 (clap does the same for malformed arguments).
struct Usage(String);

/// mimalloc rather than glibc's malloc: the engine and the runtime allocate and free many
/// small, short-lived blocks (outputs, records, state records) across librdkafka's threads;
/// measured on the Kafka drain bench it cuts CPU per event by ~19 % (docs/performance.md).
/// Cargo.toml builds it with `override`, so librdkafka's and OpenSSL's `malloc` are
/// mimalloc's too: glibc kept the fetched records' freed memory in per-thread arenas (one
/// 64 MiB arena stayed full after a drain), mimalloc returns it (see below).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of its option enum in versions 2 and
/// 3; default 10 ms in 2, 1000 ms in 3, the one libmimalloc-sys builds).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Freed pages go back to the system at once rather than after mimalloc's 1 s delay:
/// measured on the drain of a 1 M-event backlog by `slawatch run` in its own process, peak
/// RSS ~40 MiB lower at the same CPU per event (docs/performance.md); on the replay of a
/// real log 76 → 53 MiB. `MIMALLOC_PURGE_DELAY` in the environment still decides. Nothing
/// is set unless the option holds its documented default, so a mimalloc whose option
/// numbering differs is left alone.
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain reads and writes of a mimalloc option (an integer in mimalloc's option
    // table, which mimalloc itself reads and writes without synchronisation); no memory is
    // handed over.
    unsafe {
        if matches!(mi_option_get(MI_OPTION_PURGE_DELAY), 10 | 1000) {
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    let log_format = match cli.log_format {
        Some(f) => f,
        None => match std::env::var("SLAWATCH_LOG_FORMAT").ok().as_deref() {
            None | Some("") | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                eprintln!("error: SLAWATCH_LOG_FORMAT={other:?}: expected \"text\" or \"json\"");
                return ExitCode::from(2);
            }
        },
    };
    slawatch::runtime::service::set_log_format(log_format);
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Convert {
            from,
            input,
            output,
            tenant,
            keep_all,
        } => run_convert(&from, &input, &output, tenant, keep_all),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => run_policy_check(&file),
        Command::Policy {
            command: PolicyCommand::ShowDefault,
        } => {
            print!("{DEFAULT_POLICY_TOML}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_service(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => run_config_check(&file),
        Command::Demo(args) => run_demo(args),
        Command::Whatif(args) => run_whatif(args),
        Command::Explain(args) => run_explain(args),
        Command::Publish {
            brokers,
            topic,
            input,
        } => run_publish(&brokers, &topic, &input),
        Command::Tail {
            topics,
            brokers,
            json,
            max,
            idle,
        } => run_tail(topics, brokers, json, max, idle),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(Usage(msg)) = e.downcast_ref::<Usage>() {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// Loads a policy file (or the built-in default), printing its errors; errors are usage
/// errors.
fn load_policy(source: &PolicySource) -> anyhow::Result<Arc<PolicySet>> {
    if let PolicySource::File(path) = source {
        std::fs::metadata(path)
            .map_err(|e| Usage(format!("cannot read policy file {}: {e}", path.display())))?;
    }
    let (set, diagnostics) = source.check();
    let mut errors = 0;
    for d in &diagnostics {
        if d.severity == Severity::Error {
            errors += 1;
            eprintln!("{d}");
        }
    }
    match set {
        Some(set) if errors == 0 => Ok(Arc::new(set)),
        _ => Err(Usage(format!(
            "{source} has {errors} error(s); run `slawatch policy check {source}`"
        ))
        .into()),
    }
}

fn run_policy_check(path: &Path) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("cannot read policy file {}: {e}", path.display())))?;
    let (set, diagnostics) = check_policy(&source, &path.display().to_string());
    for d in &diagnostics {
        println!("{d}");
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    match set {
        Some(set) if errors == 0 => {
            let clocks: usize = set.policies.iter().map(|p| p.clocks.len()).sum();
            println!(
                "{}: ok — {} calendars, {} policies ({} clocks), {} overlays, {} checks, {} warning(s)",
                path.display(),
                set.calendars.len(),
                set.policies.len(),
                clocks,
                set.overlays.len(),
                set.checks.len(),
                warnings
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!(
                "{}: {errors} error(s), {warnings} warning(s)",
                path.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn run_convert(
    from: &str,
    input: &Path,
    output: &str,
    tenant: Option<String>,
    keep_all: bool,
) -> anyhow::Result<ExitCode> {
    use slawatch::convert::{self, ConvertOptions, Source};
    let source =
        Source::parse(from).ok_or_else(|| Usage(format!("--from: unknown source {from:?}")))?;
    let file = std::fs::File::open(input)
        .map_err(|e| Usage(format!("cannot open input {}: {e}", input.display())))?;
    let opts = ConvertOptions {
        tenant,
        keep_all,
        ..Default::default()
    };
    let conv = convert::convert(source, convert::decompress(file)?, &opts)
        .with_context(|| format!("converting {}", input.display()))?;
    let mut out: Box<dyn Write> = if output == "-" {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(output)
                .with_context(|| format!("cannot create output {output}"))?,
        ))
    };
    convert::write_json_lines(&conv.events, &mut out)?;
    out.flush()?;
    let s = &conv.stats;
    for e in &s.errors {
        eprintln!("{}: {e} (row skipped)", input.display());
    }
    if s.skipped > s.errors.len() as u64 {
        eprintln!(
            "... and {} more skipped rows",
            s.skipped - s.errors.len() as u64
        );
    }
    eprintln!(
        "{}: {} rows ({} skipped) -> {} cases, {} events; {} cases ended at an idle or post-close gap ({} events dropped); {} rows clamped to the opening",
        input.display(),
        s.rows,
        s.skipped,
        s.cases,
        s.events,
        s.truncated_cases,
        s.dropped_events,
        s.clamped_rows
    );
    Ok(if s.skipped > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use slawatch::replay::{parse_byte_size, Order, ReplayError};
    let config = args
        .config
        .as_deref()
        .map(|path| {
            slawatch::runtime::config::Config::load(path)
                .map_err(|e| Usage(format!("--config: {e}")))
        })
        .transpose()?;
    let mut engine = match &config {
        Some(c) => slawatch::runtime::processor::engine_config(c),
        None => EngineConfig::default(),
    };
    // Replay runs the surge detector in its one engine (`run` has a stage of its own).
    engine.surge = true;
    if let Some(l) = &args.allowed_lateness {
        engine.allowed_lateness =
            Dur::parse(l).map_err(|e| Usage(format!("--allowed-lateness: {e}")))?;
    }
    let source = match (args.policy, &config) {
        (Some(p), _) => PolicySource::File(p),
        (None, Some(c)) => c.policy_source(),
        (None, None) => PolicySource::BuiltIn,
    };
    let policy = load_policy(&source)?;
    let until = args
        .until
        .as_deref()
        .map(Ts::parse_rfc3339)
        .transpose()
        .map_err(|e| Usage(format!("--until: {e}")))?;
    let order = if args.as_stream {
        Order::Stream
    } else {
        Order::History {
            sort_memory: parse_byte_size(&args.sort_memory)
                .map_err(|e| Usage(format!("--sort-memory: {e}")))?,
        }
    };
    let opts = ReplayOptions {
        format: args.format.into(),
        until,
        engine,
        order,
        summary: args.summary,
    };
    let mut input: Box<dyn std::io::BufRead> = if args.input == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(&args.input)
            .map_err(|e| Usage(format!("cannot open input {}: {e}", args.input)))?;
        if args.input.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::GzDecoder::new(f)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, f))
        }
    };
    let to_stdout = args.output == "-";
    let mut output: Box<dyn Write> = if to_stdout {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&args.output)
                .with_context(|| format!("cannot create output {}", args.output))?,
        ))
    };
    let mut stderr = std::io::stderr().lock();
    let report = match replay(policy, &opts, &mut input, &mut output, &mut stderr) {
        Ok(r) => r,
        Err(e @ ReplayError::UntilBeforeData { .. }) => return Err(Usage(e.to_string()).into()),
        Err(ReplayError::Io(e)) => return Err(e.into()),
    };
    drop(output);
    eprintln!("{}", report.input_line(opts.order));
    if opts.summary {
        let never_opened = if report.never_opened_events > 0 {
            format!(
                ", {} events of {} tickets never opened",
                report.never_opened_events, report.never_opened_tickets
            )
        } else {
            String::new()
        };
        let text = format!(
            "{} records, {} accepted, {} rejected, {} SLA events, {} unknown enum values{never_opened}\n\n{}",
            report.lines,
            report.accepted,
            report.rejected,
            report.outputs,
            report.unknown_enums,
            report.summary.render()
        );
        if to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(if report.rejected > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_service(args: RunArgs) -> anyhow::Result<ExitCode> {
    use slawatch::runtime::service::{run, RunError, RunOptions};
    match run(RunOptions {
        config: args.config,
        dry_run: args.dry_run,
        rebuild_from_input: args.rebuild_from_input,
    }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ (RunError::Config(_) | RunError::Policy { .. })) => {
            Err(Usage(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn run_config_check(file: &Path) -> anyhow::Result<ExitCode> {
    match slawatch::runtime::service::config_check(file) {
        Ok(report) => {
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let duration = Dur::parse(&args.duration).map_err(|e| Usage(format!("--duration: {e}")))?;
    // NaN and non-positive values are both refused.
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(args.speed) || !positive(args.tickets_per_min) {
        return Err(Usage("--speed and --tickets-per-min must be positive".into()).into());
    }
    slawatch::demo::run(slawatch::demo::DemoOptions {
        speed: args.speed,
        duration: duration.to_std(),
        tickets_per_min: args.tickets_per_min,
        admin_listen: args.admin_listen,
        policy_file: args.policy,
        seed: args.seed,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_ts(flag: &str, v: Option<&str>) -> anyhow::Result<Option<Ts>> {
    Ok(v.map(Ts::parse_rfc3339)
        .transpose()
        .map_err(|e| Usage(format!("{flag}: {e}")))?)
}

/// Reads a history file as replay does (JSON lines or length-delimited records, `auto`;
/// gzip by name) with a progress bar on a terminal.
fn read_history(path: &Path) -> anyhow::Result<slawatch::whatif::trace::History> {
    let f = std::fs::File::open(path)
        .map_err(|e| Usage(format!("cannot open input {}: {e}", path.display())))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "reading");
    let gz = path.extension().is_some_and(|e| e == "gz");
    let counting = ProgressRead {
        inner: f,
        bar: bar.clone(),
    };
    let mut input: Box<dyn std::io::BufRead> = if gz {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(
            BufReader::new(counting),
        )))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, counting))
    };
    let h = slawatch::whatif::trace::History::read(&mut input)
        .with_context(|| format!("reading {}", path.display()))?;
    bar.finish_and_clear();
    Ok(h)
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>9} [{bar:40}] {percent:>3}% {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

struct ProgressRead<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}
impl<R: std::io::Read> std::io::Read for ProgressRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn run_whatif(args: WhatifArgs) -> anyhow::Result<ExitCode> {
    use slawatch::whatif::{self, PolicyInput, WhatifOptions};
    if args.policy.len() < 2 {
        return Err(Usage("whatif compares policies: give --policy at least twice".into()).into());
    }
    let from = parse_ts("--from", args.from.as_deref())?;
    let until = parse_ts("--until", args.until.as_deref())?;
    if let (Some(f), Some(u)) = (from, until) {
        if f >= u {
            return Err(Usage("--from must be before --until".into()).into());
        }
    }
    let allowed_lateness = Dur::parse(&args.allowed_lateness)
        .map_err(|e| Usage(format!("--allowed-lateness: {e}")))?;
    let mut policies = Vec::new();
    for (i, p) in args.policy.iter().enumerate() {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("policy{}", i + 1));
        let name = if policies.iter().any(|q: &PolicyInput| q.name == stem) {
            format!("{stem}#{}", i + 1)
        } else {
            stem
        };
        policies.push(PolicyInput {
            name,
            file: p.display().to_string(),
            set: load_policy(&PolicySource::File(p.clone()))?,
        });
    }
    let started = std::time::Instant::now();
    let mut history = read_history(&args.input)?;
    history.window(from, until);
    let opts = WhatifOptions {
        engine: slawatch::core::engine::EngineConfig {
            allowed_lateness,
            ..Default::default()
        },
        from,
        until,
        out: args.out.clone(),
        max_pages: args.max_pages,
        worst: args.worst,
    };
    let bar = progress_bar(
        history.events.len() as u64 * policies.len() as u64,
        "replaying",
    );
    let tick = || bar.inc(1);
    let w = whatif::run(
        &history,
        &args.input.display().to_string(),
        &policies,
        &opts,
        &tick,
    );
    bar.finish_and_clear();
    let written = whatif::write(&w, &history, &policies, &opts)
        .with_context(|| format!("writing {}", args.out.display()))?;
    for r in &history.rejected {
        eprintln!("line {}: {}", r.line, r.reason);
    }
    eprintln!(
        "{} events ({} rejected lines, {} out of order), {} tickets, {} policies in {:.2} s; {} differing tickets; wrote {}/report.json, index.html and {} ticket pages",
        history.events.len(),
        history.rejected.len(),
        history.out_of_order,
        w.report.input.tickets,
        policies.len(),
        started.elapsed().as_secs_f64(),
        w.report.differing_tickets.len(),
        args.out.display(),
        written.pages
    );
    Ok(if history.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn run_explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let set = load_policy(&PolicySource::from_option(args.policy.clone()))?;
    let until = parse_ts("--until", args.until.as_deref())?;
    let history = read_history(&args.input)?;
    let tenant = match args.tenant {
        Some(t) => t,
        None => {
            let tenants = slawatch::explain::tenants_of(&history, &args.ticket_id);
            match tenants.len() {
                0 => String::new(),
                1 => tenants[0].clone(),
                _ => {
                    return Err(Usage(format!(
                        "ticket {} exists under tenants {}: give --tenant",
                        args.ticket_id,
                        tenants.join(", ")
                    ))
                    .into())
                }
            }
        }
    };
    let (events, rejected) = slawatch::explain::ticket_history(&history, &tenant, &args.ticket_id);
    if events.is_empty() && rejected.is_empty() {
        return Err(Usage(format!(
            "no event of ticket {}{} in {}",
            args.ticket_id,
            if tenant.is_empty() {
                String::new()
            } else {
                format!(" (tenant {tenant})")
            },
            args.input.display()
        ))
        .into());
    }
    let until = until.or_else(|| history.last_instant()).unwrap_or(Ts(0));
    let name = args
        .policy
        .as_ref()
        .map_or("the built-in default policy".to_string(), |p| {
            p.display().to_string()
        });
    let subject = slawatch::explain::Subject {
        tenant: &tenant,
        id: &args.ticket_id,
        events: &events,
        rejected,
    };
    let t = slawatch::explain::explain(
        &name,
        set,
        &slawatch::core::engine::EngineConfig::default(),
        subject,
        until,
    );
    match args.format {
        ExplainFormat::Text => print!("{}", t.text()),
        ExplainFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&t.view()).context("encoding the timeline")?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_publish(brokers: &str, topic: &str, input: &str) -> anyhow::Result<ExitCode> {
    use slawatch::demo::quickstart::publish;
    let timeout = std::time::Duration::from_secs(30);
    let n = if input == "-" {
        publish(brokers, topic, std::io::stdin().lock(), "stdin", timeout)?
    } else {
        let f = std::fs::File::open(input)
            .map_err(|e| Usage(format!("cannot open input {input}: {e}")))?;
        publish(brokers, topic, BufReader::new(f), input, timeout)?
    };
    eprintln!("published {n} events to {topic}");
    Ok(ExitCode::SUCCESS)
}

fn run_tail(
    topics: Vec<String>,
    brokers: String,
    json: bool,
    max: Option<u64>,
    idle: Option<String>,
) -> anyhow::Result<ExitCode> {
    use slawatch::demo::quickstart::{tail, TailOptions};
    let idle = idle
        .as_deref()
        .map(Dur::parse)
        .transpose()
        .map_err(|e| Usage(format!("--idle: {e}")))?
        .map(Dur::to_std);
    let opts = TailOptions {
        brokers,
        topics,
        json,
        max,
        idle,
    };
    match tail(&opts, &mut std::io::stdout().lock()) {
        // `slawatch tail … | head`: the reader has what it wanted.
        Err(slawatch::demo::quickstart::ClientError::Write(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        r => r.map(|_| ExitCode::SUCCESS).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the option number: on a mimalloc whose enum moved, option 15 would not hold
    /// purge_delay's default and nothing would change (the RSS saving silently lost).
    #[test]
    fn freed_memory_is_purged_at_once() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: a read of a mimalloc option.
        let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(matches!(before, 10 | 1000 | 0), "purge_delay read {before}");
        purge_freed_memory_at_once();
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 0);
    }
}
