//! The one error type of this crate.

/// Everything that can go wrong while acting on the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A system call or file operation failed; `context` says what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A child program (usually `ip`) exited unsuccessfully.
    #[error("`{program} {}` failed ({status}): {}", args.join(" "), stderr.trim_end())]
    Command {
        program: String,
        args: Vec<String>,
        status: String,
        stderr: String,
    },
    /// One line of an `ip -batch` script failed; iproute2 stops there (no `-force`).
    #[error(
        "ip batch{} failed at line {}: `{}`: {}",
        netns.as_deref().map(|ns| format!(" in netns {ns}")).unwrap_or_default(),
        line.map_or_else(|| "?".to_string(), |l| l.to_string()),
        command.as_deref().unwrap_or("?"),
        stderr.trim_end()
    )]
    IpBatch {
        netns: Option<String>,
        /// 1-based line number iproute2 reported (`Command failed -:N`).
        line: Option<usize>,
        /// The script line at that number.
        command: Option<String>,
        stderr: String,
    },
    /// A program's output did not have the expected shape.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A name or value that would be unsafe to pass on (e.g. whitespace in an interface name,
    /// which would split an `ip -batch` line).
    #[error("invalid {what}: {value:?}")]
    InvalidArgument { what: &'static str, value: String },
    /// A helper thread running caller code inside a namespace panicked.
    #[error("helper thread inside {0} panicked")]
    ThreadPanicked(String),
}

/// Result with [`DataplaneError`] as the default error.
pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;

impl DataplaneError {
    /// Wraps an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DataplaneError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for `map_err` on I/O results: `.map_err(io_ctx(|| format!(..)))`.
pub(crate) fn io_ctx<F: FnOnce() -> String>(
    context: F,
) -> impl FnOnce(std::io::Error) -> DataplaneError {
    move |source| DataplaneError::io(context(), source)
}
