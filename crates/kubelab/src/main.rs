//! The `kubelab` command: parses flags and dispatches; the work lives in the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

// glibc's malloc took about a third of a busy lab's CPU (many small JSON values, freed on
// other threads); mimalloc's thread-local pages make those allocations cheap. It is built
// without transparent huge pages and told not to commit arenas eagerly (see `main`): a lab
// runs a hundred small processes of this binary, and each would otherwise hold megabytes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_arena_eager_commit` and `mi_option_purge_delay` (libmimalloc-sys
/// names only v2's options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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
    /// Run a command (default: a shell) inside a node of a lab, with its hostname.
    Ssh(SshArgs),
    /// Show each node's routing table, or predict it from cluster state, or compare both.
    Routes(RoutesArgs),
    /// Show a running lab: its nodes, the API server, and NodePorts as URLs on the host.
    Status(StatusArgs),
    /// Show the path a new connection takes: nft chains and maps, the endpoint chosen, NAT,
    /// each routing decision, the encapsulation and the pod it lands in.
    Trace(TraceArgs),
    /// BGP of a `--routing bgp` lab.
    Bgp(BgpArgs),
    /// Run a node agent (kubelet, CNI, route programmer) inside a node's namespace.
    Agent(AgentArgs),
    /// The lab's background process, started by `up`.
    #[command(hide = true)]
    LabRun(LabRunArgs),
    /// A container of a built-in image, started by an agent inside the pod's namespaces.
    #[command(hide = true)]
    Container(ContainerArgs),
}

#[derive(clap::Args)]
struct SshArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
    /// The node, e.g. kube-0.
    node: String,
    /// The command and its arguments (after `--`); a login shell if none.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct BgpArgs {
    #[command(subcommand)]
    command: BgpCommand,
}

#[derive(Subcommand)]
enum BgpCommand {
    /// Each node's BGP peers and the state of their sessions, like `calicoctl node status`;
    /// exits 1 unless every session is Established.
    Status(BgpStatusArgs),
}

#[derive(clap::Args)]
struct BgpStatusArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
    /// Only this node.
    node: Option<String>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
}

#[derive(clap::Args)]
struct TraceArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
    /// Where the connection starts: a node (kube-1) or a pod (NAME or NAMESPACE/NAME).
    #[arg(long)]
    from: String,
    /// Where it goes: IP:PORT (a ClusterIP, a node IP and NodePort, a pod IP, anything).
    #[arg(long)]
    to: std::net::SocketAddrV4,
    /// Trace a UDP flow instead of a TCP connection.
    #[arg(long)]
    udp: bool,
}

#[derive(clap::Args)]
struct RoutesArgs {
    /// Name of the lab.
    #[arg(long, default_value = lab::DEFAULT_NAME)]
    name: String,
    /// Only this node.
    node: Option<String>,
    /// Compute the tables from cluster state alone (what Calico would write).
    #[arg(long, conflicts_with = "check")]
    predict: bool,
    /// Compare prediction and kernel on every node; exit 1 on any difference.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// This node's name.
    #[arg(long)]
    node: String,
    /// This node's address and subnet, e.g. 10.10.95.205/20.
    #[arg(long)]
    node_ip: String,
    /// The node's default gateway.
    #[arg(long)]
    gateway: std::net::Ipv4Addr,
    /// The node's network namespace (the agent runs inside it).
    #[arg(long)]
    netns: String,
    /// Pod network namespaces are named this plus the pod's uid.
    #[arg(long)]
    pod_netns_prefix: String,
    /// Kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Directory for the node's pods and logs.
    #[arg(long)]
    state_dir: PathBuf,
    /// Register as the control plane (tainted NoSchedule).
    #[arg(long)]
    control_plane: bool,
    /// Port of the kubelet API (logs, exec).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The cluster DNS Service's address, the nameserver of ClusterFirst pods.
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The Service range of the API server.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: proxy::Ipv4Cidr,
    /// Who programs routes between nodes: `felix` (the agent itself) or `bgp` (BIRD in the
    /// node, configured by the agent).
    #[arg(long, default_value = "felix", value_parser = ["felix", "bgp"])]
    routing: String,
    /// This node's BGP AS number (with `--routing bgp`).
    #[arg(long, default_value_t = bgp::DEFAULT_AS)]
    bgp_as: u32,
    /// A BGP peer of every node besides the mesh, ADDRESS:AS (repeatable; `--routing bgp`).
    #[arg(long)]
    bgp_peer: Vec<bgp::GlobalPeer>,
}

#[derive(clap::Args)]
struct ContainerArgs {
    /// The image reference from the pod spec.
    #[arg(long)]
    image: String,
    /// The container's log file (CRI format).
    #[arg(long)]
    log: PathBuf,
    /// The container's `command`, one flag per element.
    #[arg(long = "command", allow_hyphen_values = true)]
    command: Vec<String>,
    /// The container's `args`, one flag per element.
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Hollow nodes (like kwok): no namespaces and no root; pods get addresses but run nothing.
    #[arg(long)]
    hollow: bool,
    /// How pods reach pods on other nodes: ipip (default, as the course), vxlan, none (nodes on
    /// one subnet only) or cross-subnet.
    #[arg(long, value_parser = ["ipip", "vxlan", "none", "cross-subnet"])]
    encapsulation: Option<String>,
    /// Who programs routes between nodes: felix (default: the agent, as Calico's Felix) or bgp
    /// (BIRD 2 in every node, an iBGP full mesh; nodes on one subnet, no encapsulation).
    #[arg(long, value_parser = ["felix", "bgp"])]
    routing: Option<String>,
    /// A lab config file (YAML): sharedSubnet, poolCidr, blockSize, serviceCidr, nodeNames,
    /// encapsulation, routing, bgp (asNumber, externalPeer: {asNumber, address}).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    #[arg(long)]
    hollow: bool,
    #[arg(long)]
    encapsulation: Option<String>,
    #[arg(long)]
    routing: Option<String>,
    #[arg(long)]
    config: Option<PathBuf>,
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
    // Before the first allocation: options are read when mimalloc makes its first arena.
    // Freed pages go back to the kernel at once, so that an idle process (most containers
    // of a lab) does not keep the memory of its start-up.
    // SAFETY: sets process-wide allocator options; no other thread exists yet.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    let cli = Cli::parse();
    // These replace the process or run a container: before any thread or logger exists.
    if matches!(
        cli.command,
        Command::Up(_)
            | Command::Down(_)
            | Command::Routes(_)
            | Command::Bgp(_)
            | Command::Status(_)
            | Command::Trace(_)
    ) {
        // Commands whose output is read by people and pipes: `kubelab routes | head` ends quietly
        // as other Unix tools do, instead of failing on a closed pipe.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let cli = match cli.command {
        Command::Ssh(args) => return exit(ssh(args)),
        Command::Container(args) => return container(args),
        other => Cli { command: other },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBELAB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Lab processes write to log files: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Routes(args) => runtime.block_on(routes(args)),
        Command::Bgp(args) => runtime.block_on(bgp(args)),
        Command::Status(args) => runtime.block_on(status(args)),
        Command::Trace(args) => runtime.block_on(trace(args)),
        Command::Agent(args) => runtime.block_on(agent(args)),
        Command::Ssh(_) | Command::Container(_) => unreachable!("dispatched in main"),
    }
}

fn exit(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubelab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Enters the node's network and UTS namespaces and execs the command there.
fn ssh(args: SshArgs) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let env = lab::LabEnv::from_process_env()?;
    let record = lab::netlab::LabRecord::read(&env.state_dir(&args.name)).map_err(|_| {
        anyhow::anyhow!(
            "no lab of real nodes named {:?} is running (start one with `kubelab up`)",
            args.name
        )
    })?;
    let state_dir = env.state_dir(&args.name);
    let bgp = lab::netlab::BgpRecord::read(&state_dir);
    let peer_router = bgp
        .as_ref()
        .and_then(|b| b.peer_router.as_ref())
        .filter(|_| args.node == lab::topology::PEER_ROUTER_NAME);
    let peer_node;
    let node = match peer_router {
        Some(peer) => {
            peer_node = lab::netlab::NodeRecord {
                name: args.node.clone(),
                netns: peer.netns.clone(),
                uts: peer.uts.clone(),
                ip: peer.ip,
                prefix_len: 0,
                gateway: peer.ip,
            };
            Some(&peer_node)
        }
        None => record.node(&args.node),
    };
    let node = node.ok_or_else(|| {
        anyhow::anyhow!(
            "lab {:?} has no node {:?}; its nodes are {}",
            args.name,
            args.node,
            record
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    dataplane::netns::enter_current_thread(&dataplane::netns::path(&node.netns), Some(&node.uts))
        .with_context(|| format!("entering node {}", node.name))?;
    if bgp.is_some() {
        // `birdc` talks to /run/bird/bird.ctl: show it this node's BIRD (or the router's).
        let bird_dir = match peer_router {
            Some(peer) => peer.bird_dir.clone(),
            None => agent::bird::bird_dir(&lab::netlab::node_state_dir(&state_dir, &node.name)),
        };
        lab::bgpstatus::mount_bird_dir(&bird_dir)
            .with_context(|| format!("showing {} at /run/bird", bird_dir.display()))?;
    }
    let mut command = match args.command.split_first() {
        Some((program, rest)) => {
            let mut c = std::process::Command::new(program);
            c.args(rest);
            c
        }
        None => {
            let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
            let mut c = std::process::Command::new(&shell);
            c.arg("-l");
            c
        }
    };
    command.env("HOSTNAME", &node.name);
    let error = command.exec();
    Err(anyhow::anyhow!("running {:?}: {error}", args.command))
}

/// A container process: already inside its pod's namespaces; its output goes to its log.
fn container(args: ContainerArgs) -> ExitCode {
    let _shim = match images::logfile::install_shim(&args.log) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubelab container: log {}: {e}", args.log.display());
            return ExitCode::from(128);
        }
    };
    let Some(image) = images::lookup(&args.image) else {
        eprintln!("kubelab container: no built-in image {:?}", args.image);
        return ExitCode::from(127);
    };
    if image == images::Image::CoreDns {
        // The cluster DNS talks to the API server, which the images crate does not; the
        // image's entrypoint is CoreDNS itself, so only the container's args reach it.
        return dns::run_with_args(&args.args);
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    images::run(&image, &args.image, &args.command, &args.args, &env)
}

async fn routes(args: RoutesArgs) -> Result<ExitCode> {
    let env = lab::LabEnv::from_process_env()?;
    let lab = lab::inspect::RunningLab::open(&env, &args.name)?;
    let mode = if args.check {
        lab::inspect::RoutesMode::Check
    } else if args.predict {
        lab::inspect::RoutesMode::Predict
    } else {
        lab::inspect::RoutesMode::Kernel
    };
    let (text, clean) = lab::inspect::routes(&lab, args.node.as_deref(), mode).await?;
    print!("{text}");
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn bgp(args: BgpArgs) -> Result<ExitCode> {
    let BgpCommand::Status(args) = args.command;
    let env = lab::LabEnv::from_process_env()?;
    let lab = lab::inspect::RunningLab::open(&env, &args.name)?;
    let (text, all_established) = lab::bgpstatus::status(&lab, args.node.as_deref()).await?;
    print!("{text}");
    Ok(if all_established {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let env = lab::LabEnv::from_process_env()?;
    let lab = lab::inspect::RunningLab::open(&env, &args.name)?;
    print!("{}", lab::status::status(&lab).await?);
    Ok(ExitCode::SUCCESS)
}

async fn trace(args: TraceArgs) -> Result<ExitCode> {
    let env = lab::LabEnv::from_process_env()?;
    let lab = lab::inspect::RunningLab::open(&env, &args.name)?;
    let protocol = if args.udp {
        lab::trace::L4::Udp
    } else {
        lab::trace::L4::Tcp
    };
    print!(
        "{}",
        lab::trace::run(&lab, &args.from, args.to, protocol).await?
    );
    Ok(ExitCode::SUCCESS)
}

async fn agent(args: AgentArgs) -> Result<ExitCode> {
    let (ip, prefix) = args
        .node_ip
        .split_once('/')
        .context("--node-ip must be ADDRESS/PREFIX")?;
    let text = std::fs::read_to_string(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = agent::netnode::AgentConfig {
        node: args.node,
        node_ip: ip.parse().context("--node-ip address")?,
        prefix_len: prefix.parse().context("--node-ip prefix")?,
        gateway: args.gateway,
        control_plane: args.control_plane,
        netns: args.netns,
        pod_netns_prefix: args.pod_netns_prefix,
        state_dir: args.state_dir,
        kubelet_port: args.kubelet_port,
        program: std::env::current_exe().context("finding the kubelab executable")?,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        cluster_ca: agent::podfiles::cluster_ca_from_kubeconfig(&text),
        service_cidr: args.service_cidr,
        bgp: (args.routing == "bgp").then_some(agent::bird::BgpSettings {
            as_number: args.bgp_as,
            global_peers: args.bgp_peer,
        }),
    };
    let client = self_client(&text)
        .await
        .context("connecting to the API server")?;
    tokio::select! {
        r = agent::netnode::run(client, config) => r?,
        // SIGTERM leaves pods running, as a kubelet restart does.
        _ = shutdown_signal() => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if !args.hollow && unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "a lab of real nodes makes network namespaces and needs root: run it with sudo, or use `kubelab up --hollow` (no namespaces, pods run nothing)"
        );
    }
    let encapsulation = args
        .encapsulation
        .as_deref()
        .and_then(lab::topology::Encapsulation::parse);
    let routing = args
        .routing
        .as_deref()
        .and_then(lab::topology::Routing::parse);
    if !args.hollow || args.config.is_some() {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                lab::topology::parse_config(&text)
                    .with_context(|| format!("in {}", path.display()))?
            }
            None => Default::default(),
        };
        config.routing = routing.or(config.routing);
        let plan = lab::topology::plan(&args.name, args.workers as usize, encapsulation, &config)?;
        if !args.hollow
            && plan.routing == lab::topology::Routing::Bgp
            && !lab::netlab::bird_installed()
        {
            anyhow::bail!(lab::netlab::BIRD_MISSING);
        }
    }
    let env = lab::LabEnv::from_process_env()?;
    let options = lab::UpOptions {
        name: args.name,
        workers: args.workers,
        kubeconfig: args.kubeconfig,
        program: std::env::current_exe().context("finding the kubelab executable")?,
        timeout: std::time::Duration::from_secs(args.wait),
        hollow: args.hollow,
        encapsulation,
        routing,
        config: args.config.map(|p| std::path::absolute(&p).unwrap_or(p)),
    };
    let r = lab::up(&env, &options).await?;
    if let Ok(steps) = std::fs::read_to_string(r.state_dir.join("steps")) {
        print!("{steps}");
    }
    println!(
        "Lab \"{}\" is up: {} {}nodes Ready ({} control plane, {} workers) in {:.1}s",
        r.name,
        r.nodes.len(),
        if args.hollow { "hollow " } else { "" },
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
    if !args.hollow {
        let config = match &args.config {
            Some(path) => lab::topology::parse_config(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )?,
            None => Default::default(),
        };
        let options = lab::netlab::NetRunOptions {
            name: args.name,
            workers: args.workers,
            state_dir: args.state_dir,
            encapsulation: args
                .encapsulation
                .as_deref()
                .and_then(lab::topology::Encapsulation::parse),
            routing: args
                .routing
                .as_deref()
                .and_then(lab::topology::Routing::parse),
            config,
            program: std::env::current_exe().context("finding the kubelab executable")?,
        };
        lab::netlab::run(options, shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }
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
        // In-process, like kube-controller-manager's loopback client but without TLS.
        let client = kube::Client::new(server.local_transport(), "default");
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
