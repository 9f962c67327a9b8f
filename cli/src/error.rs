//! Exit codes and the one error type of the CLI.

use std::fmt;
use std::process::ExitCode;

/// Success, or a key that verified.
pub const EXIT_OK: u8 = 0;
/// `verify` ran and the key is not valid (any outcome but `valid`).
pub const EXIT_NOT_VALID: u8 = 1;
/// Bad usage or input: a bad argument, an unknown key id, a refused state change.
pub const EXIT_USAGE: u8 = 2;
/// An operational failure: I/O, a missing or corrupt store, a wrong pepper, a lock.
pub const EXIT_OPERATIONAL: u8 = 3;
/// The store's database cannot be reached now (down, unreachable, refused the connection):
/// nothing is known about the key or the request, and retrying later may succeed. Apart
/// from 3 so that a script can tell "try again" from "something is broken".
pub const EXIT_UNAVAILABLE: u8 = 4;

/// The exit code for an error of the core: the one table in which its kinds are sorted into
/// "the caller asked for something wrong" (2), "the store or the machine failed" (3) and
/// "the store's database cannot be reached now, try again" (4).
/// `None` for a kind this CLI does not know yet (a later core; see [`core_exit_code`]).
fn exit_code_of(kind: keystead::ErrorKind) -> Option<u8> {
    use keystead::ErrorKind as K;
    Some(match kind {
        K::InvalidArgument | K::KeyNotFound | K::InvalidState | K::PrefixMismatch => EXIT_USAGE,
        K::WrongPepper | K::UnsupportedVersion | K::Store | K::Closed => EXIT_OPERATIONAL,
        K::Unavailable => EXIT_UNAVAILABLE,
        _ => return None,
    })
}

/// The exit code for an error of the core ([`exit_code_of`] its kind; an unknown kind is an
/// operational failure).
pub fn core_exit_code(error: &keystead::Error) -> u8 {
    exit_code_of(error.kind()).unwrap_or(EXIT_OPERATIONAL)
}

/// A failed command: an exit code and a message for stderr (never containing key material).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// Print nothing (stdout was closed by the reader, e.g. `keystead list | head -1`).
    pub quiet: bool,
}

impl Failure {
    /// Bad usage or input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
            quiet: false,
        }
    }

    /// An operational failure (exit 3).
    pub fn operational(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_OPERATIONAL,
            message: message.into(),
            quiet: false,
        }
    }

    /// The same failure with `context: ` in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Writing to stdout failed.
    pub fn output(error: &std::io::Error) -> Self {
        Failure {
            code: EXIT_OPERATIONAL,
            message: format!("cannot write to stdout: {error}"),
            quiet: error.kind() == std::io::ErrorKind::BrokenPipe,
        }
    }

    /// Prints `keystead: <message>` to stderr and gives the exit code. Anything shaped like a
    /// key is redacted first, and characters that are not printable are escaped, whatever a
    /// message quotes.
    pub fn report(&self) -> ExitCode {
        if !self.quiet {
            let message = keystead::redact_keys(&self.message);
            eprintln!("keystead: {}", crate::output::printable(&message));
        }
        ExitCode::from(self.code)
    }
}

impl From<keystead::Error> for Failure {
    fn from(error: keystead::Error) -> Self {
        Failure {
            code: core_exit_code(&error),
            message: error.to_string(),
            quiet: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keystead::Error;

    #[test]
    fn every_core_error_kind_has_an_exit_code() {
        for &kind in keystead::ErrorKind::ALL {
            assert!(exit_code_of(kind).is_some(), "{kind:?} has no exit code");
        }
    }

    #[test]
    fn core_errors_map_to_2_3_or_4() {
        let id: keystead::KeyId = "00000000000g".parse().unwrap();
        let usage = [
            Error::InvalidArgument("x".into()),
            Error::KeyNotFound(id),
            Error::InvalidState {
                id,
                state: "revoked",
                operation: "enabled",
            },
            Error::PrefixMismatch {
                stored: "ks".into(),
                requested: "hub".into(),
            },
        ];
        for e in &usage {
            assert_eq!(core_exit_code(e), EXIT_USAGE, "{e}");
        }
        let operational = [
            Error::WrongPepper,
            Error::UnsupportedVersion {
                what: "schema",
                found: 9,
                supported: 1,
            },
            Error::Corrupt("x".into()),
            Error::Locked("x".into()),
            Error::Storage("x".into()),
            Error::Io(std::io::Error::other("x")),
            Error::InsecurePermissions { mode: 0o666 },
            Error::StoreReplaced,
            Error::Closed,
        ];
        for e in &operational {
            assert_eq!(core_exit_code(e), EXIT_OPERATIONAL, "{e}");
        }
        // An unreachable database is neither bad input nor a broken store: its own code.
        let unavailable = Error::StoreUnavailable("connection refused".into());
        assert_eq!(core_exit_code(&unavailable), EXIT_UNAVAILABLE);
        let failure = Failure::from(unavailable);
        assert_eq!(failure.code, EXIT_UNAVAILABLE);
        assert!(
            failure.message.contains("unavailable"),
            "{}",
            failure.message
        );
    }

    /// Every exit code is its own: a kind's code never collides with `verify`'s 1 or with
    /// another class, and the help text and docs/cli.md list each one.
    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let codes = [
            EXIT_OK,
            EXIT_NOT_VALID,
            EXIT_USAGE,
            EXIT_OPERATIONAL,
            EXIT_UNAVAILABLE,
        ];
        for (i, a) in codes.iter().enumerate() {
            assert!(!codes[i + 1..].contains(a), "exit code {a} is used twice");
        }
        let docs = include_str!("../../docs/cli.md");
        let help = crate::AFTER_HELP;
        for code in codes {
            assert!(
                docs.contains(&format!("| {code} |")),
                "docs/cli.md lacks exit {code}"
            );
            assert!(
                help.contains(&format!("\n  {code}  ")),
                "--help lacks exit {code}"
            );
        }
    }
}
