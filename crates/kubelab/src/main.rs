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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBELAB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
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
    }
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
        Some(tokio::spawn(controllers::run(
            client,
            controllers::Config::default(),
        )))
    };
    server.run(shutdown_signal()).await;
    if let Some(c) = controllers {
        c.abort();
    }
    Ok(ExitCode::SUCCESS)
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
