//! Everything behind the embedded store's one lock: the engine, which handle owns which
//! connection, and the rings of the introduced domains. Every method runs with that lock held
//! (see the module comment of `embedded` for the order of locks) and finishes with every
//! queued output delivered, so between two calls all output queues and rings are empty.

use std::sync::Arc;

use super::delivery::Wakeups;
use super::guest::DomainRing;
use super::mailbox::Mailbox;
use crate::client::{Errno, Message};
use crate::ring;
use crate::store::{Config, ConnId, IdMap, Store};
use crate::wire::{Header, DOMID_FIRST_RESERVED, HEADER_LEN};

/// How a connection's messages travel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Straight between the handle and the store (domain 0's handles).
    Direct,
    /// Through the ring of this domain.
    Ring(u32),
}

struct End {
    mailbox: Arc<Mailbox>,
    route: Route,
}

pub(crate) struct World {
    store: Store,
    ends: IdMap<ConnId, End>,
    rings: IdMap<u32, DomainRing>,
    /// Rings given messages by the routing, to pump before returning.
    to_pump: Vec<u32>,
    /// Rings that failed, to replace (their handles die) before returning.
    broken: Vec<u32>,
    /// Scratch list of connections with output (kept for its capacity).
    dirty: Vec<ConnId>,
    /// Wake-ups for the handles given messages, made by the caller once the store lock is
    /// released (`Embedded::locked`).
    wakeups: Wakeups,
}

impl World {
    pub fn new(config: Config) -> World {
        World {
            store: Store::new(config),
            ends: IdMap::default(),
            rings: IdMap::default(),
            to_pump: Vec::new(),
            broken: Vec::new(),
            dirty: Vec::new(),
            wakeups: Wakeups::new(),
        }
    }

    /// Moves the wake-ups to make into `out` (to make after unlocking).
    pub fn take_wakeups(&mut self, out: &mut Wakeups) {
        self.wakeups.move_into(out);
    }

    /// A privileged connection (domain 0) whose messages go to `mailbox`.
    pub fn connect_dom0(&mut self, mailbox: Arc<Mailbox>) -> ConnId {
        let id = self.store.connect(0);
        self.ends.insert(
            id,
            End {
                mailbox,
                route: Route::Direct,
            },
        );
        id
    }

    /// A connection acting as `domid`, through its ring. ENOENT unless the domain was
    /// introduced (and not released); EINVAL for domain 0, which has no ring.
    pub fn connect_guest(&mut self, domid: u32, mailbox: Arc<Mailbox>) -> Result<ConnId, Errno> {
        if domid == 0 {
            return Err(Errno(libc::EINVAL));
        }
        if !self.rings.contains_key(&domid) {
            return Err(Errno(libc::ENOENT));
        }
        let id = self.store.connect(domid);
        self.ends.insert(
            id,
            End {
                mailbox,
                route: Route::Ring(domid),
            },
        );
        Ok(id)
    }

    /// Drops a connection (its watches and transactions go with it). Unknown ids (already
    /// dropped when their domain was released) are ignored.
    pub fn disconnect(&mut self, conn: ConnId) {
        if self.ends.remove(&conn).is_some() {
            self.store.disconnect(conn);
        }
    }

    /// Serves one whole request of `conn` in this thread and delivers everything it caused:
    /// the reply (and events) of `conn` into its mailbox without waking anybody, events of
    /// other handles into theirs with a wake-up. EBADF once the connection is gone.
    pub fn request(&mut self, conn: ConnId, msg: &[u8]) -> Result<(), Errno> {
        let route = self.ends.get(&conn).ok_or(Errno(libc::EBADF))?.route;
        let served = match route {
            Route::Direct => {
                let head = msg.first_chunk::<HEADER_LEN>().ok_or(Errno(libc::EINVAL))?;
                let hdr = Header::parse(head).map_err(|_| Errno(libc::E2BIG))?;
                // Err(Fatal) means a malformed message, which the handle never sends.
                self.store
                    .handle(conn, &hdr, &msg[HEADER_LEN..])
                    .map_err(|_| Errno(libc::EINVAL))
            }
            Route::Ring(domid) => self.through_ring(domid, conn, msg),
        };
        self.settle(conn);
        served
    }

    fn through_ring(&mut self, domid: u32, conn: ConnId, msg: &[u8]) -> Result<(), Errno> {
        let ring = self.rings.get_mut(&domid).ok_or(Errno(libc::EBADF))?;
        if let Err(e) = ring.submit(conn, msg) {
            if e.is_fatal() {
                self.broken.push(domid);
            }
            return Err(Errno(e.errno()));
        }
        let ends = &self.ends;
        let wake = &mut self.wakeups;
        let pumped = ring.pump(&mut self.store, |to, m| deliver(ends, wake, conn, to, m));
        pumped.map_err(|e| {
            self.broken.push(domid);
            Errno(e.errno())
        })
    }

    /// Delivers all queued output (`me` is the connection whose request is being served, if
    /// any), then follows up on introduced and released domains and broken rings.
    fn settle(&mut self, me: ConnId) {
        let mut dirty = std::mem::take(&mut self.dirty);
        loop {
            self.store.take_dirty_into(&mut dirty);
            if dirty.is_empty() && self.to_pump.is_empty() {
                break;
            }
            for c in dirty.drain(..) {
                self.route_output(me, c);
            }
            while let Some(domid) = self.to_pump.pop() {
                let Some(ring) = self.rings.get_mut(&domid) else {
                    continue;
                };
                let (ends, wake) = (&self.ends, &mut self.wakeups);
                if ring
                    .pump(&mut self.store, |to, m| deliver(ends, wake, me, to, m))
                    .is_err()
                {
                    self.broken.push(domid);
                }
            }
        }
        self.dirty = dirty;
        for intro in self.store.take_introduced() {
            if intro.domid == 0 || intro.domid >= DOMID_FIRST_RESERVED {
                continue;
            }
            // A re-introduction keeps the ring (the store has reset the connections' state).
            let ring = self
                .rings
                .entry(intro.domid)
                .or_insert_with(|| DomainRing::new(&intro));
            ring.mfn = intro.mfn;
            ring.port = intro.port;
        }
        for domid in self.store.take_released() {
            if let Some(ring) = self.rings.remove(&domid) {
                drop(ring);
                self.kill_domain_handles(domid);
            }
        }
        while let Some(domid) = self.broken.pop() {
            // A failed ring is replaced by a fresh page: its handles die, new ones may open.
            if let Some(old) = self.rings.remove(&domid) {
                let fresh = DomainRing::new(&crate::store::Introduced {
                    domid,
                    mfn: old.mfn,
                    port: old.port,
                });
                self.rings.insert(domid, fresh);
                self.kill_domain_handles(domid);
            }
        }
    }

    /// Moves the output queued for `c` towards its handle.
    fn route_output(&mut self, me: ConnId, c: ConnId) {
        let Some(end) = self.ends.get(&c) else {
            // Nobody holds it any more: the output goes with it.
            while self.store.pop_output(c).is_some() {}
            return;
        };
        match end.route {
            Route::Direct => {
                while let Some(out) = self.store.pop_output(c) {
                    if let Some(m) = to_message(out) {
                        self.wakeups.put(&end.mailbox, c == me, m);
                    }
                }
            }
            Route::Ring(domid) => {
                let Some(ring) = self.rings.get_mut(&domid) else {
                    return;
                };
                // Usually nothing is left: a guest's own output already went into its ring
                // while its request was served.
                let mut queued = false;
                while let Some(out) = self.store.pop_output(c) {
                    if let Err(e) = ring.respond(c, &out) {
                        if e.is_fatal() {
                            self.broken.push(domid);
                        }
                        break;
                    }
                    queued = true;
                }
                if queued && !self.to_pump.contains(&domid) {
                    self.to_pump.push(domid);
                }
            }
        }
    }

    /// Every handle of `domid` fails from now on, and whoever waits on one is woken.
    fn kill_domain_handles(&mut self, domid: u32) {
        let gone: Vec<ConnId> = self
            .ends
            .iter()
            .filter(|(_, e)| e.route == Route::Ring(domid))
            .map(|(&id, _)| id)
            .collect();
        for c in gone {
            if let Some(end) = self.ends.remove(&c) {
                end.mailbox.kill();
            }
            self.store.disconnect(c);
        }
    }

    /// Runs `f` on the store outside any handle; what it causes is delivered as usual.
    pub fn with_store<R>(&mut self, f: impl FnOnce(&mut Store) -> R) -> R {
        let r = f(&mut self.store);
        self.settle(ConnId(u64::MAX));
        r
    }

    /// The (mfn, event channel port) a domain's ring was introduced with, if it has a ring.
    pub fn ring_of(&self, domid: u32) -> Option<(u64, u32)> {
        self.rings.get(&domid).map(|r| (r.mfn, r.port))
    }

    /// The page of a domain's ring, if it has one.
    pub fn ring_page(&self, domid: u32) -> Option<Arc<ring::RingPage>> {
        self.rings.get(&domid).map(|r| Arc::clone(r.page()))
    }

    /// What the guest's event channel notification does: the store looks at the page now
    /// (and gives the ring up, failing its handles, if the page makes no sense). ENOENT
    /// unless the domain has a ring.
    pub fn notify(&mut self, domid: u32) -> Result<(), Errno> {
        let ring = self.rings.get_mut(&domid).ok_or(Errno(libc::ENOENT))?;
        let (ends, wake) = (&self.ends, &mut self.wakeups);
        let me = ConnId(u64::MAX);
        if ring
            .pump(&mut self.store, |to, m| deliver(ends, wake, me, to, m))
            .is_err()
        {
            self.broken.push(domid);
        }
        self.settle(me);
        Ok(())
    }
}

/// A message off a ring, to the handle of `to`.
fn deliver(
    ends: &IdMap<ConnId, End>,
    wake: &mut Wakeups,
    me: ConnId,
    to: ConnId,
    m: ring::Message,
) {
    if let Some(end) = ends.get(&to) {
        wake.put(
            &end.mailbox,
            to == me,
            Message {
                header: m.header,
                payload: m.payload,
            },
        );
    }
}

/// A whole message from a store queue as the client reads it (the payload moved, not copied).
fn to_message(mut out: Vec<u8>) -> Option<Message> {
    let header = Header::parse(out.first_chunk::<HEADER_LEN>()?).ok()?;
    out.drain(..HEADER_LEN);
    Some(Message {
        header,
        payload: out,
    })
}
