//! The `herald` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use herald::config::Config;
use herald::server::{Server, Shared};

/// Herald: an HTTP/2 server whose pushes and early hints are decided per
/// request by a sandboxed WebAssembly policy.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a directory over HTTP/2, with hints from a policy.
    ///
    /// Flags override the config file. Example:
    ///   herald serve --listen 127.0.0.1:8443 --root site/ --policy page_map.wasm
    Serve(ServeArgs),
    /// Benchmarks against a live server (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A/B experiments.
    #[command(subcommand)]
    Ab(AbCommand),
    /// Tools for policy authors: check, run and test a policy component.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Create a ready-to-build policy project (with a unit test and samples).
    New {
        /// The project's name, e.g. `my-policy`.
        name: String,
        /// The language of the project.
        #[arg(long, value_enum, default_value = "rust")]
        lang: herald::template::Lang,
        /// Where to create it (default: here).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Check that a component is a Herald policy; print what it exports and
    /// imports, or one line per problem.
    Check {
        /// The component (.wasm).
        policy: PathBuf,
        /// A herald.toml whose [policy] limits to use.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run a policy on requests and print each one's hints, with the call's
    /// time, instructions executed and peak memory.
    ///
    /// Example: herald policy run page_map.wasm -c herald.toml -r 'GET /' -H 'cookie: seen=1'
    Run {
        /// The component (.wasm).
        policy: PathBuf,
        /// A request, `METHOD /path?query`; repeat for several.
        #[arg(long, short = 'r', value_name = "REQUEST")]
        request: Vec<String>,
        /// A request header `name: value` for every --request; repeat for several.
        #[arg(long = "header", short = 'H', value_name = "HEADER")]
        headers: Vec<String>,
        /// Requests from a JSON-lines file, one per line:
        /// {"request": "GET /", "headers": {"cookie": "a=b"}, "push": false}
        #[arg(long, value_name = "FILE.jsonl")]
        requests: Option<PathBuf>,
        /// The client does not accept push (as every browser).
        #[arg(long)]
        no_push: bool,
        /// A herald.toml whose [policy.config] and limits to use.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the policy's sample requests (by default NAME.samples.toml beside
    /// it, the same file hot swaps are checked against) and exit non-zero on
    /// a mismatch. Each sample: `request = "GET /"`, optional `headers`,
    /// `push`, `variant`, and `expect = ["/hinted/path", ...]`.
    Test {
        /// The component (.wasm).
        policy: PathBuf,
        /// The samples file.
        #[arg(long, value_name = "FILE")]
        samples: Option<PathBuf>,
        /// A herald.toml whose [policy.config] and limits to use.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum AbCommand {
    /// Print each variant side by side with rates and how confident the
    /// difference from the control is (from a running Herald's admin listener).
    Report {
        /// The admin listener, e.g. http://127.0.0.1:9901.
        #[arg(long, value_name = "URL")]
        admin: String,
        /// The admin bearer token, if one is configured.
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Head-of-line: HTML time-to-first-byte while a large low-urgency push is
    /// in flight, with TCP_NOTSENT_LOWAT off and on, through a delaying proxy.
    Hol(HolArgs),
    /// Page loads with push accepted, as a first-visit browser: pages/s,
    /// time to the last critical asset, pushed bytes used and wasted. Works
    /// against any HTTPS HTTP/2 server, optionally through a delaying proxy.
    Pageload(PageloadArgs),
    /// Policy decision cost in process, on fresh and on reused instances,
    /// against a minimal policy measured in the same run.
    Policy {
        /// Calls measured per policy.
        #[arg(long, default_value_t = 30000)]
        calls: usize,
        /// A policy measured, in fresh and in reuse isolation (repeat the
        /// option for several: e.g. the reference policy in each language).
        #[arg(
            long,
            default_value = "target/guests/wasm32-wasip2/guest/page_map.wasm"
        )]
        policy: Vec<PathBuf>,
        /// The minimal baseline policy.
        #[arg(
            long,
            default_value = "target/guests/wasm32-wasip2/guest/misbehave.wasm"
        )]
        baseline: PathBuf,
    },
    /// One request's policy path (request built, policy called, answer
    /// planned) repeated on one thread, for an instruction count under
    /// `valgrind --tool=callgrind` (see `scripts/callgrind`).
    Instructions {
        /// The policy component.
        #[arg(
            long,
            default_value = "target/guests/wasm32-wasip2/guest/page_map.wasm"
        )]
        policy: PathBuf,
        /// Times the path runs (after three warm-up runs).
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// `fresh` or `reuse`.
        #[arg(long, default_value = "fresh", value_parser = parse_isolation)]
        isolation: herald::policy::Isolation,
        /// Show the policy only the headers and cookies the reference
        /// policy reads (`[policy] request_headers`, `request_cookies`).
        #[arg(long)]
        shown_as_read: bool,
        /// Show the policy what it declares it reads (its `reads` export),
        /// as `herald serve` does; otherwise every header and cookie.
        #[arg(long, conflicts_with = "shown_as_read")]
        as_declared: bool,
        /// Put a `[policy.cache]` in front (1,024 entries): every run after
        /// the first is a hit, so this counts a cached request's policy
        /// path (its key, keyed as shown, and the lookup).
        #[arg(long, conflicts_with = "shown_as_read")]
        cached: bool,
    },
    /// Swap latency: from a policy file landing (or an admin upload) to the
    /// new version answering.
    Swap {
        /// Swaps measured per path.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// The watcher's polling interval (policy.watch_interval_ms).
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
        /// First component (answers `/` from its config).
        #[arg(
            long,
            default_value = "target/guests/wasm32-wasip2/guest/page_map.wasm"
        )]
        a: PathBuf,
        /// Second component (answers `/` differently).
        #[arg(
            long,
            default_value = "target/guests/wasm32-wasip2/guest/misbehave.wasm"
        )]
        b: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct PageloadArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: std::net::SocketAddr,
    /// Server name (SNI) and `:authority`.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// The page's path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Page loads in all (each on a new connection).
    #[arg(long, default_value_t = 200)]
    pages: usize,
    /// Page loads at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Round-trip time a delaying proxy adds (0: direct).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// Server-to-client bandwidth of that proxy in Mbit/s (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    mbit: f64,
}

#[derive(clap::Args, Debug)]
struct HolArgs {
    /// Round-trip time the proxy adds.
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// Server-to-client bandwidth in Mbit/s.
    #[arg(long, default_value_t = 20.0)]
    mbit: f64,
    /// Size of the pushed file in MB.
    #[arg(long, default_value_t = 5.0)]
    push_mb: f64,
    /// Measurements per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// TCP_NOTSENT_LOWAT value for the "on" row.
    #[arg(long, default_value_t = 16384)]
    lowat: u32,
    /// The page-map policy component (built by scripts/build-policies).
    #[arg(
        long,
        default_value = "target/guests/wasm32-wasip2/guest/page_map.wasm"
    )]
    policy: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Config file (TOML) for everything else: TLS, policy config, limits, h2
    /// settings. Unknown keys are errors.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// TLS listen address (ALPN h2); repeat for several. Replaces
    /// `server.listen`. Port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Cleartext HTTP/2 (prior knowledge) listen address; repeat for several.
    /// Replaces `server.listen_h2c`.
    #[arg(long, value_name = "ADDR")]
    h2c: Vec<SocketAddr>,
    /// Serve only the cleartext listeners given with --h2c (no TLS listener).
    #[arg(long)]
    no_tls: bool,
    /// Document root. Replaces `origin.root`.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Policy component (.wasm). Replaces `policy.path`.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// TLS certificate chain (PEM). Replaces `tls.cert`.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM). Replaces `tls.key`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Print every HTTP/2 frame sent and received, per connection.
    #[arg(long)]
    trace_frames: bool,
    /// Log filter, e.g. `info`, `debug`, `herald=debug`. Default: $RUST_LOG or `info`.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(BenchCommand::Hol(args)) => bench_hol(args),
        Command::Bench(BenchCommand::Pageload(a)) => {
            let opts = herald::bench::pageload::Options {
                addr: a.addr,
                path: a.path,
                host: a.host,
                pages: a.pages.max(1),
                concurrency: a.concurrency.max(1),
                rtt: Duration::from_millis(a.rtt_ms),
                mbit: a.mbit,
            };
            run_bench(async move { herald::bench::pageload::report(&opts).await })
        }
        Command::Bench(BenchCommand::Policy {
            calls,
            policy,
            baseline,
        }) => {
            let opts = herald::bench::decide::Options {
                calls: calls.max(30),
                policies: policy,
                baseline,
            };
            // On a worker, as `herald serve` calls policies: what a call
            // leaves to run (an instance's teardown) runs on this thread
            // when the measuring task yields, not beside it on another core.
            run_bench(async move {
                tokio::spawn(async move { herald::bench::decide::report(&opts).await })
                    .await
                    .map_err(anyhow::Error::from)?
            })
        }
        Command::Bench(BenchCommand::Instructions {
            policy,
            calls,
            isolation,
            shown_as_read,
            as_declared,
            cached,
        }) => {
            let opts = herald::bench::instructions::Options {
                policy,
                calls,
                isolation,
                shown_as_read,
                as_declared,
                cached,
            };
            match herald::bench::instructions::run(&opts) {
                Ok(planned) => {
                    println!("{calls} calls, {planned} hints planned");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald bench instructions: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(BenchCommand::Swap {
            rounds,
            interval_ms,
            a,
            b,
        }) => {
            let opts = herald::bench::swap::Options {
                rounds: rounds.max(1),
                interval_ms: interval_ms.max(1),
                a,
                b,
            };
            run_bench(herald::bench::swap::report(&opts))
        }
        Command::Ab(AbCommand::Report { admin, token }) => ab_report(&admin, token.as_deref()),
        Command::Policy(command) => policy_tool(command),
    }
}

fn run_bench(report: impl std::future::Future<Output = anyhow::Result<String>>) -> ExitCode {
    // Quiet unless RUST_LOG asks: the report goes to stdout.
    if std::env::var_os("RUST_LOG").is_some() {
        init_logging(None);
    } else {
        init_logging(Some("warn"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(report) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench_hol(args: HolArgs) -> ExitCode {
    let opts = herald::bench::hol::Options {
        rtt: Duration::from_millis(args.rtt_ms),
        mbit: args.mbit,
        push_bytes: (args.push_mb * 1e6) as usize,
        runs: args.runs.max(1),
        policy: args.policy,
        lowat: args.lowat,
    };
    run_bench(async move { herald::bench::hol::report(&opts).await })
}

fn policy_tool(command: PolicyCommand) -> ExitCode {
    init_logging(Some("warn"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fail = |code: u8, message: &str| {
        eprintln!("{}", message.trim_end());
        ExitCode::from(code)
    };
    match command {
        PolicyCommand::New { name, lang, dir } => match herald::template::create(&dir, &name, lang)
        {
            Ok(files) => {
                for f in files {
                    println!("created {}", f.display());
                }
                println!(
                    "next: cd {} && {}",
                    dir.join(&name).display(),
                    lang.next_steps()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, &format!("herald: {e}")),
        },
        PolicyCommand::Check { policy, config } => {
            let config = match herald::tools::load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(2, &format!("herald: {e}")),
            };
            match rt.block_on(herald::tools::check(&policy, &config)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(lines) => fail(1, &lines.join("\n")),
            }
        }
        PolicyCommand::Run {
            policy,
            request,
            headers,
            requests,
            no_push,
            config,
        } => {
            let config = match herald::tools::load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(2, &format!("herald: {e}")),
            };
            let mut samples = Vec::new();
            for r in &request {
                match herald::tools::sample_from_args(r, &headers, !no_push) {
                    Ok(s) => samples.push(s),
                    Err(e) => return fail(2, &format!("herald: {e}")),
                }
            }
            if let Some(path) = &requests {
                match herald::tools::samples_from_jsonl(path) {
                    Ok(more) => samples.extend(more),
                    Err(e) => return fail(2, &format!("herald: {e}")),
                }
            }
            if samples.is_empty() {
                return fail(2, "herald: give at least one --request or --requests FILE");
            }
            rt.block_on(async {
                let (_engine, loaded) = match herald::tools::load(&policy, &config, true).await {
                    Ok(p) => p,
                    Err(e) => return fail(1, &format!("herald: {}: {e}", policy.display())),
                };
                match herald::tools::run(&loaded, &samples).await {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(2, &format!("herald: {e}")),
                }
            })
        }
        PolicyCommand::Test {
            policy,
            samples,
            config,
        } => {
            let config = match herald::tools::load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(2, &format!("herald: {e}")),
            };
            let samples = samples.unwrap_or_else(|| herald::policy::samples::path_for(&policy));
            rt.block_on(async {
                let (_engine, loaded) = match herald::tools::load(&policy, &config, false).await {
                    Ok(p) => p,
                    Err(e) => return fail(2, &format!("herald: {}: {e}", policy.display())),
                };
                match herald::tools::test(&loaded, &samples).await {
                    Ok(report) => {
                        print!("{report}");
                        ExitCode::SUCCESS
                    }
                    Err(herald::tools::TestFailure::Mismatch(report)) => {
                        print!("{report}");
                        ExitCode::from(1)
                    }
                    Err(herald::tools::TestFailure::Setup(e)) => fail(2, &format!("herald: {e}")),
                }
            })
        }
    }
}

fn ab_report(admin: &str, token: Option<&str>) -> ExitCode {
    use std::io::{Read, Write};
    let Some(addr) = admin
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
    else {
        eprintln!("herald ab report: --admin must look like http://HOST:PORT");
        return ExitCode::from(2);
    };
    let result = (|| -> std::io::Result<String> {
        let mut tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            tcp,
            "GET /ab HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        tcp.read_to_string(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(response) => match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
                print!("{body}");
                ExitCode::SUCCESS
            }
            Some((head, body)) => {
                eprintln!(
                    "herald ab report: {}: {}",
                    head.lines().next().unwrap_or(""),
                    body.trim()
                );
                ExitCode::FAILURE
            }
            None => {
                eprintln!("herald ab report: {addr} did not answer HTTP");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("herald ab report: cannot reach {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: Option<&str>) {
    let filter = match filter {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log.as_deref());
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = config.server.workers;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().thread_name("herald-worker");
    if workers > 0 {
        rt.worker_threads(workers);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, move || build_config(&args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_config(args: &ServeArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if !args.h2c.is_empty() {
        config.server.listen_h2c = args.h2c.clone();
    }
    if args.no_tls {
        config.server.listen.clear();
    }
    if let Some(root) = &args.root {
        config.origin.root = Some(root.clone());
    }
    if let Some(policy) = &args.policy {
        config.policy.path = Some(policy.clone());
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        config.tls.cert = Some(cert.clone());
        config.tls.key = Some(key.clone());
    }
    if args.trace_frames {
        config.server.trace_frames = true;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, String> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let shared = Shared::from_config(config).await?;
    let server = Server::bind(shared).await?;
    // Signal handlers go in before the server says it is listening: a signal
    // sent right after that line must not meet the default action (exit).
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    for (scheme, addr) in server.local_addrs() {
        // A stable line on stdout that scripts and tests can wait for.
        println!("herald listening on {scheme}://{addr}");
        tracing::info!("listening on {scheme}://{addr}");
    }
    if let Some(addr) = server.admin_addr() {
        println!("herald admin listening on http://{addr}");
        tracing::info!("admin listening on http://{addr} (/metrics, /healthz)");
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        let _ = tx.send(true);
    });
    let shared = server.shared().clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration and policies");
            match reload() {
                Ok(config) => herald::server::reload(&shared, config).await,
                Err(e) => {
                    tracing::warn!("reload refused, still serving the previous configuration: {e}")
                }
            }
        }
    });
    server.run(rx, grace).await;
    Ok(())
}

fn parse_isolation(s: &str) -> Result<herald::policy::Isolation, String> {
    match s {
        "fresh" => Ok(herald::policy::Isolation::Fresh),
        "reuse" => Ok(herald::policy::Isolation::Reuse),
        other => Err(format!("`{other}`: expected fresh or reuse")),
    }
}
