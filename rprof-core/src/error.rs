use std::path::PathBuf;

/// Everything that can go wrong reading, merging or symbolizing a profile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input had no bytes at all.
    #[error("empty file: not a pprof profile")]
    Empty,
    /// A gzip stream that ends early or has a bad checksum.
    #[error("truncated or corrupt gzip data: {0}")]
    Gzip(#[source] std::io::Error),
    /// The bytes are not a protobuf `Profile` message.
    #[error("not a pprof profile (protobuf decoding failed: {0})")]
    Decode(#[from] prost::DecodeError),
    /// The input is past one of the decoder's limits (see [`crate::codec::Limits`]).
    #[error("refused: {0}")]
    TooLarge(String),
    /// The message decoded but breaks pprof's invariants.
    #[error("not a valid pprof profile: {0}")]
    Invalid(String),
    /// Profiles of different kinds cannot be merged.
    #[error("cannot merge profiles: {0}")]
    Merge(String),
    /// A report filter that cannot be used (a bad regular expression).
    #[error("{0}")]
    Filter(String),
    /// A report's function regular expression matched nothing (`peek`, `list`, `disasm`).
    #[error("{0}")]
    NoMatch(String),
    /// A sample type named on the command line is not in the profile.
    #[error("no sample type `{name}` in this profile (it has: {available})")]
    NoSuchSampleType {
        /// What was asked for.
        name: String,
        /// What the profile offers, comma separated.
        available: String,
    },
    /// A report option that does not fit the profiles: a column they lack, an amount in a unit
    /// their values are not in.
    #[error("{0}")]
    BadOption(String),
    /// A per-label report (`tests`, `check --by test`) over a profile with samples of which
    /// none carries the label: profiled before rprof labelled samples, or by another tool.
    #[error("input {input} has no `{key}` labels")]
    NoLabel {
        /// The label key asked for (`test`, ...).
        key: String,
        /// Which of the inputs (0-based), so the caller can name its file.
        input: usize,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A binary could not be read for symbolization.
    #[error("cannot symbolize with {path}: {reason}")]
    Symbolize {
        /// The binary.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
