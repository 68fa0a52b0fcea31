//! The client side: a connection [`Handle`] to a store and the transports it runs over.
//!
//! - [`handle`]: the operations of the C API as safe Rust, on a `Handle` that any number of
//!   threads may share.
//! - [`conn`]: request/reply matching with several requests in flight, and the watch thread.
//! - [`transport`]: the [`Transport`] trait and the socket / xenbus-device transports.
//! - [`watch`]: the queue of fired watches and its poll()-able pipe.
//! - [`perms`], [`paths`], [`cnum`]: permission strings, daemon paths, C number parsing.
//!
//! Errors are errno values ([`Errno`]), because that is what the C API reports.

pub mod cnum;
pub mod conn;
pub mod handle;
mod notify_pipe;
pub mod paths;
pub mod perms;
pub mod transport;
pub mod watch;

pub use handle::{Handle, OPEN_READONLY, OPEN_SOCKETONLY, OPEN_UNWATCH_FILTER, XBT_NULL};
pub use perms::Permission;
pub use transport::{Message, StreamKind, StreamTransport, Transport};
pub use watch::WatchEvent;

/// An errno value: how every client operation reports failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}

/// What the system said: its errno (EIO if it gave none).
impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// Result of a client operation.
pub type Result<T> = std::result::Result<T, Errno>;
