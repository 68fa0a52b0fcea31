//! The client side: a connection [`Handle`] to a store and the transports it runs over.
//!
//! - `handle`: the operations of the C API as safe Rust, on a [`Handle`] that any number of
//!   threads may share.
//! - `conn`: request/reply matching with several requests in flight, and the watch thread.
//! - `transport`: the [`Transport`] trait and the socket / xenbus-device transports.
//! - `watch`: the queue of fired watches and its poll()-able pipe.
//! - `perms`, `paths`, `cnum`: permission strings, daemon paths, C number parsing.
//!
//! Errors are errno values ([`Errno`]), because that is what the C API reports.

pub(crate) mod cnum;
pub(crate) mod conn;
mod handle;
mod notify_pipe;
pub(crate) mod paths;
pub(crate) mod perms;
mod toolcore;
mod transport;
pub(crate) mod watch;

pub use handle::{Handle, OPEN_UNWATCH_FILTER};
pub use perms::{Permission, PERM_NONE, PERM_READ, PERM_WRITE};
pub use transport::{Message, StreamKind, StreamTransport, Transport};
pub(crate) use watch::WatchEvent;

pub use crate::wire::Errno;
