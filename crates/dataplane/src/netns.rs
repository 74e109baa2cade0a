//! Named network namespaces (as `ip netns` keeps them), persistent UTS namespaces, and the ways
//! to run code or programs inside them.
//!
//! A namespace outlives the processes in it only while something holds it; like iproute2 we bind
//! mount the namespace file (`/proc/thread-self/ns/net`) on `/run/netns/NAME`, so `ip netns list`,
//! `ip -n NAME` and `ip netns exec` all see ours.
//!
//! Namespaces belong to threads, not processes. This module therefore never switches the caller's
//! thread (except [`enter_current_thread`], which says so): it switches a fresh OS thread that
//! exits afterwards ([`in_netns`]), or a forked child right before `exec` ([`NsFds::apply_to`]).
//! That keeps it safe in a multi-threaded tokio process, whose worker threads must stay where they
//! are.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DataplaneError, Result, io_ctx};
use crate::mounts::MountPlan;
use crate::sys;

/// Where named network namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const RUN_DIR: &str = "/run/netns";

/// The bind-mount point of the network namespace called `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Checks a namespace name: it becomes a file name in [`RUN_DIR`] and a token in `ip` commands.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && is_plain_token(name);
    if ok {
        Ok(())
    } else {
        Err(DataplaneError::InvalidArgument {
            what: "network namespace name",
            value: name.to_string(),
        })
    }
}

/// A word that `ip -batch` reads back as itself: no whitespace, quotes, comments or escapes.
pub(crate) fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '\'' | '#' | '\\'))
}

/// Whether `name` is a live network namespace mount in [`RUN_DIR`].
pub fn exists(name: &str) -> bool {
    validate_name(name).is_ok() && sys::is_ns_mount(&path(name)).unwrap_or(false)
}

/// Creates the named network namespace exactly as `ip netns add` does (a bind mount of the
/// namespace file on `/run/netns/NAME`) and brings its `lo` up.
///
/// Idempotent: a namespace that is already mounted there is kept (and its `lo` brought up, which
/// converges a creation interrupted half-way). A leftover plain file (a crash between creating the
/// mount point and mounting) is mounted over.
pub fn create(name: &str) -> Result<PathBuf> {
    validate_name(name)?;
    let target = path(name);
    if sys::is_ns_mount(&target).map_err(io_ctx(|| format!("statfs {}", target.display())))? {
        in_netns(&target, || sys::set_link_up("lo"))?
            .map_err(io_ctx(|| format!("set lo up in netns {name}")))?;
        return Ok(target);
    }
    prepare_run_dir()?;
    match sys::open(&target, libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL, 0) {
        Ok(fd) => drop(fd),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(DataplaneError::io(
                format!("create {}", target.display()),
                e,
            ));
        }
    }
    let mounted = on_fresh_thread(name, || -> std::io::Result<()> {
        sys::unshare(libc::CLONE_NEWNET)?;
        sys::mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &target,
            libc::MS_BIND,
        )?;
        sys::set_link_up("lo")
    })
    .and_then(|r| r.map_err(io_ctx(|| format!("create network namespace {name}"))));
    if let Err(e) = mounted {
        // Leave nothing half-made behind; a mount that did succeed is removed as well.
        let _ = remove_ns_file(&target);
        return Err(e);
    }
    Ok(target)
}

/// Makes [`RUN_DIR`] exist and be a shared mount, as iproute2 does, so namespace mounts made
/// later propagate into mount namespaces cloned from ours (e.g. by `ip netns exec`).
fn prepare_run_dir() -> Result<()> {
    let dir = Path::new(RUN_DIR);
    std::fs::create_dir_all(dir).map_err(io_ctx(|| format!("mkdir {RUN_DIR}")))?;
    let shared = libc::MS_SHARED | libc::MS_REC;
    match sys::mount(None, dir, shared) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it onto itself first, then share it.
            sys::mount(Some(dir), dir, libc::MS_BIND | libc::MS_REC)
                .and_then(|()| sys::mount(None, dir, shared))
                .map_err(io_ctx(|| format!("make {RUN_DIR} a shared mount")))
        }
        Err(e) => Err(DataplaneError::io(format!("make {RUN_DIR} shared"), e)),
    }
}

/// Deletes the named network namespace like `ip netns del` (lazy unmount, then unlink). The
/// kernel frees it once no process or open fd still uses it. `Ok` if it does not exist.
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    remove_ns_file(&path(name))
}

/// Names in [`RUN_DIR`] that start with `prefix`, sorted. Unreadable entries are skipped.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Creates a persistent UTS namespace bind-mounted on `file` (created if missing; its parent
/// directory must exist) whose hostname is `hostname`.
///
/// Idempotent: if `file` already holds a namespace mount, its hostname is set again.
pub fn create_uts(file: &Path, hostname: &str) -> Result<()> {
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains('\0') {
        return Err(DataplaneError::InvalidArgument {
            what: "hostname",
            value: hostname.to_string(),
        });
    }
    let label = file.display().to_string();
    if sys::is_ns_mount(file).map_err(io_ctx(|| format!("statfs {label}")))? {
        let fd = sys::open(file, libc::O_RDONLY, 0).map_err(io_ctx(|| format!("open {label}")))?;
        return on_fresh_thread(&label, || -> std::io::Result<()> {
            sys::setns(fd.as_raw_fd(), libc::CLONE_NEWUTS)?;
            sys::sethostname(hostname)
        })?
        .map_err(io_ctx(|| format!("set hostname in UTS namespace {label}")));
    }
    match sys::open(file, libc::O_RDONLY | libc::O_CREAT, 0) {
        Ok(fd) => drop(fd),
        Err(e) => return Err(DataplaneError::io(format!("create {label}"), e)),
    }
    let made = on_fresh_thread(&label, || -> std::io::Result<()> {
        sys::unshare(libc::CLONE_NEWUTS)?;
        sys::sethostname(hostname)?;
        sys::mount(
            Some(Path::new("/proc/thread-self/ns/uts")),
            file,
            libc::MS_BIND,
        )
    })
    .and_then(|r| r.map_err(io_ctx(|| format!("create UTS namespace on {label}"))));
    if let Err(e) = made {
        let _ = remove_ns_file(file);
        return Err(e);
    }
    Ok(())
}

/// Removes a namespace mount point: lazy unmount (`MNT_DETACH`) and unlink. `Ok` if missing or
/// not mounted.
pub fn remove_ns_file(file: &Path) -> Result<()> {
    match sys::umount_detach(file) {
        Ok(()) => {}
        // EINVAL: exists but is not a mount point (a leftover placeholder).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(DataplaneError::io(format!("umount {}", file.display()), e)),
    }
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DataplaneError::io(format!("unlink {}", file.display()), e)),
    }
}

/// Open handles on a network namespace and, optionally, a UTS namespace, for starting child
/// processes inside them.
///
/// The fds are reference counted so a `Command` configured by [`NsFds::apply_to`] keeps them open
/// for as long as it lives, even if this value is dropped first.
#[derive(Debug, Clone)]
pub struct NsFds {
    net: Arc<OwnedFd>,
    uts: Option<Arc<OwnedFd>>,
    mounts: Option<Arc<MountPlan>>,
}

impl NsFds {
    /// Opens the namespace files (e.g. [`path`]`(name)` and a file made by [`create_uts`]).
    pub fn open(net: &Path, uts: Option<&Path>) -> Result<NsFds> {
        let open = |p: &Path| {
            sys::open(p, libc::O_RDONLY, 0)
                .map(Arc::new)
                .map_err(io_ctx(|| format!("open namespace {}", p.display())))
        };
        Ok(NsFds {
            net: open(net)?,
            uts: uts.map(open).transpose()?,
            mounts: None,
        })
    }

    /// Also gives the child a private mount namespace laid out by `plan` (the pod's
    /// `/etc/resolv.conf` and friends), made after joining the network and UTS namespaces.
    pub fn with_mounts(mut self, plan: MountPlan) -> NsFds {
        self.mounts = (!plan.is_empty()).then(|| Arc::new(plan));
        self
    }

    /// Makes `cmd` start its child inside these namespaces: a `pre_exec` hook calls `setns` for
    /// each (only that: it runs between fork and exec, where allocating is not allowed).
    ///
    /// For a `tokio::process::Command`, pass `cmd.as_std_mut()`.
    pub fn apply_to(&self, cmd: &mut std::process::Command) {
        let net = Arc::clone(&self.net);
        let uts = self.uts.clone();
        let mounts = self.mounts.clone();
        let hook = move || -> std::io::Result<()> {
            sys::setns(net.as_raw_fd(), libc::CLONE_NEWNET)?;
            if let Some(uts) = &uts {
                sys::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS)?;
            }
            if let Some(mounts) = &mounts {
                mounts.apply_in_child()?;
            }
            Ok(())
        };
        // SAFETY: the hook only calls setns(2) on fds kept alive by the captured Arcs and the
        // mount plan's system calls on strings prepared before fork; it neither allocates nor
        // takes locks, so it is async-signal-safe in the forked child.
        unsafe {
            cmd.pre_exec(hook);
        }
    }
}

/// Moves the CALLING thread into the network namespace `net` (and UTS namespace `uts`).
///
/// Meant for a single-threaded process that is about to `exec` a shell inside a node (`kubelab
/// ssh`); in a multi-threaded program use [`in_netns`] or [`NsFds::apply_to`] instead.
pub fn enter_current_thread(net: &Path, uts: Option<&Path>) -> Result<()> {
    let fds = NsFds::open(net, uts)?;
    sys::setns(fds.net.as_raw_fd(), libc::CLONE_NEWNET)
        .map_err(io_ctx(|| format!("setns into {}", net.display())))?;
    if let (Some(fd), Some(p)) = (&fds.uts, uts) {
        sys::setns(fd.as_raw_fd(), libc::CLONE_NEWUTS)
            .map_err(io_ctx(|| format!("setns into {}", p.display())))?;
    }
    Ok(())
}

/// Runs `f` on a fresh OS thread that has joined the network namespace `net`, and returns its
/// result. Sockets `f` creates belong to `net` for their whole life, wherever they are used
/// afterwards (this is how TCP forwarders and the IPIP tunnel get their sockets).
///
/// Blocks the caller until `f` returns; from async code keep `f` short or use `spawn_blocking`.
pub fn in_netns<T: Send>(net: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let fd = sys::open(net, libc::O_RDONLY, 0)
        .map_err(io_ctx(|| format!("open namespace {}", net.display())))?;
    let label = net.display().to_string();
    on_fresh_thread(&label, move || {
        sys::setns(fd.as_raw_fd(), libc::CLONE_NEWNET).map(|()| {
            drop(fd);
            f()
        })
    })?
    .map_err(io_ctx(|| format!("setns into {label}")))
}

/// Runs `f` on a new scoped thread and joins it; the thread (and whatever namespaces it joined)
/// is gone afterwards. A panic in `f` becomes [`DataplaneError::ThreadPanicked`].
fn on_fresh_thread<T: Send>(label: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("dataplane-ns".into())
            .spawn_scoped(scope, f)
            .map_err(io_ctx(|| format!("spawn thread for {label}")))?;
        handle
            .join()
            .map_err(|_| DataplaneError::ThreadPanicked(label.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_break_paths_or_batch_lines_are_refused() {
        for bad in [
            "", ".", "..", "a/b", "a b", "a\nb", "a#b", "a\"b", "a'b", "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["kube-0", "kltest-dp-1-pod.a", "x_y@z"] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn path_is_under_run_dir() {
        assert_eq!(path("kube-0"), PathBuf::from("/run/netns/kube-0"));
    }

    #[test]
    fn a_panic_inside_the_helper_thread_is_an_error_not_a_crash() {
        let r: Result<()> = on_fresh_thread("test", || panic!("boom"));
        assert!(matches!(r, Err(DataplaneError::ThreadPanicked(_))));
    }
}
