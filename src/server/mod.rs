//! Serving the store to clients.
//!
//! - `socket`: the Unix-socket transport, one event-loop thread over epoll.
//! - `host`: host mode, the Xen domains' rings served in the same loop (through `crate::xen`).
//! - `daemon`: going into the background as the C daemon does, and systemd's readiness.
//! - `listen`: claiming the socket path (refusing a live daemon's, replacing a stale one).
//! - [`options`]: the daemon's command line, mapped onto the store's configuration.
//! - `framing`: request reassembly and ordered output buffers.
//!
//! Threads and locks: the socket server runs on the thread that calls
//! [`SocketServer::run`]; the store and every connection's buffers belong to that
//! thread. The store sits behind a mutex only so that tests can look at it while the server
//! runs; the server never does socket I/O while holding it: it reads sockets, then takes the
//! lock once to handle everything read and pull all queued output, then writes sockets
//! (accepting and closing clients take it briefly too, once per batch). In host mode the rings
//! are read and written under that lock: that is copying within memory plus event-channel
//! notifications, which never block (which ports fired is read before, outside it). The
//! INTRODUCE hook maps pages and binds ports under it too, and takes host mode's own small
//! lock (`host.rs`, `Shared`) after it, never the other way round.
//!
//! Flow control, per connection (the counterpart of the C xenstored's outstanding-request quota
//! and watch-event timeout):
//! - Replies are written in request order. Output waits in a per-connection queue that is
//!   written with as few system calls as possible (gathered writes) whenever the socket takes it.
//! - When that queue holds `out_high` bytes or more, the server stops handling the connection's
//!   requests and stops reading its socket (so the kernel's socket buffer, then the client's
//!   writes, absorb the pressure) and leaves further output in the engine's own queue, where
//!   the engine's bound on queued watch events applies. Reading resumes once the queue is back
//!   under `out_low`.
//! - Watch events that have waited unsent for longer than `watch_event_timeout` are dropped, as
//!   the C daemon does (default 20 s). Replies are never dropped.
//! - A connection's memory is thus bounded by `out_high` plus one reply, one read chunk of
//!   requests, and the engine's own per-connection bounds; a client that never reads only
//!   affects itself.

mod daemon;
mod deferred;
mod framing;
mod host;
mod listen;
mod live_update;
pub mod options;
mod slab;
mod socket;

pub use crate::sys::{raise_fd_limit, SignalFd};
pub use daemon::{background, notify_systemd, Background};
pub use listen::BoundSocket;
pub use live_update::{LiveUpdateSetup, Restored};
pub use socket::{ServerConfig, SocketServer, StopHandle};

use crate::store::{ConnId, Fatal, Store};
use crate::wire::Header;

/// What a transport needs from the engine: exactly the [`Store`] contract. It exists so the
/// transports can be tested against a small stand-in; production code uses [`Store`].
pub trait Engine: Send + 'static {
    fn connect(&mut self, domid: u32) -> ConnId;
    fn disconnect(&mut self, conn: ConnId);
    fn handle(&mut self, conn: ConnId, hdr: &Header, payload: &[u8]) -> Result<(), Fatal>;
    fn pop_output(&mut self, conn: ConnId) -> Option<Vec<u8>>;
    /// Appends the connections that received output since the last call to `out` (the
    /// caller keeps its vector: nothing is allocated per request).
    fn take_dirty_into(&mut self, out: &mut Vec<ConnId>);
    fn take_released(&mut self) -> Vec<u32>;
    /// The store itself, for host mode (which needs more of it than this contract); `None`
    /// for stand-ins.
    fn as_store(&mut self) -> Option<&mut Store> {
        None
    }
}

impl Engine for Store {
    fn connect(&mut self, domid: u32) -> ConnId {
        Store::connect(self, domid)
    }
    fn disconnect(&mut self, conn: ConnId) {
        Store::disconnect(self, conn)
    }
    fn handle(&mut self, conn: ConnId, hdr: &Header, payload: &[u8]) -> Result<(), Fatal> {
        Store::handle(self, conn, hdr, payload)
    }
    fn pop_output(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        Store::pop_output(self, conn)
    }
    fn take_dirty_into(&mut self, out: &mut Vec<ConnId>) {
        Store::take_dirty_into(self, out)
    }
    fn take_released(&mut self) -> Vec<u32> {
        Store::take_released(self)
    }
    fn as_store(&mut self) -> Option<&mut Store> {
        Some(self)
    }
}

/// Whether this machine is a Xen dom0 where host mode can run (`SocketServer::serve_xen`).
pub fn xen_detected() -> bool {
    crate::xen::LinuxXen::detected()
}

#[cfg(test)]
pub(crate) mod standin;
