//! The crate's one error type: why `dispatchd serve` could not start or had to stop.
//!
//! Errors a *request* meets are not here: they are [`crate::http::ApiError`]s, which
//! carry the status and the stable error code of API.md. This enum is for the process:
//! configuration, secrets, the listening socket and the engine's start-up.

/// Why the server could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required secret is not in the environment (exit code 2).
    #[error(
        "environment variable {0} is not set: secrets come from the environment only (use --dev for throwaway ones)"
    )]
    MissingSecret(String),
    /// A secret is too short to be safe.
    #[error("environment variable {name} must be at least {min} bytes")]
    WeakSecret {
        /// The variable.
        name: String,
        /// Its least length.
        min: usize,
    },
    /// A secret is long enough but guessable: too few bits for its alphabet, or too
    /// repetitive (`config::secret_weakness`, exit code 2).
    #[error("environment variable {name} is not a usable secret: {why} (generate one: openssl rand -hex 32)")]
    GuessableSecret {
        /// The variable.
        name: String,
        /// Why (never the value).
        why: String,
    },
    /// The configuration file is unreadable or wrong.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line or configuration value is out of range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The engine refused to open or to seed.
    #[error("engine: {0}")]
    Engine(#[from] dispatch_core::Error),
    /// Other I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    // ----- issue 21 -----
    /// The cluster could not be joined (its settings: exit code 2; NATS: 1).
    #[error("cluster: {0}")]
    Cluster(#[from] dispatch_cluster::ClusterError),
    /// A node whose checkpoint the stream no longer reaches could not catch up from a
    /// peer's (`cluster::catch_up`).
    #[error("catching up from a peer's checkpoint: {0}")]
    CatchUp(String),
}

impl Error {
    /// The process exit code for this error: 2 for a configuration the operator must
    /// fix (missing secrets, bad config), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::MissingSecret(_)
            | Error::WeakSecret { .. }
            | Error::GuessableSecret { .. }
            | Error::Config { .. }
            | Error::Setting(_)
            | Error::Cluster(dispatch_cluster::ClusterError::Setting(_)) => 2,
            _ => 1,
        }
    }
}
