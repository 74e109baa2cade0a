//! The thin effectful shell: runs the `nft` binary, one process per transaction, in the
//! caller's network namespace or in a chosen one.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use dataplane::netns::NsFds;

use crate::error::ProxyError;
use crate::ruleset::TABLE;

/// Runs `nft` against table `ip kube-proxy`.
#[derive(Debug, Clone, Default)]
pub struct Nft {
    /// Where to run; `None` means the namespace of the calling thread.
    netns: Option<NsFds>,
}

impl Nft {
    /// `nft` in the calling thread's network namespace (the node agent runs inside its node).
    pub fn new() -> Nft {
        Nft { netns: None }
    }

    /// `nft` inside the network namespace mounted at `netns` (e.g. `/run/netns/NAME`); only the
    /// child process enters it, the caller stays where it is.
    pub fn in_netns(netns: &Path) -> Result<Nft, ProxyError> {
        let fds = NsFds::open(netns, None).map_err(ProxyError::Netns)?;
        Ok(Nft { netns: Some(fds) })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nft");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(fds) = &self.netns {
            fds.apply_to(&mut cmd);
        }
        cmd
    }

    /// Applies `script` as one atomic transaction (`nft -f -`): all of it or nothing.
    pub fn apply(&self, script: &str) -> Result<(), ProxyError> {
        let mut cmd = self.command(&["-f", "-"]);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(ProxyError::Spawn)?;
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(script.as_bytes()),
            None => Ok(()),
        };
        // Wait even when writing failed (nft exited early on a parse error): its stderr says why.
        let output = child.wait_with_output().map_err(ProxyError::Spawn)?;
        check("-f -", &output)?;
        written.map_err(ProxyError::Spawn)
    }

    /// `nft list table ip kube-proxy`.
    pub fn list_table(&self) -> Result<String, ProxyError> {
        let output = self
            .command(&["list", "table", "ip", "kube-proxy"])
            .output()
            .map_err(ProxyError::Spawn)?;
        check(&format!("list table {TABLE}"), &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `nft list ruleset` (every table of the namespace, not only ours).
    pub fn list_ruleset(&self) -> Result<String, ProxyError> {
        let output = self
            .command(&["list", "ruleset"])
            .output()
            .map_err(ProxyError::Spawn)?;
        check("list ruleset", &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Removes table `ip kube-proxy` and everything in it; fine when it does not exist.
    pub fn delete_table(&self) -> Result<(), ProxyError> {
        // "add" first makes the transaction succeed when the table is absent, without having to
        // recognise nft's "No such file or directory" message.
        self.apply(&format!("add table {TABLE}\ndelete table {TABLE}\n"))
    }
}

fn check(args: &str, output: &std::process::Output) -> Result<(), ProxyError> {
    if output.status.success() {
        return Ok(());
    }
    Err(ProxyError::Nft {
        args: args.to_string(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
