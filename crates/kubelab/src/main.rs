//! The `kubelab` command: parses flags and dispatches; the work lives in the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kubelab",
    version,
    about = "A Kubernetes networking lab in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes API server in the foreground.
    Server(ServerArgs),
    /// Start a lab in the background and wait until all its nodes are Ready.
    Up(UpArgs),
    /// Stop a lab and remove its state and kubeconfig entries.
    Down(DownArgs),
    /// The lab's background process, started by `up`.
    #[command(hide = true)]
    LabRun(LabRunArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Hollow nodes (like kwok): no namespaces and no root; pods get addresses but run nothing.
    /// The only mode for now.
    #[arg(long)]
    hollow: bool,
    /// Name of the lab; its kubectl context is `kubelab-NAME`.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
    /// Worker nodes (`kube-1` .. `kube-N`) besides the control plane `kube-0`.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Write a standalone kubeconfig to FILE instead of merging into $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// How long to wait for every node to be Ready, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[derive(clap::Args)]
struct DownArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
}

#[derive(clap::Args)]
struct LabRunArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    workers: u32,
    #[arg(long)]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory for the object store (SQLite) and the certificates; created if missing.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write an admin kubeconfig (cluster, user and context `kubelab`) to this file.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// ClusterIP range for Services.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// NodePort range for Services.
    #[arg(long, default_value = "30000-32767")]
    nodeport_range: String,
    /// Address the `kubernetes` Service's endpoints advertise (default: the listen address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Keep objects in memory only: NOT durable, everything is lost when the process exits.
    /// Hidden; it exists so benchmarks can show what durable (fsynced SQLite) writes cost.
    /// The certificates still live under `--data-dir`.
    #[arg(long, hide = true)]
    in_memory: bool,
    /// Serve the API only, without the controllers and the scheduler.
    #[arg(long)]
    no_controllers: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBELAB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // The lab's background process writes to lab.log: no colour codes there.
        .with_ansi(!matches!(cli.command, Command::LabRun(_)))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubelab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Up(args) => runtime.block_on(up(args)),
        Command::Down(args) => down(args),
        Command::LabRun(args) => runtime.block_on(lab_run(args)),
    }
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    if !args.hollow {
        anyhow::bail!(
            "only hollow labs exist so far: run `kubelab up --hollow` (the namespace-based lab comes later)"
        );
    }
    let env = lab::LabEnv::from_process_env()?;
    let options = lab::UpOptions {
        name: args.name,
        workers: args.workers,
        kubeconfig: args.kubeconfig,
        program: std::env::current_exe().context("finding the kubelab executable")?,
        timeout: std::time::Duration::from_secs(args.wait),
    };
    let r = lab::up(&env, &options).await?;
    println!(
        "Lab \"{}\" is up: {} hollow nodes Ready ({} control plane, {} workers) in {:.1}s",
        r.name,
        r.nodes.len(),
        r.nodes.first().map(String::as_str).unwrap_or("kube-0"),
        r.nodes.len().saturating_sub(1),
        r.elapsed.as_secs_f64()
    );
    println!(
        "API server {} (state in {})",
        r.server,
        r.state_dir.display()
    );
    if r.merged {
        println!(
            "Set kubectl context to \"{}\" in {}",
            r.context,
            r.kubeconfig.display()
        );
        println!(
            "You can now use your lab with:\n\nkubectl cluster-info --context {}",
            r.context
        );
    } else {
        println!("Wrote kubeconfig {}", r.kubeconfig.display());
        println!(
            "You can now use your lab with:\n\nkubectl cluster-info --kubeconfig {}",
            r.kubeconfig.display()
        );
    }
    println!("\nStop it with: kubelab down --name {}", r.name);
    Ok(ExitCode::SUCCESS)
}

fn down(args: DownArgs) -> Result<ExitCode> {
    let env = lab::LabEnv::from_process_env()?;
    let r = lab::down(&env, &args.name, std::time::Duration::from_secs(10))?;
    if r.found_nothing() {
        println!("No lab named \"{}\" was found; nothing to do", r.name);
        return Ok(ExitCode::SUCCESS);
    }
    match r.stopped {
        lab::process::Stopped::Terminated => println!("Stopped lab \"{}\"", r.name),
        lab::process::Stopped::Killed => {
            println!("Lab \"{}\" did not stop on SIGTERM and was killed", r.name)
        }
        lab::process::Stopped::NotRunning => println!("Lab \"{}\" was not running", r.name),
    }
    if let Some(path) = &r.kubeconfig_cleaned {
        println!(
            "Removed context \"{}\" from {}",
            lab::context_name(&r.name),
            path.display()
        );
    }
    if r.state_removed {
        println!("Removed its state");
    }
    Ok(ExitCode::SUCCESS)
}

async fn lab_run(args: LabRunArgs) -> Result<ExitCode> {
    let options = lab::RunOptions {
        name: args.name,
        workers: args.workers,
        state_dir: args.state_dir,
    };
    lab::run(options, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn server(args: ServerArgs) -> Result<ExitCode> {
    let mut config = apiserver::Config::new(&args.data_dir);
    config.listen = args.listen;
    config.service_cidr = args.service_cidr;
    config.nodeport_range = args.nodeport_range;
    config.advertise_address = args.advertise_address;
    config.in_memory = args.in_memory;
    if args.in_memory {
        tracing::warn!("--in-memory: objects are not stored on disk and are lost on exit");
    }
    let server = apiserver::ApiServer::new(config)
        .await
        .context("starting the API server")?;
    if let Some(path) = &args.write_kubeconfig {
        write_private(path, &server.kubeconfig("kubelab"))
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    tracing::info!(address = %server.local_addr(), data_dir = %args.data_dir.display(), "serving the Kubernetes API");
    let controllers = if args.no_controllers {
        None
    } else {
        let client = self_client(&server.kubeconfig("kubelab"))
            .await
            .context("connecting the controllers")?;
        Some(tokio::spawn(controllers::run(client, controller_config()?)))
    };
    server.run(shutdown_signal()).await;
    if let Some(c) = controllers {
        c.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// The controllers' knobs: upstream's defaults, except that
/// `KUBELAB_NODE_MONITOR_GRACE_PERIOD` (e.g. `5s`, `500ms`, or seconds) shortens how long a
/// silent node stays Ready (kube-controller-manager's `--node-monitor-grace-period`, 40 s), so
/// tests and demos of node failure need not wait.
fn controller_config() -> Result<controllers::Config> {
    let mut config = controllers::Config::default();
    if let Ok(text) = std::env::var("KUBELAB_NODE_MONITOR_GRACE_PERIOD") {
        config.node_monitor_grace_period = controllers::nodelifecycle::parse_duration(&text)
            .with_context(|| {
                format!("KUBELAB_NODE_MONITOR_GRACE_PERIOD={text:?} is not a duration")
            })?;
    }
    Ok(config)
}

/// A client of our own API server, authenticated as the admin, for the in-process controllers.
async fn self_client(kubeconfig: &str) -> Result<kube::Client> {
    let kc =
        kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing our own kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Writes a file readable by its owner only: a kubeconfig holds the admin key.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
