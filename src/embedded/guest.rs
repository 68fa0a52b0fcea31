//! A simulated guest's ring: one `xenstore_domain_interface` page per introduced domain, with
//! the guest's end ([`ClientRing`]) and the store's end ([`ServerRing`]) both driven in the
//! thread that holds the embedded store's lock (see `ring::pump`).
//!
//! Several handles may act as the same domain (as several processes of a guest share its one
//! ring through the guest kernel). Each has its own store connection; the ring carries all of
//! their traffic. Since both ends move only under the store lock and the ring is a FIFO in each
//! direction, the order in which messages enter a ring is the order in which they leave it:
//! two queues, `senders` (whose request is next in `req`) and `recipients` (whose message is
//! next in `rsp`), tell each message's connection without touching the bytes on the page.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ring::{self, ClientRing, RingError, RingPage, ServerRing};
use crate::store::{ConnId, Introduced, Store};

pub(crate) struct DomainRing {
    /// From INTRODUCE; recorded, not used (there is no page to map and no event channel).
    pub mfn: u64,
    pub port: u32,
    client: ClientRing,
    server: ServerRing,
    senders: VecDeque<ConnId>,
    recipients: VecDeque<ConnId>,
    /// Messages the guest end took off the ring in the current pump (kept for its capacity).
    received: Vec<ring::Message>,
}

impl DomainRing {
    pub fn new(intro: &Introduced) -> DomainRing {
        let page = Arc::new(RingPage::new());
        // Both ends run in the same thread, one after the other: nothing needs signalling.
        let server = ServerRing::new(Arc::clone(&page), || ());
        let client = ClientRing::new(page, || ());
        DomainRing {
            mfn: intro.mfn,
            port: intro.port,
            client,
            server,
            senders: VecDeque::new(),
            recipients: VecDeque::new(),
            received: Vec::new(),
        }
    }

    /// The guest end queues `conn`'s request (a whole message).
    pub fn submit(&mut self, conn: ConnId, msg: &[u8]) -> Result<(), RingError> {
        self.client.write_encoded(msg)?;
        self.senders.push_back(conn);
        Ok(())
    }

    /// The store's end queues a message for `conn` (an event caused by someone else).
    pub fn respond(&mut self, conn: ConnId, msg: &[u8]) -> Result<(), RingError> {
        self.server.write_encoded(msg)?;
        self.recipients.push_back(conn);
        Ok(())
    }

    /// Moves everything queued across the page: requests reach the store (each request's own
    /// output goes straight back into `rsp`), and each message the guest end receives is
    /// handed to `deliver` with its connection.
    pub fn pump(
        &mut self,
        store: &mut Store,
        mut deliver: impl FnMut(ConnId, ring::Message),
    ) -> Result<(), RingError> {
        let DomainRing {
            client,
            server,
            senders,
            recipients,
            received,
            ..
        } = self;
        let mut serve = |req: ring::Message, server: &mut ServerRing| -> Result<(), RingError> {
            let conn = senders.pop_front().ok_or(RingError::Malformed)?;
            // Err(Fatal) only for an unknown connection or a payload not matching its header,
            // neither of which the ring can produce: nothing to answer then.
            if store.handle(conn, &req.header, &req.payload).is_ok() {
                while let Some(out) = store.pop_output(conn) {
                    server.write_encoded(&out)?;
                    recipients.push_back(conn);
                }
            }
            Ok(())
        };
        let pumped = ring::pump(client, server, &mut serve, received);
        let mut stray = false;
        for m in received.drain(..) {
            match recipients.pop_front() {
                Some(to) => deliver(to, m),
                None => stray = true,
            }
        }
        pumped?;
        // Both ends ran to a standstill in this thread, so every request the guest end queued
        // was served whole and every message for the guest was taken, each by the connection
        // it was written for. Anything left over (or a message nobody was owed) means someone
        // else wrote the page (a misbehaving guest kernel): the two queues no longer say whose
        // message is whose, and a request left half-read would never be answered (its handle
        // would wait for ever). The ring is given up instead.
        let leftover = stray
            || !senders.is_empty()
            || !recipients.is_empty()
            || server.in_request()
            || server.pending() > 0
            || client.pending() > 0;
        if leftover {
            return Err(RingError::Protocol);
        }
        Ok(())
    }

    /// The page both ends use (a real ring page).
    pub fn page(&self) -> &Arc<RingPage> {
        self.client.page()
    }
}
