//! The XenStore engine: the database every transport (daemon socket, embedded handle, domain
//! ring) is served by.
//!
//! CONTRACT (relied upon by src/server, the embedded transport and the ring server; change it
//! only together with them):
//! - `Store` is single-threaded; callers serialise access (a Mutex around it).
//! - A transport registers each connection with `connect(domid)` and feeds it whole requests
//!   with `handle`. Everything the engine sends (the reply, and watch events for *any*
//!   connection) is appended, in order, to per-connection output queues, read with
//!   `pop_output`. `take_dirty` names the connections whose queue became non-empty since the
//!   last call, so a transport knows whom to wake.
//! - `handle` returns `Err(Fatal)` when the connection must be closed by the transport.
//! - `take_released` names the domains released since the last call (their ring transports
//!   tear down).

use crate::wire::Header;

/// Identifies one connection for the lifetime of the store (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Why a connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal(pub String);

/// Limits and quotas (defaults follow the C xenstored's).
#[derive(Debug, Clone)]
pub struct Config {
    pub _todo: (),
}

impl Default for Config {
    fn default() -> Self {
        Config { _todo: () }
    }
}

/// The engine.
pub struct Store {
    _todo: (),
}

impl Store {
    pub fn new(_config: Config) -> Store {
        todo!()
    }
    /// Registers a connection acting as `domid` (domain 0 is privileged).
    pub fn connect(&mut self, _domid: u32) -> ConnId {
        todo!()
    }
    /// Drops a connection: its transactions are discarded and its watches removed.
    pub fn disconnect(&mut self, _conn: ConnId) {
        todo!()
    }
    /// Serves one request of `conn`; replies and events go to output queues.
    pub fn handle(&mut self, _conn: ConnId, _hdr: &Header, _payload: &[u8]) -> Result<(), Fatal> {
        todo!()
    }
    /// The next whole message (header and payload) queued for `conn`.
    pub fn pop_output(&mut self, _conn: ConnId) -> Option<Vec<u8>> {
        todo!()
    }
    /// Connections whose output queue became non-empty since the last call.
    pub fn take_dirty(&mut self) -> Vec<ConnId> {
        todo!()
    }
    /// Domains released since the last call.
    pub fn take_released(&mut self) -> Vec<u32> {
        todo!()
    }
    /// Whether `domid` has been introduced (and not released).
    pub fn is_introduced(&self, _domid: u32) -> bool {
        todo!()
    }
}
