//! Errors of this crate. The pure model never fails; only parsing a CIDR and running `nft` do.

/// Everything that can go wrong here.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A string that is not `a.b.c.d/len`.
    #[error("invalid IPv4 CIDR {0:?}")]
    InvalidCidr(String),
    /// `nft` could not be started or fed.
    #[error("running nft: {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` ran and refused the script or command.
    #[error("nft {args} failed ({status}): {stderr}")]
    Nft {
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// A rule, key or declaration the netlink encoder does not know; the `nft -f` script of
    /// the same transaction still works.
    #[error("not encodable as nf_tables netlink: {0}")]
    Unsupported(String),
    /// The netlink socket failed (open, send, receive).
    #[error("nf_tables netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused the batch (message `seq`; 0 is the batch as a whole, at commit).
    #[error("nf_tables refused the batch (message {seq}): {error}")]
    Kernel {
        seq: u32,
        #[source]
        error: std::io::Error,
    },
    /// Entering the target network namespace failed.
    #[error("network namespace: {0}")]
    Netns(#[source] dataplane::DataplaneError),
}
