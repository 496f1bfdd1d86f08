//! The `ferrops` binary: parses the command line, sets up role-prefixed logging, resolves the
//! configuration and dispatches to the roles, the local launcher, the benchmarks and the demo.
//!
//! The command line sits at the roof: only this file uses [`cli`], turning its flags into
//! [`Overrides`] for the configuration and into the plain options each module below takes
//! ([`roles`], [`launch`], [`jobs`], [`bench`], [`apps`], [`demo`]).
//!
//! Exit codes: 0 on success, 1 for errors (printed as `error: ...` with their causes), 2 for usage
//! errors (from clap), 3 ([`launch::EXIT_SHUT_DOWN`]) for a node that stopped because the
//! scheduler shut the job down after another node failed; `ferrops local` exits with the code of
//! the child that failed first.

// Unsafe code only in the modules marked `#[allow(unsafe_code)]` below, each saying why.
#![deny(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod apps;
mod bench;
mod cli;
mod ctl;
mod demo;
mod faults;
mod jobs;
mod launch;
mod roles;

use anyhow::{anyhow, Context, Result};
use clap::{CommandFactory, Parser};
use ferrops::config::{self, ConfigInput, Overrides, Role};
// The library's internals, under the names the binary's modules use (`crate::data`, ...).
use ferrops::internal::{data, lda, logistic, synth, trace};
use ferrops_engine::memory::SegmentOptions;

use cli::{
    BenchCommand, Cli, Command, CtlCommand, DataCommand, FaultsArgs, GenArgs, KernelsArgs,
    LdaCorpusArgs, LocalArgs, PatchesArgs, PlotArgs, ServerArgs, SlurmArgs, TrainCommand,
    WorkerArgs,
};
use launch::{LocalSpec, ANNOUNCE_PREFIX};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = config::process_env();
    let label = match env.get(launch::ENV_LOG_LABEL) {
        Some(label) => label.clone(),
        None => log_label(&cli, &env).to_string(),
    };
    init_logging(label);
    match run(cli, &env) {
        Ok(code) => exit_code(code),
        Err(error) => {
            report(&error);
            if shut_down_by_the_job(&error) {
                exit_code(launch::EXIT_SHUT_DOWN)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli, env: &config::EnvMap) -> Result<i32> {
    match cli.command {
        Some(Command::Scheduler(args)) => {
            let recover = args
                .recover
                .then(|| Duration::from_millis(args.recover_wait));
            run_scheduler(&args.overrides(), args.restore, recover)
        }
        Some(Command::Server(args)) => run_server(&args),
        Some(Command::Worker(args)) => run_worker(&args),
        Some(Command::Local(args)) => launch::run_local(&local_spec(args)?),
        Some(Command::Slurm(args)) => launch::slurm::run_slurm(&slurm_options(args)?),
        Some(Command::Ctl(CtlCommand::Status(args))) => ctl::status(&args),
        Some(Command::Ctl(CtlCommand::Checkpoint(args))) => ctl::checkpoint(&args),
        Some(Command::Ctl(CtlCommand::Drain(args))) => ctl::drain(&args),
        Some(Command::Faults(args)) => faults::run(&faults_options(args)?),
        Some(Command::Bench(BenchCommand::PushPull(args))) => {
            bench::push_pull::run(&args.options()).map(|()| 0)
        }
        Some(Command::Bench(BenchCommand::Kernels(args))) => run_bench_kernels(&args),
        Some(Command::Bench(BenchCommand::Sim(args))) => {
            bench::sim::run(&args.options()).map(|()| 0)
        }
        Some(Command::Bench(BenchCommand::Checkpoint(args))) => {
            bench::checkpoint::run(&args.options()).map(|()| 0)
        }
        Some(Command::Bench(BenchCommand::Reducers(args))) => {
            bench::reducers::run(&args.options()).map(|()| 0)
        }
        Some(Command::Demo(args)) => demo::run(&args.options()).map(|()| 0),
        Some(Command::Data(DataCommand::Gen(args))) => run_data_gen(&args),
        Some(Command::Data(DataCommand::Info(args))) => {
            println!(
                "{}",
                data::info::summarize(&args.file, args.max_dim.bound())?
            );
            Ok(0)
        }
        Some(Command::Train(TrainCommand::L1lr(args))) => {
            apps::train::l1lr(&args)?;
            Ok(0)
        }
        Some(Command::Data(DataCommand::Patches(args))) => run_data_patches(&args),
        Some(Command::Data(DataCommand::LdaCorpus(args))) => run_data_lda_corpus(&args),
        Some(Command::Train(TrainCommand::Lda(args))) => {
            apps::lda::lda(&args)?;
            Ok(0)
        }
        Some(Command::Train(TrainCommand::Rica(args))) => {
            apps::train::rica(&args)?;
            Ok(0)
        }
        Some(Command::Plot(args)) => run_plot(&args),
        None => run_role_from_env(env),
    }
}

/// A bare `ferrops`: run the role named by FERROPS_ROLE, like ps-lite's DMLC_ROLE.
fn run_role_from_env(env: &config::EnvMap) -> Result<i32> {
    match config::role_from_env(env)? {
        Some(Role::Scheduler) => run_scheduler(&Overrides::default(), None, None),
        Some(Role::Server) => run_server(&ServerArgs::default()),
        Some(Role::Worker) => {
            let job = env
                .get("FERROPS_JOB")
                .filter(|j| !j.is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "FERROPS_ROLE=worker needs a job: set FERROPS_JOB or run \
                     `ferrops worker --job NAME`"
                    )
                })?;
            run_worker(&WorkerArgs {
                job: job.clone(),
                ..WorkerArgs::default()
            })
        }
        Some(Role::Ctl) => Err(anyhow!(
            "FERROPS_ROLE names the role of a job's process; run `ferrops ctl` for ctl"
        )),
        None => Cli::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "no subcommand given and FERROPS_ROLE is not set",
            )
            .exit(),
    }
}

fn run_scheduler(
    overrides: &Overrides,
    restore: Option<PathBuf>,
    recover: Option<Duration>,
) -> Result<i32> {
    let input = ConfigInput::gather(overrides)?;
    let mut cfg = match recover {
        Some(wait) => input.recovering_scheduler(wait),
        None => input.scheduler(),
    }
    .context("configuring the scheduler")?;
    cfg.restore = restore.map(|dir| std::path::absolute(&dir).unwrap_or(dir));
    roles::run_scheduler(cfg, announce_scheduler)?;
    Ok(0)
}

/// Prints the one stdout line launchers wait for.
fn announce_scheduler(addr: SocketAddr) {
    let mut stdout = io::stdout().lock();
    let written = writeln!(stdout, "{ANNOUNCE_PREFIX}{addr}").and_then(|()| stdout.flush());
    if let Err(error) = written {
        tracing::error!("cannot announce the scheduler address {addr} on stdout: {error}");
    }
}

fn run_server(args: &ServerArgs) -> Result<i32> {
    if args.print_topology {
        return Ok(print_topology());
    }
    let mut cfg = ConfigInput::gather(&args.overrides())?
        .server()
        .context("configuring the server")?;
    // SIGTERM asks the server to leave: its ranges move to other servers, then it exits 0.
    let leave = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGTERM, leave.clone())
        .context("installing the SIGTERM handler")?;
    cfg.leave = Some(leave);
    roles::run_server(cfg)?;
    Ok(0)
}

/// `ferrops server --print-topology`: the engine's memory/NUMA preflight for the default segment
/// options; exit code 1 when it found problems.
fn print_topology() -> i32 {
    let report = ferrops_engine::memory::preflight(&SegmentOptions::default(), 0);
    println!("{report}");
    if report.is_ok() {
        0
    } else {
        1
    }
}

fn run_worker(args: &WorkerArgs) -> Result<i32> {
    let cfg = ConfigInput::gather(&args.cluster.overrides())?
        .worker()
        .context("configuring the worker")?;
    roles::run_worker_job(&cfg, &args.job, &args.job_args)
        .with_context(|| format!("worker job `{}`", args.job))?;
    Ok(0)
}

fn run_data_gen(args: &GenArgs) -> Result<i32> {
    let spec = data::gen::GenSpec {
        rows: args.rows,
        features: args.features,
        nnz_per_row: args.nnz_per_row,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let nnz = write_file(&args.out, |out| data::gen::write(&spec, out))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {}: {} rows, {} nonzeros in {:.2} s ({:.1} M nonzeros/s)",
        args.out.display(),
        args.rows,
        nnz,
        secs,
        nnz as f64 / secs.max(1e-9) / 1e6
    );
    Ok(0)
}

/// Creates `path` and fills it through a buffered writer, flushed before returning; errors
/// name the file and whether creating or writing it failed.
fn write_file<T>(
    path: &std::path::Path,
    fill: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<T>,
) -> Result<T> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let filled = fill(&mut out).and_then(|t| out.flush().map(|()| t));
    filled.with_context(|| format!("writing {}", path.display()))
}

fn run_data_patches(args: &PatchesArgs) -> Result<i32> {
    use data::patches;
    let images = args
        .images
        .iter()
        .map(|p| {
            patches::read_image(p, args.max_pixels).map(|g| patches::downscale(&g, args.downscale))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut cut = patches::cut(&images, args.size, args.count, args.seed);
    anyhow::ensure!(
        !cut.is_empty(),
        "no image is at least {0}×{0} pixels",
        args.size
    );
    patches::zca_whiten(&mut cut, args.epsilon);
    write_file(&args.out, |out| patches::write(&cut, out))?;
    println!(
        "wrote {}: {} whitened {}×{} patches",
        args.out.display(),
        cut.len(),
        args.size,
        args.size
    );
    Ok(0)
}

fn run_data_lda_corpus(args: &LdaCorpusArgs) -> Result<i32> {
    use lda::corpus;
    let mut docs = Vec::new();
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        docs.extend(corpus::paragraphs(
            &String::from_utf8_lossy(&bytes),
            args.min_chars,
        ));
    }
    let opts = corpus::TextOptions {
        min_docs: args.min_docs,
        min_doc_tokens: args.min_doc_tokens,
        ..corpus::TextOptions::default()
    };
    let made = corpus::from_text(&docs, &opts);
    anyhow::ensure!(
        !made.docs.is_empty() && !made.vocab.is_empty(),
        "no document kept: {} paragraphs, none with {} tokens of words in {} documents or more",
        docs.len(),
        args.min_doc_tokens,
        args.min_docs
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let vocab_path = args.out.join("vocab.txt");
    write_file(&args.out.join("docword.txt"), |docword| {
        let mut vocab = io::BufWriter::new(std::fs::File::create(&vocab_path)?);
        corpus::write_uci(&made, docword, &mut vocab)
    })?;
    println!(
        "wrote {}: {} documents, {} words, {} tokens",
        args.out.display(),
        made.docs.len(),
        made.vocab.len(),
        made.tokens()
    );
    Ok(0)
}

fn run_plot(args: &PlotArgs) -> Result<i32> {
    let traces = args
        .traces
        .iter()
        .map(|p| {
            trace::read(p)
                .map(|t| (p.clone(), t))
                .with_context(|| format!("reading {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    if args.idle_against_tau {
        apps::train::plot_idle_against_tau(&args.out, &traces)?;
    } else {
        let named: Vec<_> = traces
            .into_iter()
            .map(|(p, t)| {
                let label = p.file_stem().unwrap_or(p.as_os_str()).to_string_lossy();
                (label.into_owned(), t)
            })
            .collect();
        apps::train::plot_objective(&args.out, &named)?;
    }
    println!("wrote {}", args.out.display());
    Ok(0)
}

fn run_bench_kernels(args: &KernelsArgs) -> Result<i32> {
    bench::kernels::run(args.elements, args.json)?;
    Ok(0)
}

fn local_spec(args: LocalArgs) -> Result<LocalSpec> {
    let mut spec = LocalSpec::new(args.servers, args.workers)?;
    spec.command = args.run.command;
    spec.prefix_output = !args.no_prefix;
    spec.metrics = args.metrics;
    spec.restore = args
        .restore
        .map(|dir| std::path::absolute(&dir).unwrap_or(dir));
    spec.replication = match args.replication {
        Some(r) => Some(r),
        // The children would take it from the environment: the launcher must know it too.
        None => match std::env::var(ferrops::config::ENV_REPLICATION) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().parse().map_err(|_| {
                anyhow!(
                    "invalid value `{text}` from environment variable {}: not a whole number",
                    ferrops::config::ENV_REPLICATION
                )
            })?),
            _ => None,
        },
    };
    spec.replication_mode = args.replication_mode;
    spec.startup_timeout = args.startup_timeout;
    spec.shutdown_grace = args.shutdown_grace;
    if let Some(exe) = args.run.node_exe {
        spec.node_exe = exe;
    }
    Ok(spec)
}

fn faults_options(args: FaultsArgs) -> Result<faults::FaultsOptions> {
    let (heartbeat_interval, heartbeat_timeout) = args.heartbeats();
    anyhow::ensure!(
        heartbeat_timeout >= 2 * heartbeat_interval,
        "--heartbeat-timeout-ms must be at least twice --heartbeat-interval-ms"
    );
    anyhow::ensure!(
        args.replication <= args.servers,
        "--replication {} needs at least {} servers, not {}",
        args.replication,
        args.replication,
        args.servers
    );
    let shape = faults::JobShape {
        servers: args.servers,
        spares: args.spares,
        workers: args.workers,
        replication: args.replication,
        clocks: args.clocks,
        keys: args.keys,
        checkpoint_every: (args.checkpoint_every > 0).then_some(args.checkpoint_every),
        heartbeat_interval,
        heartbeat_timeout,
    };
    anyhow::ensure!(
        shape.slots() <= 200,
        "at most 200 nodes: the servers, spares and workers take one address each"
    );
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut kinds: Vec<faults::FaultKind> = args.kinds.iter().flatten().copied().collect();
    kinds.sort();
    kinds.dedup();
    let node_exe = match args.node_exe {
        Some(exe) => exe,
        None => std::env::current_exe().context("finding the ferrops executable")?,
    };
    Ok(faults::FaultsOptions {
        shape,
        kinds,
        hold: args.hold,
        every: Duration::from_secs_f64(args.every),
        faults_per_job: args.faults_per_job.unwrap_or(usize::MAX),
        seed,
        until: match (args.minutes, args.jobs) {
            (Some(minutes), _) => faults::Until::Minutes(minutes),
            (None, jobs) => faults::Until::Jobs(jobs.unwrap_or(1)),
        },
        netem: args.netem,
        logs: args.logs.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ferrops-faults-{}", std::process::id()))
        }),
        keep_logs: args.keep_logs,
        job_timeout: Duration::from_secs_f64(args.job_timeout),
        node_exe,
    })
}

fn slurm_options(args: SlurmArgs) -> Result<launch::slurm::SlurmOptions> {
    let node_exe = match args.run.node_exe {
        Some(exe) => exe,
        None => std::env::current_exe().context("finding the ferrops executable")?,
    };
    Ok(launch::slurm::SlurmOptions {
        servers: args.servers,
        port: args.port,
        secret_file: args.secret_file,
        shutdown_grace: seconds(args.shutdown_grace, "--shutdown-grace")?,
        command: args.run.command,
        node_exe,
    })
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow!("invalid value `{value}` for {flag}: expected seconds >= 0"))
}

/// What log lines are prefixed with: the role (or subcommand) this process runs.
fn log_label(cli: &Cli, env: &config::EnvMap) -> &'static str {
    match &cli.command {
        Some(Command::Scheduler(_)) => "scheduler",
        Some(Command::Server(_)) => "server",
        Some(Command::Worker(_)) => "worker",
        Some(Command::Local(_)) => "local",
        Some(Command::Slurm(_)) => "slurm",
        Some(Command::Ctl(_)) => "ctl",
        Some(Command::Faults(_)) => "faults",
        Some(Command::Bench(_)) => "bench",
        Some(Command::Demo(_)) => "demo",
        Some(Command::Data(_)) => "data",
        Some(Command::Train(_)) => "train",
        Some(Command::Plot(_)) => "plot",
        None => match config::role_from_env(env) {
            Ok(Some(role)) => role.name(),
            _ => "ferrops",
        },
    }
}

/// Logs to stderr, filtered by FERROPS_LOG (else RUST_LOG, else `info`), each line prefixed with
/// `[label]` so the interleaved logs of a cluster stay readable. `FERROPS_LOG_LABEL` overrides the
/// label; `ferrops local` sets it empty because it prefixes its children's lines itself.
fn init_logging(label: String) {
    let filter = EnvFilter::try_from_env("FERROPS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .event_format(Prefixed {
            label,
            inner: tracing_subscriber::fmt::format(),
        })
        .init();
}

/// An event format that writes `[label] ` (unless the label is empty) before the wrapped
/// format's output.
struct Prefixed<F> {
    label: String,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if !self.label.is_empty() {
            write!(writer, "[{}] ", self.label)?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// Prints `error: ...` and each cause on its own line.
fn report(error: &anyhow::Error) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}

/// Whether `error` is the scheduler's shutdown of a failed job (which names the node that failed).
fn shut_down_by_the_job(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ferrops_engine::EngineError>(),
            Some(ferrops_engine::EngineError::Shutdown(_))
        )
    })
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
