//! The exit statuses of the `precond` program, one per outcome, as `precond --help` lists them.
//!
//! | status | meaning |
//! |---|---|
//! | [`OK`] (0) | success; for `report`, every claim holds |
//! | [`ERROR`] (1) | an input or runtime error: unreadable or malformed file, a library call that failed, an output that could not be written |
//! | [`USAGE`] (2) | a usage error: the command line does not parse (clap's own errors), or an option's value is rejected (`error: invalid argument --X: ...`) |
//! | [`CLAIM_FAILS`] (3) | `report` ran and wrote its files, but a claim of the report does not hold |

/// Success.
pub const OK: u8 = 0;
/// An input or runtime error.
pub const ERROR: u8 = 1;
/// A usage error (the value clap uses for its own parse errors).
pub const USAGE: u8 = 2;
/// `report`: a claim of the report does not hold.
pub const CLAIM_FAILS: u8 = 3;

/// The exit statuses as `--help` prints them (the `after_help` text of every command).
pub const HELP: &str = "Exit status:
  0  success (report: every claim holds)
  1  input or runtime error (unreadable or malformed input, a failed computation, an unwritable output)
  2  usage error (the command line does not parse, or an option's value is rejected)
  3  report: a claim of the report does not hold (the report is still written)";
