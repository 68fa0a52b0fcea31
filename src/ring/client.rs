//! The guest's end: produces requests into `req`, consumes replies and watch events from `rsp`.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;

use super::{Endpoint, Field, Message, Notify, Ring, RingError, RingPage, WriteStatus};
use crate::wire::{
    Header, XENSTORE_RECONNECT, XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
};

/// The guest side of a ring page. See the module comment of `ring` for the protocol rules.
pub struct ClientRing {
    ep: Endpoint,
    /// We are waiting for the server to finish a reset (ours or someone else's).
    reconnecting: bool,
}

impl ClientRing {
    /// Attaches to `page`; `notify` signals the server.
    pub fn new(page: Arc<RingPage>, notify: impl Notify + 'static) -> ClientRing {
        ClientRing {
            ep: Endpoint::new(page, Box::new(notify), Ring::Req, Ring::Rsp),
            reconnecting: false,
        }
    }

    /// The page both ends use.
    pub fn page(&self) -> &Arc<RingPage> {
        &self.ep.page
    }

    /// The features the server advertises (`XENSTORE_SERVER_FEATURE_*`).
    pub fn server_features(&self) -> u32 {
        self.ep.page.load(Field::ServerFeatures, Acquire)
    }

    fn uses_error_field(&self) -> bool {
        self.server_features() & XENSTORE_SERVER_FEATURE_ERROR != 0
    }

    fn reset_pending(&self) -> bool {
        let honoured =
            self.reconnecting || self.server_features() & XENSTORE_SERVER_FEATURE_RECONNECTION != 0;
        honoured && self.ep.page.load(Field::Connection, Acquire) == XENSTORE_RECONNECT
    }

    /// Whether the ring may be used now: no reset in progress and no error. Completes a reset
    /// the server has finished.
    fn ready(&mut self) -> Result<bool, RingError> {
        if self.reset_pending() {
            self.reconnecting = true;
            return Ok(false);
        }
        if self.reconnecting {
            // The server emptied both rings: whatever was half-read is gone, and a message
            // we had half-written must go out again whole.
            self.reconnecting = false;
            self.ep.reader.clear();
            self.ep.writer.rewind();
            self.ep.failed = None;
        }
        let use_field = self.uses_error_field();
        self.ep.check(use_field)?;
        Ok(true)
    }

    /// Whether the ring is connected (no reset in progress).
    pub fn is_connected(&self) -> bool {
        !self.reset_pending()
    }

    /// The ring's error, if it failed (seen by us, or reported by the server).
    pub fn error(&self) -> Option<RingError> {
        self.ep.error(self.uses_error_field())
    }

    /// Queues one message (its `len` is taken from `payload`) and produces as much as fits.
    /// The rest goes out with later calls to `flush` (or any other write).
    pub fn write_message(
        &mut self,
        header: &Header,
        payload: &[u8],
    ) -> Result<WriteStatus, RingError> {
        self.ready()?;
        self.ep.queue_message(header, payload)?;
        self.flush()
    }

    /// As [`ClientRing::write_message`], for a message already encoded (header + payload).
    pub fn write_encoded(&mut self, msg: &[u8]) -> Result<WriteStatus, RingError> {
        self.ready()?;
        self.ep.queue_encoded(msg)?;
        self.flush()
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

    /// Consumes what is available, up to one whole message; `None` until one has arrived.
    pub fn try_read_message(&mut self) -> Result<Option<Message>, RingError> {
        if !self.ready()? {
            return Ok(None);
        }
        self.ep.read()
    }

    /// Asks the server to reset the ring. Queued and half-read messages are dropped; reads and
    /// writes do nothing until the server reports `CONNECTED` (messages written meanwhile are
    /// queued). Allowed on a failed ring: this is how to recover from an error.
    pub fn request_reconnect(&mut self) -> Result<(), RingError> {
        if self.server_features() & XENSTORE_SERVER_FEATURE_RECONNECTION == 0 {
            return Err(RingError::NoReconnect);
        }
        self.ep.drop_partial();
        self.reconnecting = true;
        self.ep
            .page
            .store(Field::Connection, XENSTORE_RECONNECT, Release);
        self.ep.notify.notify();
        Ok(())
    }

    /// Total bytes this end produced and consumed (progress detection for [`super::pump`]).
    pub fn bytes_moved(&self) -> u64 {
        self.ep.moved
    }
}

impl std::fmt::Debug for ClientRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRing")
            .field("page", &self.ep.page)
            .field("pending", &self.ep.writer.pending())
            .field("reconnecting", &self.reconnecting)
            .field("failed", &self.ep.failed)
            .finish()
    }
}
