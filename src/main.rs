//! The `slawatch` command line. Errors become exit codes here (anyhow stays in this file).
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use slawatch::codec::Format;
use slawatch::core::policy::builtin::{PolicySource, DEFAULT_POLICY_TOML};
use slawatch::core::policy::parse::{check_policy, Severity};
use slawatch::core::policy::PolicySet;
use slawatch::core::time::{Dur, Ts};
use slawatch::replay::{replay, ReplayOptions};
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

#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    /// proto3 JSON, one event per line.
    Json,
    /// Length-delimited binary protobuf.
    Protobuf,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Policy file (TOML; default: the built-in default policy, `slawatch policy
    /// show-default`).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Input file, or - for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    /// Advance the watermark to this instant at the end of input (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Allowed lateness, e.g. 1s, 500ms.
    #[arg(long, default_value = "1s")]
    allowed_lateness: String,
    /// Print a what-if report (first-response p50/p95, met/breached per rule).
    #[arg(long)]
    summary: bool,
    #[arg(long, value_enum, default_value = "json")]
    format: InputFormat,
}

/// Usage errors exit 2 (clap does the same for malformed arguments).
struct Usage(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let policy = load_policy(&PolicySource::from_option(args.policy))?;
    let until = args
        .until
        .as_deref()
        .map(Ts::parse_rfc3339)
        .transpose()
        .map_err(|e| Usage(format!("--until: {e}")))?;
    let allowed_lateness = Dur::parse(&args.allowed_lateness)
        .map_err(|e| Usage(format!("--allowed-lateness: {e}")))?;
    let opts = ReplayOptions {
        format: match args.format {
            InputFormat::Json => Format::Json,
            InputFormat::Protobuf => Format::Protobuf,
        },
        until,
        allowed_lateness,
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
    let report = replay(policy, &opts, &mut input, &mut output, &mut stderr)?;
    drop(output);
    if opts.summary {
        let text = format!(
            "{} records, {} accepted, {} rejected, {} SLA events, {} unknown enum values\n\n{}",
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
    slawatch::runtime::demo::run(slawatch::runtime::demo::DemoOptions {
        speed: args.speed,
        duration: duration.to_std(),
        tickets_per_min: args.tickets_per_min,
        admin_listen: args.admin_listen,
        policy_file: args.policy,
        seed: args.seed,
    })?;
    Ok(ExitCode::SUCCESS)
}
