//! The `busybox` image: runs the container's command with the *machine's* programs (a built-in
//! image carries no filesystem), `sh` when the pod names none (the image's default `CMD`).
//!
//! The program is spawned as a child and waited for rather than exec'd: this process runs the
//! log shim's threads that copy the program's stdout and stderr into the CRI log file, and an
//! exec would end them. So that the program still sees what a container's PID 1 would, SIGTERM
//! and SIGINT sent to this process (the kubelet stopping the container) are forwarded to it, and
//! this process exits with the program's code, or 128 + the signal that killed it, which is what
//! a container runtime reports.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

/// The image's default command when the pod gives neither `command` nor `args`.
pub const DEFAULT_COMMAND: &str = "sh";

/// What containerd reports for a container whose program cannot be started.
pub const START_ERROR_EXIT_CODE: i32 = 128;

/// The pid signals are forwarded to (0: not started yet).
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the child existed, forwarded as soon as it does.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// The program to run: `command` + `args` when the pod sets `command` (busybox has no
/// entrypoint, so `command` replaces nothing but `CMD`), else `args` alone, else `sh`.
pub fn effective_argv(command: &[String], args: &[String]) -> Vec<String> {
    if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        args.to_vec()
    } else {
        vec![DEFAULT_COMMAND.to_string()]
    }
}

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, signal);
        }
    } else {
        PENDING.store(signal, Ordering::SeqCst);
    }
}

/// Installs [`forward`] for SIGTERM and SIGINT in this process.
fn install_forwarding() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is an
        // `extern "C" fn(c_int)` that only touches atomics and calls kill(2).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `argv` as a child with this process's stdio and environment, forwarding SIGTERM and
/// SIGINT to it, and returns its exit code (128 + signal if a signal killed it). An `argv` that
/// cannot be started is an error (the caller reports it as containerd's start error).
pub fn run_program(argv: &[String]) -> io::Result<i32> {
    let Some((program, rest)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no command"));
    };
    // The handler goes first: a signal arriving while the child is being made is remembered
    // instead of killing this process with the default action. The child does not inherit the
    // handler (exec resets it) and std resets its signal mask.
    install_forwarding()?;
    let mut child = Command::new(program).args(rest).spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 && pid > 0 {
        // SAFETY: kill(2) with plain integers.
        unsafe {
            libc::kill(pid, pending);
        }
    }
    let status = child.wait()?;
    CHILD.store(0, Ordering::SeqCst);
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => START_ERROR_EXIT_CODE,
    })
}

/// Runs a busybox container in the calling process (see the module documentation).
pub fn run(command: &[String], args: &[String]) -> ExitCode {
    let argv = effective_argv(command, args);
    let code = match run_program(&argv) {
        Ok(code) => code,
        Err(e) => {
            let name = argv.first().map_or("", String::as_str);
            let why = if e.kind() == io::ErrorKind::NotFound {
                "executable file not found in $PATH".to_string()
            } else {
                e.to_string()
            };
            eprintln!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{name}\": {why}: unknown"
            );
            START_ERROR_EXIT_CODE
        }
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn command_args_and_default() {
        assert_eq!(effective_argv(&[], &[]), argv(&["sh"]));
        assert_eq!(
            effective_argv(&argv(&["sh", "-c"]), &argv(&["echo hi"])),
            argv(&["sh", "-c", "echo hi"])
        );
        assert_eq!(
            effective_argv(&[], &argv(&["sleep", "5"])),
            argv(&["sleep", "5"])
        );
    }

    #[test]
    fn exit_codes_and_signals_are_reported_like_a_runtime() {
        assert_eq!(run_program(&argv(&["sh", "-c", "exit 0"])).unwrap(), 0);
        assert_eq!(run_program(&argv(&["sh", "-c", "exit 3"])).unwrap(), 3);
        assert_eq!(
            run_program(&argv(&["sh", "-c", "kill -KILL $$"])).unwrap(),
            137
        );
        let missing = run_program(&argv(&["kubelab-no-such-program"])).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    /// Set in the re-executed test binary: it plays the container process.
    const CHILD_ENV: &str = "KUBELAB_BUSYBOX_SIGNAL_TEST";

    /// SIGTERM to the container process reaches the program, which decides how to exit; the
    /// container process then exits with the program's code (7 here, from the trap). Without
    /// forwarding the default action would kill the container process instead.
    #[test]
    fn sigterm_is_forwarded_to_the_program() {
        if std::env::var_os(CHILD_ENV).is_some() {
            let code = run_program(&argv(&[
                "sh",
                "-c",
                "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
            ]))
            .unwrap();
            std::process::exit(code);
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "busybox::tests::sigterm_is_forwarded_to_the_program",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // libtest may print its own "test ... " prefix on the same line.
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.ends_with("ready"));
        assert!(ready, "the program never started");
        // SAFETY: kill(2) with plain integers, on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(7), "{status:?} {rest:?}");
        assert!(rest.iter().any(|l| l.contains("got TERM")), "{rest:?}");
    }
}
