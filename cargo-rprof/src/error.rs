use std::path::PathBuf;

/// Everything the CLI reports to the user. Each variant prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line usage (clap's message, already formatted).
    #[error("{0}")]
    Usage(String),
    /// A profile file could not be read, decoded or reported.
    #[error("{}", profile_message(path, source))]
    Profile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rprof_core::Error,
    },
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The output would go into a directory that does not exist.
    #[error("cannot write the {what} profile to {path}: directory {dir} does not exist")]
    NoSuchDir {
        /// Which profile.
        what: &'static str,
        /// The requested file.
        path: PathBuf,
        /// Its missing directory.
        dir: PathBuf,
    },
    /// The output path cannot take a file: it is a directory, or its directory refuses new files.
    #[error("cannot write the {what} profile to {path}: {reason}")]
    BadOutput {
        /// Which profile.
        what: &'static str,
        /// The requested file.
        path: PathBuf,
        /// Why, in a few words.
        reason: String,
    },
    /// A profile could not be fetched from a URL (`top http://host/debug/pprof/heap`).
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// The URL, as requested.
        url: String,
        /// Why, in one line: the connection, the server's status and message, a timeout.
        reason: String,
    },
    /// cargo could not be started or queried.
    #[error("{0}")]
    Cargo(String),
    /// A run produced no profile at all.
    #[error("{0}")]
    NoProfile(String),
    /// A per-label report over a profile none of whose samples has the label.
    #[error("{path} has no `{key}` labels: profile it with a cargo rprof that labels samples per test (test, thread, binary, bench)")]
    NoLabel {
        /// The file.
        path: PathBuf,
        /// The label asked for.
        key: String,
    },
    /// An error of `cargo rprof check`, which exits 2 whatever it is (1 means "regressed").
    #[error(transparent)]
    Gate(Box<CliError>),
    /// Some other I/O failure, with context.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code for this error: 2 for usage errors (as clap and cargo do) and for
    /// a regression gate that could not check, 1 else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Gate(_) => 2,
            _ => 1,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `path: why`, without naming the path twice when the reason already starts with it (an I/O
/// error on that very file).
fn profile_message(path: &std::path::Path, source: &rprof_core::Error) -> String {
    match source {
        rprof_core::Error::Io { path: p, .. } if p == path => source.to_string(),
        _ => format!("{}: {source}", path.display()),
    }
}
