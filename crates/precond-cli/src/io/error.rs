//! The readers' typed error: every variant names where (line or byte) and what was expected.

/// A file that cannot be read as a matrix. The `Display` text is one line that names the
/// location (1-based line number, or 0-based byte offset for binary `.npy`) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path given.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A text format problem at a given line.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// A binary format problem at a given byte offset.
    #[error("byte {offset}: {message}")]
    Byte {
        /// 0-based byte offset into the file.
        offset: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// The file ended before all expected content was read.
    #[error("unexpected end of file: {expected}")]
    Truncated {
        /// What was still expected.
        expected: String,
    },
    /// The matrix has no entries.
    #[error("empty matrix: shape {rows}x{cols}, at least one row and one column are required")]
    Empty {
        /// Rows declared.
        rows: usize,
        /// Columns declared.
        cols: usize,
    },
    /// The declared matrix is larger than the dense diagnostics accept.
    #[error("matrix {rows}x{cols} is too large for dense diagnostics (at most {limit} entries)")]
    TooLarge {
        /// Rows declared.
        rows: usize,
        /// Columns declared.
        cols: usize,
        /// The entry limit ([`MAX_ENTRIES`](crate::io::MAX_ENTRIES)).
        limit: usize,
    },
    /// The input is longer than the cap on the bytes read.
    #[error("input longer than {limit} bytes, the cap set by --max-bytes: reading stopped there")]
    TooLong {
        /// The path given (`-` for standard input).
        path: String,
        /// The cap, in bytes.
        limit: u64,
    },
    /// The format could not be told from the file name.
    #[error("cannot tell the format of {path}: use --format mtx|npy|csv or a .mtx/.npy/.csv name")]
    UnknownFormat {
        /// The path given.
        path: String,
    },
}

pub(crate) fn line_err(line: usize, message: impl Into<String>) -> ReadError {
    ReadError::Line {
        line,
        message: message.into(),
    }
}

pub(crate) fn byte_err(offset: usize, message: impl Into<String>) -> ReadError {
    ReadError::Byte {
        offset,
        message: message.into(),
    }
}
