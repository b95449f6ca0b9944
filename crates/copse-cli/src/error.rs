//! Exit codes, and the error that carries one. Everything else is an `anyhow::Error`, which
//! exits with [`Code::Input`].

use std::fmt;
use std::path::Path;

/// The process exit status for each kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An internal error (a bug in copse).
    Internal = 1,
    /// Bad input or usage: a missing or unreadable file, not an index, a malformed input line,
    /// a wrong dimension, an unknown label or item.
    Input = 2,
    /// `verify`: not a copse index, an unsupported format version, or a corrupt header.
    NotAnIndex = 3,
    /// `verify`: a section fails its checksum.
    Checksum = 4,
    /// `verify`: the structure is inconsistent (file length, section placement, tree nodes).
    Corrupt = 5,
}

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  internal error (a bug in copse)
  2  bad input or usage: missing or unreadable file, not an index, malformed input,
     wrong dimension, unknown label or item
  3  (verify) not a copse index, unsupported format version, or corrupt header
  4  (verify) a section fails its checksum
  5  (verify) inconsistent structure: file length, section placement, tree nodes,
     or items the trees do not reach";

/// An error with its own exit status.
#[derive(Debug)]
pub struct Coded {
    /// The exit status.
    pub code: Code,
    /// The message (one line).
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A library error about the index at `path`, as one line: the path, then what is wrong (the
/// library's I/O errors already name the path).
pub fn index_error(path: &Path, e: &copse::Error) -> String {
    match e {
        copse::Error::Io { source, .. } => format!("{}: {source}", path.display()),
        other => format!("{}: {other}", path.display()),
    }
}

/// Which exit status `verify` gives for a library error.
pub fn verify_code(e: &copse::Error) -> Code {
    use copse::FormatError as F;
    match e {
        copse::Error::Format(f) => match f {
            F::NotAnIndex { .. }
            | F::UnsupportedVersion { .. }
            | F::HeaderChecksum
            | F::UnknownMetric(_)
            | F::BadHeader(_) => Code::NotAnIndex,
            F::SectionChecksum { .. } => Code::Checksum,
            F::Io(_) | F::UnknownMetricName(_) => Code::Input,
            _ => Code::Corrupt,
        },
        copse::Error::Query(_) | copse::Error::Annoy(copse::AnnoyError::Corrupt(_)) => {
            Code::Corrupt
        }
        _ => Code::Input,
    }
}
