//! How a command fails: [`CliError`] carries the exit status and the error to print as
//! `bus: <error>: <cause>: <cause>`.
//!
//! Exit statuses: 0 ok, 1 a negative result, 2 an error, 3 no responders, 4 timeout. A write
//! to a closed stdout (EPIPE, as in `bus get ... | head -1`) ends the command with status 0
//! and prints nothing.

use std::fmt;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The command worked and the answer is "no" (fewer events than asked for, ...).
pub const EXIT_NEGATIVE: u8 = 1;
/// An error: bad input, an error answer of the broker, the broker unreachable.
pub const EXIT_ERROR: u8 = 2;
/// A request found no responders.
pub const EXIT_NO_RESPONDERS: u8 = 3;
/// The broker did not answer in time.
pub const EXIT_TIMEOUT: u8 = 4;

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A command's failure.
#[derive(Debug)]
pub struct CliError {
    /// The exit status.
    pub code: u8,
    /// What to print; `None` to exit quietly.
    pub error: Option<BoxError>,
}

impl CliError {
    /// An error with exit status 2.
    pub fn msg(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_ERROR,
            error: Some(message.into().into()),
        }
    }

    /// An error with `message` in front of `cause`, exit status 2.
    pub fn with_cause(message: impl Into<String>, cause: impl Into<BoxError>) -> CliError {
        CliError {
            code: EXIT_ERROR,
            error: Some(Box::new(Context {
                message: message.into(),
                cause: cause.into(),
            })),
        }
    }

    /// A negative result: `message` printed, exit status 1.
    pub fn negative(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_NEGATIVE,
            error: Some(message.into().into()),
        }
    }

    /// Time ran out before the result was complete (`bus put --confirm`): `message`
    /// printed, exit status 4.
    pub fn timeout(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_TIMEOUT,
            error: Some(message.into().into()),
        }
    }

    /// A client error, with its exit status by kind.
    pub fn client(e: bus_client::Error) -> CliError {
        CliError {
            code: code_of(e.kind()),
            error: Some(Box::new(e)),
        }
    }

    /// A client error behind `message`.
    pub fn client_context(message: impl Into<String>, e: bus_client::Error) -> CliError {
        let code = code_of(e.kind());
        CliError {
            code,
            ..CliError::with_cause(message, e)
        }
    }

    /// A write error: quiet success on a closed pipe, else an error.
    pub fn write(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError {
                code: EXIT_OK,
                error: None,
            }
        } else {
            CliError::with_cause("cannot write to stdout", e)
        }
    }

    /// The line to print on stderr: `bus: <error>: <cause>...`, or `None` to stay quiet.
    pub fn render(&self) -> Option<String> {
        let e = self.error.as_deref()?;
        Some(format!("bus: {}", chain(e)))
    }
}

impl From<bus_client::PublishError> for CliError {
    fn from(e: bus_client::PublishError) -> CliError {
        CliError {
            code: code_of(e.kind()),
            error: Some(Box::new(e)),
        }
    }
}

impl From<bus_client::RequestError> for CliError {
    fn from(e: bus_client::RequestError) -> CliError {
        CliError {
            code: code_of(e.kind()),
            error: Some(Box::new(e)),
        }
    }
}

/// The exit status of a client error kind.
pub fn code_of(kind: &bus_client::ErrorKind) -> u8 {
    match kind {
        bus_client::ErrorKind::Timeout => EXIT_TIMEOUT,
        bus_client::ErrorKind::NoResponders => EXIT_NO_RESPONDERS,
        bus_client::ErrorKind::ReplyError => EXIT_NEGATIVE,
        _ => EXIT_ERROR,
    }
}

/// `error: cause: cause`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A message in front of a cause.
#[derive(Debug)]
struct Context {
    message: String,
    cause: BoxError,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = CliError::with_cause(
            "cannot open x",
            CliError::with_cause("inner", io).error.unwrap(),
        );
        assert_eq!(e.render().unwrap(), "bus: cannot open x: inner: denied");
        assert_eq!(e.code, EXIT_ERROR);
    }

    #[test]
    fn a_closed_pipe_is_quiet_success() {
        let e = CliError::write(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!((e.code, e.render()), (EXIT_OK, None));
        let e = CliError::write(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(e.code, EXIT_ERROR);
    }
}
