//! `mcpx`: validates `mcpx.yaml`, renders the Envoy configuration for it, and
//! runs Envoy with the mcpx filter in front of your MCP servers.
//!
//! # Layout
//!
//! ```text
//! main.rs                 the command line (run, check, render, baseline, pin,
//!                         ratelimit, bridge) and the `run` supervisor
//! error.rs                the one error type: a kind, the message, a context chain
//! envoy/                  Envoy control
//!   render/               the bootstrap for a validated config (mod.rs joins the parts)
//!     listener.rs         main listener, HTTP connection manager, control listener
//!     filters.rs          the HTTP filter chain, the wasm filter, CORS
//!     routes.rs           /mcp/{server}, /metrics, the 404
//!     clusters.rs         per-server clusters, circuit breaker, admin, JWKS
//!     local_ratelimit.rs  local rate-limit filter and buckets
//!     access_log.rs       the audit log lines Envoy writes
//!     telemetry.rs        metric labels (stats_tags) and tracing
//!     affinity.rs         session affinity for servers with several endpoints
//!   snippets.rs           `render --snippets`: pieces for your own Envoy
//!   dynamic.rs            the xDS files (LDS, ECDS) reloads write
//!   reload.rs             SIGHUP / --watch reloads, checked against Envoy's counters
//!   launch.rs             finding Envoy and the filter; Envoy as a supervised child
//!   files.rs              the control socket and work directory `run` makes, and removes
//!   audit.rs              the events mcpx adds to the audit stream (start, reload)
//! bridge/                 stdio MCP servers as Streamable HTTP (`mcpx bridge`, and in `run`)
//! ratelimit/              global rate limits: Envoy's side and `mcpx ratelimit`, the service
//! operator/               commands against a config or a running gateway
//!   baseline.rs           `mcpx baseline show/reset` over the control socket
//!   pin.rs                `mcpx pin`: the live tools into, against or onto mcpx.lock
//!   lockfile.rs           the mcpx.lock text format
//! ```
//!
//! The configuration schema and the names shared with the filter come from
//! the `mcpx-filter` crate (`config`, `names`). docs/architecture.md has the
//! whole picture.

mod bridge;
mod envoy;
mod error;
mod operator;
mod ratelimit;

use envoy::files::{control_path, fresh_private_dir, prepare_control_socket, Cleanup};
use envoy::{audit, dynamic, launch, reload, render, snippets};
use error::{Context, Error, Kind, Result};
use operator::{baseline, lockfile, pin};

use clap::{Args, Parser, Subcommand, ValueEnum};
use mcpx_filter::config::{Config, Mode};
use render::RenderOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mcpx",
    version,
    about = "An MCP security gateway on Envoy: auth, tool policy, rug-pull protection, rate limits and audit in front of MCP servers",
    long_about = "mcpx puts an Envoy proxy running the mcpx filter in front of your MCP servers.\n\
        Clients connect to http://HOST:PORT/mcp/{server}; the gateway authenticates them, applies\n\
        per-server and per-client tool policy, pins tool schemas, rate-limits, audits and forwards.\n\n\
        Everything is configured in one file, mcpx.yaml (see docs/configuration.md).\n\
        `mcpx -c mcpx.yaml` is the same as `mcpx run -c mcpx.yaml`.",
    after_help = "Examples:\n  mcpx check -c mcpx.yaml           validate a config\n  mcpx run -c mcpx.yaml             start the gateway\n  mcpx render -c mcpx.yaml > envoy.yaml   the Envoy config, for your own Envoy or func-e"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, render the Envoy config and run Envoy (the default).
    Run(RunArgs),
    /// Validate the config and exit: 0 when valid, 1 with the error otherwise.
    Check(CheckArgs),
    /// Print the Envoy configuration `run` would use.
    Render(RenderArgs),
    /// Show or reset the tool integrity baseline of a running gateway.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Run only the stdio bridge (sidecar use): each stdio server at http://LISTEN/mcp/{name}.
    Bridge(BridgeArgs),
    /// Write, check or update the reviewed tool lock (mcpx.lock) from the live servers.
    Pin(PinArgs),
    /// Run the rate-limit service for `rate_limit.backend: global`: Envoy's
    /// RateLimitService over gRPC, limits from the config, counters in Redis.
    Ratelimit(RatelimitArgs),
}

#[derive(Args, Clone)]
struct PinArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this server (its block in the lock is replaced; the others are kept).
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// The lock file [default: inspection.lock of the config, else mcpx.lock next to it].
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Compare the live servers with the lock; exit 1 with a field-by-field diff when they differ.
    #[arg(long, conflicts_with = "update")]
    check: bool,
    /// Accept one reviewed change: re-pin --server's --tool (or all its tools) from the live server.
    #[arg(long, requires = "server")]
    update: bool,
    /// With --update: only this tool.
    #[arg(long, value_name = "NAME", requires = "update")]
    tool: Option<String>,
    /// Print the canonical (RFC 8785) form and SHA-256 of the tool JSON on stdin, and exit.
    #[arg(long, exclusive = true)]
    canonical: bool,
}

#[derive(Args, Clone)]
struct RatelimitArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Where the gRPC service listens (the gateways' `rate_limit.service`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The Redis holding the counters, shared by every instance of this service.
    #[arg(long, value_name = "URL", env = "MCPX_REDIS_URL")]
    redis: String,
}

#[derive(Args, Clone)]
struct BridgeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Where the bridge listens. It has no auth of its own: keep it private, or set
    /// MCPX_BRIDGE_TOKEN and have your Envoy send it as x-mcpx-bridge-token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Print every pinned tool hash and recorded violation (JSON).
    Show(BaselineArgs),
    /// Forget pins and violations (all, one server's, or one tool's); the next
    /// tools/list pins afresh. Use it to accept a reviewed tool change.
    Reset(BaselineArgs),
}

#[derive(Args, Clone)]
struct BaselineArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The control socket `mcpx run` was started with
    /// [default: $XDG_RUNTIME_DIR/mcpx/control.sock, else $TMPDIR/mcpx-UID/control.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Only this server.
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// Only this tool (needs --server).
    #[arg(long, value_name = "NAME", requires = "server")]
    tool: Option<String>,
    /// `show` only: print the baseline as a lock (mcpx.lock) to review and commit; needs
    /// -c (each pinned tool's definition is fetched live and kept if it still matches its pin).
    #[arg(long, requires = "config")]
    as_lock: bool,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// The gateway configuration file.
    #[arg(short, long, env = "MCPX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Check it as the filter's plugin configuration (Envoy/Istio: servers need no url or command).
    #[arg(long)]
    plugin: bool,
    /// Do not read the environment: `${VAR}` references are not resolved and
    /// stdio workdirs not looked at (for CI checking a config that runs elsewhere).
    #[arg(long)]
    no_env: bool,
}

#[derive(Args, Clone)]
struct Locations {
    /// Listen address, overriding `listen:` in the config (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Envoy admin address (always bind it to loopback).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// The filter .wasm [default: next to this binary or in its cargo target dir].
    #[arg(long, env = "MCPX_WASM", value_name = "PATH")]
    wasm: Option<PathBuf>,
    /// Operator control socket for the integrity baseline (`mcpx baseline`): a
    /// Unix socket only you can use (mode 0600, in a directory only you can enter)
    /// [default: $XDG_RUNTIME_DIR/mcpx/control.sock, else $TMPDIR/mcpx-UID/control.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Do not render the control listener (no `mcpx baseline` for this gateway).
    #[arg(long, conflicts_with = "control")]
    no_control: bool,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    locations: Locations,
    /// The Envoy binary [default: `envoy` on PATH].
    #[arg(long, env = "ENVOY_BIN", value_name = "PATH")]
    envoy: Option<PathBuf>,
    /// Envoy worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Envoy's log level (trace, debug, info, warn, error, critical, off).
    #[arg(long, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
    /// Where the rendered Envoy files go [default: a fresh temporary directory].
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Reload when the config file changes (SIGHUP always reloads).
    #[arg(long)]
    watch: bool,
}

#[derive(Args, Clone)]
struct RenderArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Print only the pieces to add to your own Envoy (filter, routes, clusters, ...), with where each goes.
    #[arg(long)]
    snippets: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

/// A panic anywhere (a tokio task included) ends the process after the
/// message, as `panic = "abort"` would: a half-dead supervisor or bridge must
/// not go on serving. The bridge adds its own hook on top (kill every child).
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    // Not dumpable: other processes of this user (a stdio child among them)
    // cannot read our memory or /proc/<pid>/environ, where the gateway's
    // secrets are. Children start dumpable again after exec (kernel rule), so
    // secrets are also kept out of their environments (envoy/launch.rs, bridge).
    // SAFETY: prctl(2) with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    abort_on_panic();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Run(args)) => run(args),
        None if cli.run.config.config.is_some() => run(cli.run),
        None => Err(Error::usage("no config given: use `mcpx -c mcpx.yaml` (or `mcpx --help`)")),
        Some(Command::Check(c)) => check_cmd(&c),
        Some(Command::Render(args)) => render_cmd(&args),
        Some(Command::Baseline(cmd)) => baseline_cmd(cmd),
        Some(Command::Bridge(args)) => bridge_cmd(args),
        Some(Command::Pin(args)) => pin_cmd(&args),
        Some(Command::Ratelimit(args)) => ratelimit_cmd(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("mcpx: {e}");
        ExitCode::FAILURE
    })
}

fn load(arg: &ConfigArg) -> Result<(PathBuf, Config)> {
    load_as(arg, Mode::Gateway)
}

/// Reads and validates the config; in gateway mode the lock it names is
/// read and embedded (`inspection.pins`), as the filter will receive it.
fn load_as(arg: &ConfigArg, mode: Mode) -> Result<(PathBuf, Config)> {
    let (path, mut config) = load_raw(arg, mode)?;
    if mode == Mode::Gateway {
        lockfile::embed(&path, &mut config).map_err(|e| e.in_file(&path))?;
    }
    Ok((path, config))
}

/// The config as written (`inspection.lock` still a path).
fn load_raw(arg: &ConfigArg, mode: Mode) -> Result<(PathBuf, Config)> {
    let path = arg.config.clone().ok_or_else(|| Error::usage("no config given: pass -c mcpx.yaml"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let config = Config::from_yaml(&text, mode).map_err(|e| Error::config_in(&path, e))?;
    Ok((path, config))
}

/// `mcpx pin`: see operator/pin.rs. Exit 1 when `--check` finds differences.
fn pin_cmd(args: &PinArgs) -> Result<ExitCode> {
    if args.canonical {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Error::io_other(format!("cannot read stdin: {e}")))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::usage(format!("stdin is not JSON: {e}")))?;
        println!("{}", mcpx_filter::integrity::canonical_json(&v));
        println!("sha256 {}", mcpx_filter::integrity::tool_hash(&v));
        return Ok(ExitCode::SUCCESS);
    }
    let (path, config) = load_raw(&args.config, Mode::Gateway)?;
    let lock = pin::lock_location(&path, &config, args.lock.as_deref());
    let action = match (args.check, args.update) {
        (true, _) => pin::Action::Check,
        (_, true) => pin::Action::Update { server: args.server.clone().unwrap_or_default(), tool: args.tool.clone() },
        _ => pin::Action::Write,
    };
    let same = pin::run(&path, &config, args.server.as_deref(), &lock, action)?;
    Ok(if same { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `mcpx check`: everything `run` would refuse before starting Envoy, so
/// `valid` means `run` starts: the schema, every `${VAR}` (auth credentials,
/// stdio `env:` and `workdir:`) resolved from this environment, the rendered
/// Envoy config, and what the filter accepts.
fn check_cmd(c: &CheckArgs) -> Result<ExitCode> {
    let mode = if c.plugin { Mode::Plugin } else { Mode::Gateway };
    let (path, config) = load_as(&c.config, mode)?;
    let at = |e: Error| e.in_file(&path);
    if mode == Mode::Gateway {
        let resolved = if c.no_env {
            // Placeholders stand in for the secrets; everything else is checked.
            mcpx_filter::auth::seal_config(&config, |_| Some("mcpx-check-placeholder".into()))
                .map_err(|e| Error::config_in(&path, e))?
        } else {
            let no_env = " (or check without the environment: `mcpx check --no-env`)";
            // The hint only where this environment is the cause (a config error).
            bridge::spec::resolve(&config, &bridge::spec::current_environ()).map_err(|e| match e.kind() {
                Kind::Config => at(e.with_hint(no_env)),
                _ => e,
            })?;
            mcpx_filter::auth::seal_config(&config, |k| std::env::var(k).ok())
                .map_err(|e| Error::config_in(&path, format!("{e}; export it before starting mcpx{no_env}")))?
        };
        let locations = Locations {
            listen: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            wasm: None,
            control: None,
            no_control: false,
        };
        let opts =
            render_options(&resolved, &locations, "mcpx_filter.wasm".into(), Some(([127, 0, 0, 1], 7070).into()))
                .map_err(at)?;
        render::bootstrap(&resolved, &opts).map_err(at)?;
        let plugin = render::plugin_configuration(&resolved).map_err(at)?;
        mcpx_filter::gateway::Gateway::from_plugin_config(&plugin).map_err(|e| Error::config_in(&path, e))?;
    } else {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        mcpx_filter::gateway::Gateway::from_plugin_config(&text).map_err(|e| Error::config_in(&path, e))?;
    }
    let n = config.servers.len();
    let note = if c.no_env && mode == Mode::Gateway { "; environment not checked" } else { "" };
    println!("{}: valid ({n} server{}{note})", path.display(), if n == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

fn render_options(
    config: &Config,
    loc: &Locations,
    wasm_path: String,
    bridge: Option<SocketAddr>,
) -> Result<RenderOptions> {
    let listen = match &loc.listen {
        Some(l) => {
            let mut c = config.clone();
            c.listen = l.clone();
            c.listen_addr().map_err(|e| Error::usage(format!("--listen: {}", e.message)))?
        }
        None => config.listen_addr().map_err(|e| Error::config(e.to_string()))?,
    };
    if !loc.admin.ip().is_loopback() {
        return Err(Error::usage(format!(
            "--admin {} is not a loopback address; Envoy's admin API can change the proxy, so keep it on 127.0.0.1",
            loc.admin
        )));
    }
    let control = match loc.no_control {
        true => None,
        false => Some(control_path(&loc.control)?.display().to_string()),
    };
    Ok(RenderOptions { listen, admin: loc.admin, wasm_path, bridge, control })
}

fn baseline_cmd(cmd: BaselineCommand) -> Result<ExitCode> {
    let (method, args) = match cmd {
        BaselineCommand::Show(a) => ("GET", a),
        BaselineCommand::Reset(a) if a.as_lock => return Err(Error::usage("--as-lock goes with `baseline show`")),
        BaselineCommand::Reset(a) => ("DELETE", a),
    };
    if args.config.config.is_some() {
        // With a config, name the servers it knows so a typo is caught here.
        let (path, config) = load_raw(&args.config, Mode::Gateway)?;
        if let Some(s) = args.server.as_deref().filter(|s| config.server(s).is_none()) {
            let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
            let known = known.join(", ");
            return Err(Error::usage(format!("--server {s}: not a server in {} (known: {known})", path.display())));
        }
    }
    let mut path = "/baseline".to_string();
    if method == "DELETE" {
        for part in [&args.server, &args.tool].into_iter().flatten() {
            path.push('/');
            path.push_str(&baseline::encode_segment(part));
        }
    }
    let (status, body) = baseline::request(&control_path(&args.control)?, method, &path)?;
    if args.as_lock && method == "GET" && status == 200 {
        let (_, config) = load_raw(&args.config, Mode::Gateway)?;
        let mut baseline: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| Error::network(format!("the control listener answered non-JSON: {e}")))?;
        if let (Some(s), Some(all)) = (&args.server, baseline.get_mut("servers").and_then(|v| v.as_object_mut())) {
            all.retain(|k, _| k == s);
        }
        let (lock, skipped) = pin::baseline_as_lock(&config, &baseline)?;
        for s in &skipped {
            eprintln!("mcpx: left out {s}; review it, then `mcpx pin --update`");
        }
        print!("{}", lock.to_text());
        return Ok(ExitCode::SUCCESS);
    }
    let shown = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let v = match (method, &args.server) {
                ("GET", Some(s)) => serde_json::json!({
                    "servers": { s: v["servers"][s] }, "violations": { s: v["violations"][s] },
                }),
                _ => v,
            };
            serde_json::to_string_pretty(&v).ok()
        })
        .unwrap_or(body);
    if status == 200 {
        println!("{shown}");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::network(format!("the control listener answered {status}: {shown}")))
    }
}

fn render_cmd(args: &RenderArgs) -> Result<ExitCode> {
    let (_, config) = load(&args.config)?;
    let wasm = render_wasm_path(args.locations.wasm.as_deref());
    let opts = render_options(&config, &args.locations, wasm, Some(SocketAddr::from(([127, 0, 0, 1], 7070))))?;
    let doc = render::bootstrap(&config, &opts)?;
    if args.snippets {
        let snippets = snippets::Snippets::from_bootstrap(&doc)?;
        let name = args.config.config.as_deref().and_then(|p| p.file_name()).unwrap_or_default().to_string_lossy();
        let text = match args.format {
            Format::Yaml => snippets.to_yaml(&name)?,
            Format::Json => serde_json::to_string_pretty(&snippets.to_json()).map_err(internal)? + "\n",
        };
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let text = match args.format {
        Format::Yaml => serde_yaml::to_string(&doc).map_err(internal)?,
        Format::Json => serde_json::to_string_pretty(&doc).map_err(internal)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The filter path for `render`. An explicit `--wasm` is written exactly as
/// given: it names the file on the host that runs Envoy, which is often not
/// this machine. Without one, the local build is named if there is one.
fn render_wasm_path(explicit: Option<&Path>) -> String {
    if let Some(p) = explicit {
        if p.is_relative() {
            eprintln!(
                "mcpx: note: --wasm {} is a relative path; Envoy resolves it against its own working directory",
                p.display()
            );
        }
        return p.display().to_string();
    }
    launch::find_wasm(None).map(|p| p.display().to_string()).unwrap_or_else(|_| {
        eprintln!(
            "mcpx: warning: no --wasm given and no built filter found; the output names `mcpx_filter.wasm`: \
             pass --wasm PATH with the filter's path on the host that runs Envoy"
        );
        "mcpx_filter.wasm".into()
    })
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let (path, config) = load(&args.config)?;
    let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let envoy_bin = launch::find_envoy(args.envoy.as_deref())?;
    let wasm = launch::find_wasm(args.locations.wasm.as_deref())?.display().to_string();
    // Everything we create for this run is removed again on the way out
    // (the default work directory holds token digests and the bridge token).
    let mut cleanup = Cleanup::default();
    let control = match args.locations.no_control {
        true => None,
        false => Some(control_path(&args.locations.control)?),
    };
    if let Some(c) = &control {
        prepare_control_socket(c)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io_other(format!("cannot start the runtime: {e}")))?;
    // The stdio bridge, in-process on a loopback port only this Envoy may use.
    // Always started (children start lazily), so a reload may add stdio servers.
    let token = bridge::new_token();
    let stdio_bridge = std::sync::Arc::new(
        rt.block_on(bridge::Bridge::start(&config, SocketAddr::from(([127, 0, 0, 1], 0)), Some(token.clone())))
            .map_err(|e| e.in_file(&path))
            .context("starting the stdio bridge")?,
    );
    let bridge_addr = stdio_bridge.local_addr();
    let result = run_envoy(
        &args,
        &path,
        text,
        &config,
        &rt,
        &stdio_bridge,
        bridge_addr,
        token,
        wasm,
        &envoy_bin,
        control,
        &mut cleanup,
    );
    rt.block_on(stdio_bridge.shutdown());
    result
}

/// Renders, launches and supervises Envoy (with the bridge already running).
#[allow(clippy::too_many_arguments)]
fn run_envoy(
    args: &RunArgs,
    path: &Path,
    text: Vec<u8>,
    config: &Config,
    rt: &tokio::runtime::Runtime,
    stdio_bridge: &std::sync::Arc<bridge::Bridge>,
    bridge_addr: SocketAddr,
    token: String,
    wasm: String,
    envoy_bin: &Path,
    control: Option<PathBuf>,
    cleanup: &mut Cleanup,
) -> Result<ExitCode> {
    // The same rendering at start and on every reload.
    let locations = args.locations.clone();
    let render_run = move |config: &Config| -> Result<(RenderOptions, serde_json::Value)> {
        let opts = render_options(config, &locations, wasm.clone(), Some(bridge_addr))?;
        let mut bootstrap = render::bootstrap(config, &opts)?;
        bridge::protect_routes(&mut bootstrap, config, &token);
        Ok((opts, bootstrap))
    };
    let (opts, _) = render_run(config).map_err(|e| e.in_file(path))?;

    // Refuse at once, naming the address, when one Envoy needs is taken.
    let (host, port) = &opts.listen;
    let mut listeners = Vec::new();
    if let Some(addr) =
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port)).ok().and_then(|mut a| a.next())
    {
        listeners.push((
            launch::Expected { name: "mcpx", bind: launch::Bind::Tcp(addr) },
            "stop the process that holds it, or choose a free port with --listen ADDR or `listen:`".to_string(),
        ));
    }
    if let Some(c) = &control {
        listeners.push((
            launch::Expected { name: "mcpx_control", bind: launch::Bind::Pipe(c.clone()) },
            "another mcpx gateway uses it: stop that one, or give this one its own with --control PATH".to_string(),
        ));
    }
    launch::preflight(opts.admin, &listeners)?;
    // Ours from here on (never remove another gateway's socket).
    cleanup.socket = control.clone();

    let render_fn: reload::Render = Box::new(move |c: &Config| render_run(c).map(|(_, b)| b));
    let workdir = match &args.workdir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
            d.clone()
        }
        None => {
            let d = fresh_private_dir()?;
            cleanup.workdir = Some(d.clone());
            d
        }
    };
    // Envoy starts from a bootstrap that points at dynamic resource files,
    // so reloads never restart it (see envoy/dynamic.rs).
    let layout = dynamic::Layout { dir: workdir.join("dynamic") };
    let mut reloader =
        reload::Reloader::start(path.to_path_buf(), text, config.clone(), render_fn, layout, opts.admin)?;
    // BRIDGE HOOK (issue 5): unchanged stdio children keep running on reload.
    // It runs once Envoy has accepted every other part of the new config, so
    // a reload Envoy refuses leaves the bridge as it was (envoy/reload.rs).
    let b = stdio_bridge.clone();
    reloader.bridge(Box::new(move |c: &Config| {
        b.apply(c).map(|r| serde_json::json!({ "added": r.added, "removed": r.removed, "replaced": r.replaced }))
    }));
    let config_path = workdir.join("envoy.json");
    dynamic::write_atomically(&config_path, &serde_json::to_vec_pretty(reloader.bootstrap()).map_err(internal)?)?;

    let shown_host = if host == "0.0.0.0" { "localhost" } else { host };
    let servers: Vec<String> =
        config.servers.iter().map(|s| format!("http://{shown_host}:{port}/mcp/{}", s.name)).collect();
    let ready_message = format!(
        "mcpx: gateway ready on http://{host}:{port} (Envoy admin on {}); servers: {}",
        opts.admin,
        servers.join(", ")
    );

    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    audit::event(
        &config.audit,
        "start",
        serde_json::json!({ "config": path.display().to_string(), "servers": names }),
    )?;

    // On this (the main) thread: Envoy's parent-death signal follows the
    // thread that started it (envoy/launch.rs).
    rt.block_on(launch::run(launch::Launch {
        envoy: envoy_bin,
        config_path: &config_path,
        admin: opts.admin,
        log_level: &args.log_level,
        concurrency: args.concurrency,
        listeners,
        ready_message,
        reloader: Some(reloader),
        watch: args.watch,
    }))
}

fn bridge_cmd(args: BridgeArgs) -> Result<ExitCode> {
    let (path, config) = load(&args.config)?;
    // One thread: the bridge is I/O-bound, and fewer thread hops cost less CPU per call.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io_other(format!("cannot start the runtime: {e}")))?;
    let reload = |p: &Path| load(&ConfigArg { config: Some(p.to_path_buf()) }).map(|(_, c)| c);
    rt.block_on(bridge::serve(&path, config, args.listen, reload))?;
    Ok(ExitCode::SUCCESS)
}

fn ratelimit_cmd(args: RatelimitArgs) -> Result<ExitCode> {
    let (path, config) = load(&args.config)?;
    let rl = &config.rate_limit;
    if !rl.enabled || rl.backend != mcpx_filter::config::RateLimitBackend::Global {
        return Err(Error::config_in(
            &path,
            "rate_limit: the gateways ask a rate-limit service only with `enabled: true` and \
             `backend: global`; set both (and `service: HOST:PORT` pointing here)",
        ));
    }
    if !(args.redis.starts_with("redis://") || args.redis.starts_with("rediss://")) {
        return Err(Error::usage(format!(
            "--redis: {:?} is not a Redis URL; write redis://HOST:PORT",
            ratelimit::service::redact(&args.redis)
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io_other(format!("cannot start the runtime: {e}")))?;
    rt.block_on(ratelimit::service::serve(&config, args.listen, &args.redis))?;
    Ok(ExitCode::SUCCESS)
}

/// For serialising our own documents, which cannot fail but for a bug.
fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(e.to_string())
}
