//! The [`Transport`] of an embedded handle: `send` serves the request on the spot, in the
//! caller's thread; `recv` takes what the store left in the handle's mailbox.

use std::os::fd::RawFd;
use std::sync::Arc;

use super::mailbox::Mailbox;
use super::Embedded;
use crate::client::{Errno, Message, Transport};
use crate::store::ConnId;

pub(crate) struct EmbeddedTransport {
    embedded: Arc<Embedded>,
    conn: ConnId,
    mailbox: Arc<Mailbox>,
}

impl EmbeddedTransport {
    pub fn new(embedded: Arc<Embedded>, conn: ConnId, mailbox: Arc<Mailbox>) -> EmbeddedTransport {
        EmbeddedTransport {
            embedded,
            conn,
            mailbox,
        }
    }
}

impl Transport for EmbeddedTransport {
    fn send(&self, msg: &[u8]) -> Result<(), Errno> {
        self.embedded.locked(|w| w.request(self.conn, msg))
    }

    /// Only the watch thread passes `interrupt`; it never has to wait (see `Mailbox::take`).
    fn recv(&self, interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
        self.mailbox.take(interrupt.is_some())
    }

    /// Messages here are always whole, so this never waits.
    fn recv_available(&self, _interrupt: RawFd) -> Result<Option<Message>, Errno> {
        self.mailbox.take(true)
    }

    fn pending(&self) -> bool {
        self.mailbox.pending()
    }

    fn readable_fd(&self) -> RawFd {
        self.mailbox.fd()
    }

    /// Replies are put in the mailbox without touching its eventfd.
    fn signals_replies(&self) -> bool {
        false
    }

    /// The mailbox's eventfd is written once per batch and never read back.
    fn edge_triggered(&self) -> bool {
        true
    }

    fn multiplexes(&self) -> bool {
        true
    }

    /// Called under the handle's own lock: only the mailbox (a leaf lock) is touched; the
    /// store connection goes when the transport is dropped.
    fn shutdown(&self) {
        self.mailbox.kill();
    }
}

impl Drop for EmbeddedTransport {
    fn drop(&mut self) {
        self.embedded.locked(|w| w.disconnect(self.conn));
    }
}
