//! A pod's private view of the host's filesystem: the machine's own programs run inside a pod
//! (containers of built-in images, exec probes, `kubectl exec`) with the pod's
//! `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` in place, and its service account
//! files at `/var/run/secrets/kubernetes.io/serviceaccount`, while the host keeps its own.
//!
//! A [`MountPlan`] is computed before `fork` (every path becomes a `CString` then, and the
//! directories it needs are listed then) and carried out in the child right before `exec`
//! ([`MountPlan::apply_in_child`]): a new mount namespace, every mount made a slave of the
//! host's (so nothing the child mounts propagates back, while mounts the host makes later still
//! show), then the bind mounts. The child never allocates.
//!
//! A target whose directory does not exist on the host (`/run/secrets/...` on most machines)
//! is never created on the host: the nearest existing ancestor (`/run`) gets a tmpfs inside
//! the child's namespace, whose entries are the host's ones bound back in place (directories
//! and files bound, symlinks recreated), and the missing directories are made on that tmpfs.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{DataplaneError, Result, io_ctx};
use crate::sys::cpath;

/// One step of a plan, with its paths already converted for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `mount(src, dst, MS_BIND | MS_REC)`.
    Bind { src: CString, dst: CString },
    /// A fresh tmpfs on `dst`.
    Tmpfs { dst: CString },
    /// `mkdir(path, 0755)`; an existing directory is fine.
    Mkdir { path: CString },
    /// Creates an empty file (a mount point for a file).
    Touch { path: CString },
    /// `symlink(target, path)`.
    Symlink { target: CString, path: CString },
    /// `umount2(path, MNT_DETACH)`.
    Detach { path: CString },
}

/// What a child's private mount namespace looks like; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPlan {
    steps: Vec<Step>,
}

/// What kind of entry a directory holds, as far as re-exposing it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(PathBuf),
}

fn c(path: &Path) -> Result<CString> {
    cpath(path).map_err(io_ctx(|| format!("path {}", path.display())))
}

impl MountPlan {
    pub fn new() -> MountPlan {
        MountPlan::default()
    }

    /// Whether the plan mounts nothing (then no mount namespace is made either).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Binds the file `source` over the existing file `target` (symlinks in `target` are
    /// followed by the kernel, so the file they lead to is covered, in the child only). A
    /// `target` the host does not have is skipped: the file is the host's business.
    pub fn bind_file(&mut self, source: &Path, target: &Path) -> Result<&mut MountPlan> {
        if std::fs::metadata(source).is_err() {
            return Err(DataplaneError::InvalidArgument {
                what: "bind mount source",
                value: source.display().to_string(),
            });
        }
        if std::fs::metadata(target).is_ok_and(|m| m.is_file()) {
            self.steps.push(Step::Bind {
                src: c(source)?,
                dst: c(target)?,
            });
        }
        Ok(self)
    }

    /// Makes the directory `source` appear at `target`, creating `target`'s missing
    /// directories on a child-only tmpfs (see the module documentation). `target` must be
    /// absolute.
    pub fn bind_dir(&mut self, source: &Path, target: &Path) -> Result<&mut MountPlan> {
        if !source.is_dir() || !target.is_absolute() {
            return Err(DataplaneError::InvalidArgument {
                what: "directory bind mount",
                value: format!("{} -> {}", source.display(), target.display()),
            });
        }
        // The kernel resolves symlinks in the target; resolve the part that exists the same
        // way so the tmpfs lands on a real directory.
        let (existing, missing) = split_existing(target);
        let existing = std::fs::canonicalize(&existing)
            .map_err(io_ctx(|| format!("resolve {}", existing.display())))?;
        if !missing.is_empty() && existing == Path::new("/") {
            return Err(DataplaneError::InvalidArgument {
                what: "directory bind mount target (would shadow /)",
                value: target.display().to_string(),
            });
        }
        if missing.is_empty() {
            self.steps.push(Step::Bind {
                src: c(source)?,
                dst: c(&existing)?,
            });
            return Ok(self);
        }
        let entries =
            list_entries(&existing).map_err(io_ctx(|| format!("list {}", existing.display())))?;
        let shadow = source.with_extension("hostview");
        std::fs::create_dir_all(&shadow)
            .map_err(io_ctx(|| format!("mkdir {}", shadow.display())))?;
        self.steps.extend(shadow_steps(
            &existing, &shadow, &entries, &missing, source,
        )?);
        Ok(self)
    }

    /// Carries the plan out in the calling process: a new mount namespace, host mounts made
    /// slaves, then each step. Meant for a `pre_exec` hook: it only makes system calls on
    /// strings prepared earlier.
    pub fn apply_in_child(&self) -> io::Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        crate::sys::unshare(libc::CLONE_NEWNS)?;
        raw_mount(c"none", c"/", None, libc::MS_REC | libc::MS_SLAVE)?;
        for step in &self.steps {
            match step {
                Step::Bind { src, dst } => raw_mount(src, dst, None, libc::MS_BIND | libc::MS_REC)?,
                Step::Tmpfs { dst } => raw_mount(
                    c"tmpfs",
                    dst,
                    Some(c"tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                )?,
                Step::Mkdir { path } => {
                    // SAFETY: valid C string.
                    if unsafe { libc::mkdir(path.as_ptr(), 0o755) } < 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(e);
                        }
                    }
                }
                Step::Touch { path } => {
                    // SAFETY: valid C string; the fd is closed right away.
                    let fd = unsafe {
                        libc::open(
                            path.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o644,
                        )
                    };
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // SAFETY: fd was just opened by us.
                    unsafe { libc::close(fd) };
                }
                Step::Symlink { target, path } => {
                    // SAFETY: valid C strings.
                    if unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) } < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Step::Detach { path } => {
                    // SAFETY: valid C string.
                    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
        }
        Ok(())
    }
}

fn raw_mount(
    src: &std::ffi::CStr,
    dst: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    // SAFETY: all pointers are valid NUL-terminated strings or NULL.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The longest existing prefix of `target` and the names after it.
fn split_existing(target: &Path) -> (PathBuf, Vec<String>) {
    let mut existing = target.to_path_buf();
    let mut missing = Vec::new();
    while std::fs::metadata(&existing).is_err() {
        let Some(name) = existing
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            break;
        };
        missing.push(name);
        if !existing.pop() {
            break;
        }
    }
    missing.reverse();
    (existing, missing)
}

fn list_entries(dir: &Path) -> io::Result<Vec<(String, EntryKind)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ty = e.file_type()?;
        let kind = if ty.is_symlink() {
            EntryKind::Symlink(std::fs::read_link(e.path())?)
        } else if ty.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        out.push((name, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The steps that put a tmpfs on `existing` showing its old `entries` (reached through
/// `shadow`, a bind of the old directory) plus the `missing` directories, with `source`
/// bound on the last of them.
fn shadow_steps(
    existing: &Path,
    shadow: &Path,
    entries: &[(String, EntryKind)],
    missing: &[String],
    source: &Path,
) -> Result<Vec<Step>> {
    let mut steps = vec![
        Step::Bind {
            src: c(existing)?,
            dst: c(shadow)?,
        },
        Step::Tmpfs { dst: c(existing)? },
    ];
    for (name, kind) in entries {
        let at = existing.join(name);
        match kind {
            EntryKind::Dir => {
                steps.push(Step::Mkdir { path: c(&at)? });
                steps.push(Step::Bind {
                    src: c(&shadow.join(name))?,
                    dst: c(&at)?,
                });
            }
            EntryKind::File => {
                steps.push(Step::Touch { path: c(&at)? });
                steps.push(Step::Bind {
                    src: c(&shadow.join(name))?,
                    dst: c(&at)?,
                });
            }
            EntryKind::Symlink(target) => steps.push(Step::Symlink {
                target: c(target)?,
                path: c(&at)?,
            }),
        }
    }
    let mut dir = existing.to_path_buf();
    for name in missing {
        dir.push(name);
        steps.push(Step::Mkdir { path: c(&dir)? });
    }
    steps.push(Step::Bind {
        src: c(source)?,
        dst: c(&dir)?,
    });
    steps.push(Step::Detach { path: c(shadow)? });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str) -> CString {
        CString::new(p).expect("no NUL")
    }

    #[test]
    fn a_missing_directory_is_made_on_a_tmpfs_that_shows_the_old_entries() {
        let steps = shadow_steps(
            Path::new("/run"),
            Path::new("/state/sa.hostview"),
            &[
                ("netns".into(), EntryKind::Dir),
                ("adduser".into(), EntryKind::File),
                ("shm".into(), EntryKind::Symlink("/dev/shm".into())),
            ],
            &["secrets".into(), "kubernetes.io".into()],
            Path::new("/state/sa"),
        )
        .expect("plan");
        assert_eq!(
            steps,
            vec![
                Step::Bind {
                    src: s("/run"),
                    dst: s("/state/sa.hostview")
                },
                Step::Tmpfs { dst: s("/run") },
                Step::Mkdir {
                    path: s("/run/netns")
                },
                Step::Bind {
                    src: s("/state/sa.hostview/netns"),
                    dst: s("/run/netns")
                },
                Step::Touch {
                    path: s("/run/adduser")
                },
                Step::Bind {
                    src: s("/state/sa.hostview/adduser"),
                    dst: s("/run/adduser")
                },
                Step::Symlink {
                    target: s("/dev/shm"),
                    path: s("/run/shm")
                },
                Step::Mkdir {
                    path: s("/run/secrets")
                },
                Step::Mkdir {
                    path: s("/run/secrets/kubernetes.io")
                },
                Step::Bind {
                    src: s("/state/sa"),
                    dst: s("/run/secrets/kubernetes.io")
                },
                Step::Detach {
                    path: s("/state/sa.hostview")
                },
            ]
        );
    }

    #[test]
    fn missing_prefix_is_split_off() {
        let (existing, missing) = split_existing(Path::new("/proc/nonexistent-kubelab/a/b"));
        assert_eq!(existing, PathBuf::from("/proc"));
        assert_eq!(missing, vec!["nonexistent-kubelab", "a", "b"]);
    }

    #[test]
    fn targets_the_host_lacks_are_skipped_and_sources_must_exist() {
        let dir = tempfile_dir();
        let src = dir.join("resolv.conf");
        std::fs::write(&src, "nameserver 10.96.0.10\n").expect("write");
        let mut plan = MountPlan::new();
        plan.bind_file(&src, Path::new("/nonexistent-kubelab/resolv.conf"))
            .expect("skipped");
        assert!(plan.is_empty());
        assert!(
            plan.bind_file(&dir.join("missing"), Path::new("/etc/hosts"))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kltest-exec-mounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
