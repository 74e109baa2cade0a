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
    /// Entering the target network namespace failed.
    #[error("network namespace: {0}")]
    Netns(#[source] dataplane::DataplaneError),
}
