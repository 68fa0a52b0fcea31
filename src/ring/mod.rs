//! The xenstore shared-page ring: both ends of it.
//!
//! A page ([`RingPage`]) holds two byte queues of `XENSTORE_RING_SIZE` bytes: `req` (guest to
//! server) and `rsp` (server to guest: replies and watch events), each with a free-running
//! producer and consumer index, plus `server_features`, `connection` and `error`.
//! [`ClientRing`] is what a guest's xenbus driver does with it (produce `req`, consume `rsp`);
//! [`ServerRing`] is what xenstored runs for a domain (consume `req`, produce `rsp`). Messages
//! (16-byte header + payload) are streamed: a message larger than the free space, or than the
//! whole ring, goes through in pieces as the consumer drains, and the reader reassembles pieces
//! however they are split.
//!
//! # Memory ordering
//!
//! The page is only touched through atomics on raw pointers (`page.rs`); data bytes are relaxed
//! byte atomics, the indexes carry the ordering:
//! - Producer: load the peer's `cons` with Acquire, check, write data into the free slots, then
//!   publish `prod` with Release. Consumer: load `prod` with Acquire, check, copy data out, then
//!   publish `cons` with Release.
//! - The Release store of `prod` pairs with the consumer's Acquire load: every byte written
//!   before it is visible to the consumer, which never copies stale bytes.
//! - The Release store of `cons` pairs with the producer's Acquire load: the consumer's copies
//!   happen before the producer reuses those slots, so it never sees bytes of the next lap.
//! - Each end loads its own index with Relaxed (it is the only legitimate writer) and reads both
//!   indexes once per call, working from those copies, so a peer changing them mid-call cannot
//!   make it inconsistent.
//! - `connection`: the server's reset (indexes, `error`) is stored before `connection =
//!   CONNECTED` with Release; the guest loads `connection` with Acquire before touching the ring
//!   again, so it sees the reset indexes. `error` is set by compare-and-swap (first error wins)
//!   and read with Acquire.
//! - Against a peer outside this process: the C implementations put full barriers at the same
//!   points (between reading the indexes and the data, between the data and publishing an
//!   index), which pair with these acquire/release operations. A peer scribbling on the data
//!   while we copy can only give us garbage bytes, never an out-of-bounds access here.
//!
//! # Index sanity and errors
//!
//! `prod - cons` (mod 2^32) must be at most `XENSTORE_RING_SIZE`; that one test also catches a
//! consumer ahead of its producer (the difference wraps to a huge value). Every data offset is
//! masked, so no index value can reach outside the ring. A bad index fails the ring with
//! `XENSTORE_ERROR_RINGIDX`, a header announcing more than `XENSTORE_PAYLOAD_MAX` bytes with
//! `XENSTORE_ERROR_PROTO`: the code is stored in `error` (whichever end detected it; upstream
//! only the server writes it, our guest end writes it too so an in-process server learns it), the
//! peer is notified, and from then on both ends refuse to touch the ring and report the error,
//! until a reconnection clears it. The guest end honours `error` only when the server advertises
//! `XENSTORE_SERVER_FEATURE_ERROR`, as the protocol says.
//!
//! # Reconnection
//!
//! [`ServerRing::new`] advertises `RECONNECTION | ERROR` before touching any data. The guest asks
//! for a reset with [`ClientRing::request_reconnect`] (drops its queued and half-read messages,
//! sets `connection = RECONNECT`, notifies) and then leaves the ring alone until it sees
//! `CONNECTED`; a guest finding `RECONNECT` set by someone else waits the same way. The server
//! notices it in [`ServerRing::check_reconnect`] (call it on every wake-up; the server's own
//! reads and writes do nothing while a reset is pending), drops its partial state, zeroes the
//! four indexes and `error`, sets `CONNECTED` and notifies; its owner then discards the
//! connection's watches, transactions and in-flight requests.
//!
//! # Notification
//!
//! Peers save notifications: Linux's xenbus driver notifies after producing a request only if
//! it saw everything it had produced before already consumed, and after consuming a reply only
//! if it found the ring full (the C daemon does not mind: it looks at every ring on every loop
//! iteration). A server that reads a ring only when notified must therefore never stop on a
//! stale view: the peer stores its index then loads ours; we store ours then load theirs; with
//! a full fence on both sides between the store and the load, at least one of the two sees the
//! other's store, so either the peer notifies or we find its bytes (the store-load ordering
//! acquire/release does not give). So a read that finds no whole message, and a flush that
//! leaves bytes queued for lack of room, fence and look again before giving up.
//!
//! Each end gets a [`Notify`] hook, called after it published anything. No call waits:
//! `write_message`/`flush` report how far they got, `try_read_message` returns `None` until a
//! whole message arrived; the owner waits for the peer's notification as it sees fit. Writes
//! are queued whole (never refused for lack of room), so the queue is unbounded: the owner
//! bounds it (the embedded guest has one request in flight at a time, and the store bounds the
//! watch events queued per connection).
//!
//! # Threads and locks
//!
//! - [`RingPage`] is `Sync` and shared by `Arc` between exactly one [`ClientRing`] and one
//!   [`ServerRing`] (a second producer on the same ring would corrupt it undetectably).
//! - Each end is `Send` and takes `&mut self`: one thread drives it at a time. The two ends may
//!   run in different threads with no lock between them; the page's atomics are the only
//!   communication.
//! - This module takes no lock. Notify hooks run inside ring
//!   calls, under whatever lock the caller holds, so a hook must not take the lock that guards
//!   its own end.
//! - Serving in the caller's thread (embedded mode): keep both ends together under one lock and
//!   use [`pump`]: it interleaves the guest's producer steps with the server's consumer steps
//!   (and the reverse for replies), so even a message larger than the ring passes without a
//!   second thread. See `pump.rs`.

mod client;
mod notify;
mod page;
mod pump;
mod server;
mod stream;

#[cfg(test)]
mod tests;

pub use client::ClientRing;
pub use notify::Notify;
#[cfg(test)]
use page::PAGE_SIZE;
pub use page::{Field, Ring, RingPage, RING_SIZE};
pub(crate) use pump::pump;
pub use server::ServerRing;

use std::fmt;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, SeqCst};
use std::sync::Arc;

pub use crate::wire::Message;
use crate::wire::{
    Header, HEADER_LEN, PAYLOAD_MAX, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
};
use stream::{Reader, Writer};

/// How far a write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStatus {
    /// Bytes published into the ring by this call.
    pub written: usize,
    /// Bytes still queued (waiting for the consumer to make room).
    pub pending: usize,
}

impl WriteStatus {
    /// Everything queued is in the ring.
    pub fn is_complete(&self) -> bool {
        self.pending == 0
    }
}

/// Why a ring operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// Inconsistent producer/consumer indexes (`XENSTORE_ERROR_RINGIDX`). The ring is dead.
    BadIndex,
    /// A header announced a payload over `XENSTORE_PAYLOAD_MAX` (`XENSTORE_ERROR_PROTO`). The
    /// ring is dead.
    Protocol,
    /// `error` holds another code (`XENSTORE_ERROR_COMM` or one unknown to us). The ring is dead.
    Failed(u32),
    /// The caller's payload exceeds `XENSTORE_PAYLOAD_MAX`; nothing was queued, the ring is fine.
    TooLong(usize),
    /// The caller's bytes are not exactly one message; nothing was queued, the ring is fine.
    Malformed,
    /// Reconnection requested but the server does not offer it.
    NoReconnect,
}

impl RingError {
    /// The `XENSTORE_ERROR_*` code this error puts in the page, for ring-killing errors.
    pub fn code(self) -> Option<u32> {
        match self {
            RingError::BadIndex => Some(XENSTORE_ERROR_RINGIDX),
            RingError::Protocol => Some(XENSTORE_ERROR_PROTO),
            RingError::Failed(c) => Some(c),
            _ => None,
        }
    }

    /// The error a nonzero `error` field stands for.
    pub fn from_code(code: u32) -> RingError {
        match code {
            XENSTORE_ERROR_RINGIDX => RingError::BadIndex,
            XENSTORE_ERROR_PROTO => RingError::Protocol,
            c => RingError::Failed(c),
        }
    }

    /// Whether the ring is unusable until a reconnection.
    pub fn is_fatal(self) -> bool {
        self.code().is_some()
    }

    /// The errno a C caller should see.
    pub fn errno(self) -> i32 {
        match self {
            RingError::BadIndex | RingError::Protocol | RingError::Failed(_) => libc::EIO,
            RingError::TooLong(_) => libc::E2BIG,
            RingError::Malformed => libc::EINVAL,
            RingError::NoReconnect => libc::EOPNOTSUPP,
        }
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadIndex => write!(f, "inconsistent ring indexes"),
            RingError::Protocol => write!(f, "ring protocol violation (payload too long)"),
            RingError::Failed(c) => write!(f, "ring failed (error code {c})"),
            RingError::TooLong(n) => write!(f, "payload of {n} bytes exceeds {PAYLOAD_MAX}"),
            RingError::Malformed => write!(f, "not exactly one message"),
            RingError::NoReconnect => write!(f, "server does not support ring reconnection"),
        }
    }
}

impl std::error::Error for RingError {}

/// The state both ends share: the page, which ring they produce and consume, the partial
/// messages in each direction and the sticky error.
struct Endpoint {
    page: Arc<RingPage>,
    notify: Box<dyn Notify>,
    tx: Ring,
    rx: Ring,
    writer: Writer,
    reader: Reader,
    /// Set when this end saw the ring fail; cleared only by a reconnection.
    failed: Option<RingError>,
    moved: u64,
}

impl Endpoint {
    fn new(page: Arc<RingPage>, notify: Box<dyn Notify>, tx: Ring, rx: Ring) -> Endpoint {
        Endpoint {
            page,
            notify,
            tx,
            rx,
            writer: Writer::default(),
            reader: Reader::default(),
            failed: None,
            moved: 0,
        }
    }

    /// The ring's error, if any: ours, or the page's when `use_field`.
    fn error(&self, use_field: bool) -> Option<RingError> {
        if self.failed.is_some() {
            return self.failed;
        }
        if use_field {
            let code = self.page.load(Field::Error, Acquire);
            if code != XENSTORE_ERROR_NONE {
                return Some(RingError::from_code(code));
            }
        }
        None
    }

    fn check(&mut self, use_field: bool) -> Result<(), RingError> {
        match self.error(use_field) {
            Some(e) => {
                self.failed = Some(e);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Gives up on the ring: remembers `e`, publishes its code unless an error is already
    /// there, and tells the peer.
    fn fail(&mut self, e: RingError) -> RingError {
        self.failed = Some(e);
        if let Some(code) = e.code() {
            let _ = self
                .page
                .compare_exchange(Field::Error, XENSTORE_ERROR_NONE, code);
        }
        self.notify.notify();
        e
    }

    fn drop_partial(&mut self) {
        self.reader.clear();
        self.writer.clear();
    }

    fn queue_message(&mut self, header: &Header, payload: &[u8]) -> Result<(), RingError> {
        if payload.len() > PAYLOAD_MAX {
            return Err(RingError::TooLong(payload.len()));
        }
        let h = Header {
            len: payload.len() as u32,
            ..*header
        };
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(&h.to_bytes());
        bytes.extend_from_slice(payload);
        self.writer.push(bytes);
        Ok(())
    }

    fn queue_encoded(&mut self, msg: &[u8]) -> Result<(), RingError> {
        let Some(hdr) = msg.get(..HEADER_LEN) else {
            return Err(RingError::Malformed);
        };
        let hdr: &[u8; HEADER_LEN] = hdr.try_into().map_err(|_| RingError::Malformed)?;
        let h = Header::parse(hdr).map_err(|_| RingError::TooLong(msg.len() - HEADER_LEN))?;
        if msg.len() != HEADER_LEN + h.len as usize {
            return Err(RingError::Malformed);
        }
        self.writer.push(msg.to_vec());
        Ok(())
    }

    /// Produces what fits; the caller checked the ring's state. With bytes left over, it looks
    /// at the consumer's index again after a full fence (see "Notification" in the module
    /// comment) and goes on while that makes room.
    fn flush(&mut self) -> Result<WriteStatus, RingError> {
        let mut put = 0;
        let mut fenced = false;
        let result = loop {
            match self.writer.flush(&self.page, self.tx) {
                Ok(n) => {
                    put += n;
                    if self.writer.pending() == 0 || (n == 0 && fenced) {
                        break Ok(());
                    }
                    fence(SeqCst);
                    fenced = true;
                }
                Err(e) => break Err(e),
            }
        };
        if put > 0 {
            self.moved += u64::from(put);
            self.notify.notify();
        }
        match result {
            Ok(()) => Ok(WriteStatus {
                written: put as usize,
                pending: self.writer.pending(),
            }),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Consumes up to one message; the caller checked the ring's state. Before it answers that
    /// no whole message is there, it looks at the producer's index again after a full fence
    /// (see "Notification" in the module comment).
    fn read(&mut self) -> Result<Option<Message>, RingError> {
        let mut taken = 0;
        let mut fenced = false;
        let result = loop {
            match self.reader.poll(&self.page, self.rx) {
                Ok((Some(m), n)) => {
                    taken += n;
                    break Ok(Some(m));
                }
                Ok((None, n)) => {
                    taken += n;
                    if n == 0 && fenced {
                        break Ok(None);
                    }
                    fence(SeqCst);
                    fenced = true;
                }
                Err(e) => break Err(e),
            }
        };
        if taken > 0 {
            self.moved += u64::from(taken);
            self.notify.notify();
        }
        result.map_err(|e| self.fail(e))
    }

    fn pending_status(&self) -> WriteStatus {
        WriteStatus {
            written: 0,
            pending: self.writer.pending(),
        }
    }
}
