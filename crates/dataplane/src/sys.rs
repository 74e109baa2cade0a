//! Small safe wrappers over the `libc` calls this crate needs. Each returns `io::Error` so the
//! callers add context; none of them switches namespaces on its own.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path to a C string; an interior NUL is an `InvalidInput` error.
pub(crate) fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a file read-only with `O_CLOEXEC` plus `extra` flags.
pub(crate) fn open(path: &Path, extra: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string; the returned fd is owned by us.
    let fd =
        check(unsafe { libc::open(c.as_ptr(), libc::O_CLOEXEC | extra, mode as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setns(fd, nstype)` for the calling thread.
pub(crate) fn setns(fd: RawFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on an fd; an invalid fd yields EBADF.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// `unshare(flags)` for the calling thread.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `mount(src, dst, NULL, flags, NULL)`.
pub(crate) fn mount(src: Option<&Path>, dst: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let dst = cpath(dst)?;
    let src = src.map(cpath).transpose()?;
    let none = c"none";
    let src_ptr = src.as_ref().map_or(none.as_ptr(), |s| s.as_ptr());
    // SAFETY: all pointers are valid NUL-terminated strings or NULL.
    check(unsafe {
        libc::mount(
            src_ptr,
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// `umount2(path, MNT_DETACH)`.
pub(crate) fn umount_detach(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// Whether `path` is a mounted namespace file (its filesystem is nsfs). `Ok(false)` if missing.
pub(crate) fn is_ns_mount(path: &Path) -> io::Result<bool> {
    let c = cpath(path)?;
    // SAFETY: `statfs` fills the zeroed struct we pass; the pointer is valid for the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    match check(unsafe { libc::statfs(c.as_ptr(), &mut st) }) {
        Ok(_) => Ok(st.f_type == libc::NSFS_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `sethostname` in the calling thread's UTS namespace.
pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `socket(domain, ty | SOCK_CLOEXEC, proto)` in the calling thread's network namespace.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned by the returned value.
    let fd = check(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` carrying `name`; `InvalidInput` if the name does not fit `IFNAMSIZ`.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// `ioctl(fd, request, &mut ifreq)`.
pub(crate) fn ioctl_ifreq(
    fd: &OwnedFd,
    request: libc::Ioctl,
    req: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: `req` is a valid, exclusively borrowed ifreq for the duration of the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) }).map(drop)
}

/// Sets `IFF_UP` on interface `name` in the calling thread's network namespace.
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req = ifreq(name)?;
    ioctl_ifreq(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | up;
    ioctl_ifreq(&sock, libc::SIOCSIFFLAGS, &mut req)
}

/// Sets the MTU of interface `name` in the calling thread's network namespace.
pub(crate) fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mtu too large"))?;
    ioctl_ifreq(&sock, libc::SIOCSIFMTU, &mut req)
}
