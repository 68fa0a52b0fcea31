//! The store's end: consumes requests from `req`, produces replies and watch events into `rsp`.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use super::{Endpoint, Field, Message, Notify, Ring, RingError, RingPage, WriteStatus};
use crate::wire::{
    Header, XENSTORE_CONNECTED, XENSTORE_ERROR_COMM, XENSTORE_ERROR_NONE, XENSTORE_RECONNECT,
    XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
};

/// The server side of a ring page. See the module comment of `ring` for the protocol rules.
pub struct ServerRing {
    ep: Endpoint,
}

/// The features this implementation offers on every page it serves.
const SERVER_FEATURES: u32 = XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR;

impl ServerRing {
    /// Attaches to `page` and advertises `SERVER_FEATURES` (before any data is touched, as the
    /// protocol requires). `notify` signals the guest. The indexes are left as found: guests
    /// must not assume they start at zero. Use [`ServerRing::reset`] for a fresh start.
    pub fn new(page: Arc<RingPage>, notify: impl Notify + 'static) -> ServerRing {
        page.fetch_or(Field::ServerFeatures, SERVER_FEATURES, Release);
        ServerRing {
            ep: Endpoint::new(page, Box::new(notify), Ring::Rsp, Ring::Req),
        }
    }

    /// Empties both rings and clears `error`, dropping partial messages (what the C daemon does
    /// when a domain is introduced). The guest must not be using the ring meanwhile.
    pub fn reset(&mut self) {
        self.ep.drop_partial();
        self.ep.failed = None;
        let page = &self.ep.page;
        for f in [
            Field::ReqCons,
            Field::ReqProd,
            Field::RspCons,
            Field::RspProd,
        ] {
            page.store(f, 0, Relaxed);
        }
        // Release: a guest that acquires `error` (or, in `check_reconnect`, `connection`)
        // afterwards sees the zeroed indexes.
        page.store(Field::Error, XENSTORE_ERROR_NONE, Release);
    }

    /// The page this end serves.
    pub fn page(&self) -> Arc<RingPage> {
        Arc::clone(&self.ep.page)
    }

    /// Whether the guest asked for a reset that has not been done yet.
    pub fn reconnect_pending(&self) -> bool {
        self.ep.page.load(Field::Connection, Acquire) == XENSTORE_RECONNECT
    }

    /// Performs a reset the guest asked for. Call it on every wake-up before reading: reads
    /// and writes do nothing while a reset is pending. Returns true if a reset was done; the
    /// caller then discards the connection's watches, transactions and in-flight requests.
    pub fn check_reconnect(&mut self) -> bool {
        if !self.reconnect_pending() {
            return false;
        }
        self.reset();
        self.ep
            .page
            .store(Field::Connection, XENSTORE_CONNECTED, Release);
        self.ep.notify.notify();
        true
    }

    fn ready(&mut self) -> Result<bool, RingError> {
        if self.reconnect_pending() {
            return Ok(false);
        }
        self.ep.check(true)?;
        Ok(true)
    }

    /// The ring's error, if it failed.
    pub fn error(&self) -> Option<RingError> {
        self.ep.error(true)
    }

    /// Gives up on the ring with `code` (`XENSTORE_ERROR_*`, e.g. COMM when the event channel
    /// broke): the guest sees it in `error`.
    pub fn fail(&mut self, code: u32) -> RingError {
        let code = if code == XENSTORE_ERROR_NONE {
            XENSTORE_ERROR_COMM
        } else {
            code
        };
        self.ep.fail(RingError::from_code(code))
    }

    /// Consumes what is available, up to one whole request; `None` until one has arrived.
    pub fn try_read_message(&mut self) -> Result<Option<Message>, RingError> {
        if !self.ready()? {
            return Ok(None);
        }
        self.ep.read()
    }

    /// Queues one reply or event (its `len` is taken from `payload`) and produces as much as
    /// fits; the rest goes out with later writes or `flush`.
    pub fn write_message(
        &mut self,
        header: &Header,
        payload: &[u8],
    ) -> Result<WriteStatus, RingError> {
        self.ready()?;
        self.ep.queue_message(header, payload)?;
        self.flush()
    }

    /// As [`ServerRing::write_message`], for a message already encoded (what the store's
    /// output queues hold).
    pub fn write_encoded(&mut self, msg: &[u8]) -> Result<WriteStatus, RingError> {
        self.ready()?;
        self.ep.queue_encoded(msg)?;
        self.flush()
    }

    /// Queues a message already encoded without producing anything yet: a batch of them goes
    /// out with one [`ServerRing::flush`] (and one notification).
    pub fn queue_encoded(&mut self, msg: &[u8]) -> Result<(), RingError> {
        self.ready()?;
        self.ep.queue_encoded(msg)
    }

    /// Produces as much of the queued bytes as fits.
    pub fn flush(&mut self) -> Result<WriteStatus, RingError> {
        if !self.ready()? {
            return Ok(self.ep.pending_status());
        }
        self.ep.flush()
    }

    /// Bytes queued but not yet in the ring.
    pub fn pending(&self) -> usize {
        self.ep.writer.pending()
    }

    /// Replies (messages other than watch events) queued but not wholly in the ring yet.
    pub fn unsent_replies(&self) -> usize {
        self.ep.writer.replies()
    }

    /// Whether part of a request has been consumed but not completed.
    pub fn in_request(&self) -> bool {
        self.ep.reader.in_message()
    }

    /// What a live update hands over: the request consumed so far, and the output not yet
    /// in the ring with how many of its first bytes finish a message partly produced.
    pub fn handover(&self) -> (Vec<u8>, Vec<u8>, usize) {
        let (out, partial) = self.ep.writer.unwritten();
        (self.ep.reader.partial(), out, partial)
    }

    /// Takes up where another process left off (the bytes of [`ServerRing::handover`]).
    pub fn resume(&mut self, input: &[u8], output: &[u8], partial: usize) -> Result<(), RingError> {
        self.ep.reader.resume(input)?;
        if partial > 0 {
            self.ep.writer.push(output[..partial].to_vec());
        }
        for m in crate::wire::split_messages(&output[partial..]) {
            self.ep.writer.push(m.to_vec());
        }
        Ok(())
    }

    /// Total bytes this end produced and consumed (progress detection for [`super::pump`]).
    pub fn bytes_moved(&self) -> u64 {
        self.ep.moved
    }
}

impl std::fmt::Debug for ServerRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRing")
            .field("page", &self.ep.page)
            .field("pending", &self.ep.writer.pending())
            .field("failed", &self.ep.failed)
            .finish()
    }
}
