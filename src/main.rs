//! The `slawatch` command line. Errors become exit codes here (anyhow stays in this file).
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use slawatch::codec::Format;
use slawatch::core::policy::parse::{check_policy, Severity};
use slawatch::core::policy::PolicySet;
use slawatch::core::time::{Dur, Ts};
use slawatch::replay::{replay, ReplayOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "slawatch", version, about = "Real-time response-time SLA enforcement on Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replays conversation events through a policy and writes the SLA events.
    Replay(ReplayArgs),
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validates a policy file; prints each problem with its location and a fix hint.
    Check { file: PathBuf },
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
    /// Policy file (TOML).
    #[arg(long)]
    policy: PathBuf,
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
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => run_policy_check(&file),
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

/// Loads a policy file, printing its diagnostics; errors are usage errors.
fn load_policy(path: &Path) -> anyhow::Result<Arc<PolicySet>> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("cannot read policy file {}: {e}", path.display())))?;
    let name = path.display().to_string();
    let (set, diagnostics) = check_policy(&source, &name);
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
            "{} has {errors} error(s); run `slawatch policy check {}`",
            name, name
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
            println!("{}: {errors} error(s), {warnings} warning(s)", path.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(&args.policy)?;
    let until = args
        .until
        .as_deref()
        .map(Ts::parse_rfc3339)
        .transpose()
        .map_err(|e| Usage(format!("--until: {e}")))?;
    let allowed_lateness =
        Dur::parse(&args.allowed_lateness).map_err(|e| Usage(format!("--allowed-lateness: {e}")))?;
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
