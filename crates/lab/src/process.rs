//! The lab's background process, seen from outside: is the pid in the pid file still *our*
//! `kubelab lab-run --name NAME` (pids are reused), and stopping it. Nothing here signals a
//! process whose command line is not ours.

use std::path::Path;
use std::time::{Duration, Instant};

/// The hidden subcommand the background process runs.
pub const RUN_SUBCOMMAND: &str = "lab-run";

/// The argv of a process, or `None` if it is gone (or a zombie, whose cmdline is empty).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `argv` is `kubelab lab-run ... --name <name> ... --state-dir <dir>`.
pub fn is_lab_process(argv: &[String], name: &str, state_dir: &Path) -> bool {
    let program_is_kubelab = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|f| f.to_string_lossy().starts_with("kubelab"));
    let flag = |flag: &str| {
        argv.windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].as_str())
    };
    program_is_kubelab
        && argv.get(1).map(String::as_str) == Some(RUN_SUBCOMMAND)
        && flag("--name") == Some(name)
        && flag("--state-dir").map(Path::new) == Some(state_dir)
}

/// Reads a pid file; `None` if missing or not a number.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The lab's process, if the pid file names a live process that is our lab-run.
pub fn running_lab(pid_file: &Path, name: &str, state_dir: &Path) -> Option<u32> {
    let pid = read_pid(pid_file)?;
    let argv = cmdline(pid)?;
    (is_alive(pid) && is_lab_process(&argv, name, state_dir)).then_some(pid)
}

fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for `grace` and was killed.
    Killed,
    /// It was gone already.
    NotRunning,
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Callers check first that `pid` is ours
/// ([`running_lab`]); this re-checks the command line right before each signal, so a pid reused
/// in between is never hit.
pub fn stop(pid: u32, name: &str, state_dir: &Path, grace: Duration) -> std::io::Result<Stopped> {
    let ours =
        || cmdline(pid).is_some_and(|a| is_lab_process(&a, name, state_dir)) && is_alive(pid);
    if !ours() {
        return Ok(Stopped::NotRunning);
    }
    match signal(pid, libc::SIGTERM) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Stopped::NotRunning),
        Err(e) => return Err(e),
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !ours() {
            return Ok(Stopped::Terminated);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if ours() {
        match signal(pid, libc::SIGKILL) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Stopped::Terminated),
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ours() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(Stopped::Killed);
    }
    Ok(Stopped::Terminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn recognises_only_our_lab_process() {
        let dir = Path::new("/s/kubelab/t1");
        assert!(is_lab_process(
            &argv("/usr/bin/kubelab lab-run --name t1 --workers 2 --state-dir /s/kubelab/t1"),
            "t1",
            dir
        ));
        assert!(!is_lab_process(
            &argv("/usr/bin/kubelab lab-run --name t2 --workers 2 --state-dir /s/kubelab/t1"),
            "t1",
            dir
        ));
        assert!(!is_lab_process(
            &argv("/usr/bin/kubelab server --name t1 --state-dir /s/kubelab/t1"),
            "t1",
            dir
        ));
        assert!(!is_lab_process(
            &argv("/usr/bin/sleep lab-run --name t1 --state-dir /s/kubelab/t1"),
            "t1",
            dir
        ));
        assert!(!is_lab_process(
            &argv("/usr/bin/kubelab lab-run --name t1"),
            "t1",
            dir
        ));
    }

    #[test]
    fn this_process_is_alive_and_not_a_lab() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(cmdline(me).is_some());
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        std::fs::write(&pid_file, me.to_string()).unwrap();
        assert_eq!(running_lab(&pid_file, "t1", dir.path()), None);
        // stop() refuses to signal a process that is not our lab (this test process).
        assert_eq!(
            stop(me, "t1", dir.path(), Duration::from_millis(10)).unwrap(),
            Stopped::NotRunning
        );
    }

    #[test]
    fn pid_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pid");
        assert_eq!(read_pid(&f), None);
        std::fs::write(&f, "123\n").unwrap();
        assert_eq!(read_pid(&f), Some(123));
        std::fs::write(&f, "x").unwrap();
        assert_eq!(read_pid(&f), None);
    }
}
