//! Per-connection state: who it acts as, its watches and transactions, and its output queue.
//!
//! Output queue bound: replies are never dropped (one per request, and transports bound the
//! requests in flight), but queued *watch events* are capped per connection, both by count
//! (`Config::max_queued_events`) and by bytes (`Config::max_queued_event_bytes`, whole messages
//! with their headers). An event that would take the queue over either cap is dropped (the
//! newest, so what the client eventually reads is still in order) and counted in
//! `dropped_events`; the connection stays open. The byte cap is what bounds memory: by count
//! alone a client that never reads could hold 16384 events of up to 4 KiB each. Clients see a
//! gap, which xenstore.txt allows only for unreadable paths, so the defaults leave room for
//! any client that reads at all; a transport that prefers to close such a client can poll
//! `Store::dropped_events`.
//!
//! Like the C daemon, an event identical (path and token) to one still queued is not queued
//! twice (that is not a drop); special (`@...`) events are always queued. The queued payloads
//! are indexed by value, so that check costs one lookup however long the queue is (a client
//! that never reads, watching nodes that are rewritten, meets it on every event); the index
//! holds a second copy of each payload, so a connection's event memory is at most about twice
//! the byte cap.

use std::collections::{HashMap, HashSet, VecDeque};

use super::perms::Access;
use super::txn::Txn;
use crate::wire::HEADER_LEN;

pub(crate) struct ConnState {
    pub access: Access,
    /// (absolute or special path, token) of every watch, for duplicates and removal.
    pub watches: HashSet<(Box<str>, Box<[u8]>)>,
    pub txns: HashMap<u32, Txn>,
    pub next_txid: u32,
    pub out: Outq,
    /// Already listed for `take_dirty`.
    pub dirty: bool,
    /// Requests held back while a live update waits (see live_update.rs), in order.
    pub held: VecDeque<(crate::wire::Header, Vec<u8>)>,
}

impl ConnState {
    pub fn new(domid: u32) -> ConnState {
        ConnState {
            access: Access::new(domid),
            watches: HashSet::new(),
            txns: HashMap::new(),
            next_txid: 1,
            out: Outq::default(),
            dirty: false,
            held: VecDeque::new(),
        }
    }

    /// A free transaction id (never 0, never one in use).
    pub fn alloc_txid(&mut self) -> u32 {
        loop {
            let id = self.next_txid;
            self.next_txid = self.next_txid.wrapping_add(1);
            if id != 0 && !self.txns.contains_key(&id) {
                return id;
            }
        }
    }
}

/// The caps on queued watch events of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventCap {
    pub events: usize,
    pub bytes: usize,
}

#[derive(Default)]
pub(crate) struct Outq {
    q: VecDeque<(bool, Vec<u8>)>,
    events: usize,
    /// Bytes of the queued events (whole messages).
    event_bytes: usize,
    /// Bytes of everything queued (replies and events).
    bytes: usize,
    /// Payloads of the queued non-special events (each is queued at most once).
    queued: HashSet<Box<[u8]>>,
    pub dropped: u64,
}

impl Outq {
    pub fn push_reply(&mut self, msg: Vec<u8>) {
        self.bytes += msg.len();
        self.q.push_back((false, msg));
    }

    /// Queues a whole WATCH_EVENT message; false if not queued (a duplicate, or dropped and
    /// counted because it would exceed a cap).
    pub fn push_event(&mut self, msg: Vec<u8>, cap: EventCap) -> bool {
        let payload = &msg[HEADER_LEN..];
        let special = payload.first() == Some(&b'@');
        if !special && self.queued.contains(payload) {
            return false;
        }
        if self.events >= cap.events || msg.len() > cap.bytes.saturating_sub(self.event_bytes) {
            self.dropped += 1;
            return false;
        }
        if !special {
            self.queued.insert(payload.into());
        }
        self.events += 1;
        self.event_bytes += msg.len();
        self.bytes += msg.len();
        self.q.push_back((true, msg));
        true
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let (ev, msg) = self.q.pop_front()?;
        self.bytes -= msg.len();
        if ev {
            self.events -= 1;
            self.event_bytes -= msg.len();
            let payload = &msg[HEADER_LEN..];
            if payload.first() != Some(&b'@') {
                self.queued.remove(payload);
            }
        }
        Some(msg)
    }

    /// The queued messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.q.iter().map(|(_, m)| m.as_slice())
    }

    pub fn clear(&mut self) {
        self.q.clear();
        self.queued.clear();
        self.events = 0;
        self.event_bytes = 0;
        self.bytes = 0;
    }

    /// Messages queued and their bytes (replies and events).
    pub fn queued(&self) -> (usize, usize) {
        (self.q.len(), self.bytes)
    }

    pub fn queued_event_bytes(&self) -> usize {
        self.event_bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn queued_events(&self) -> usize {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, MsgType};

    fn ev(p: &str) -> Vec<u8> {
        encode(
            MsgType::XS_WATCH_EVENT,
            0,
            0,
            format!("{p}\0tok\0").as_bytes(),
        )
    }

    fn count(n: usize) -> EventCap {
        EventCap {
            events: n,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn cap_and_duplicates() {
        let mut q = Outq::default();
        assert!(q.push_event(ev("/a"), count(2)));
        assert!(
            !q.push_event(ev("/a"), count(2)),
            "duplicate of a queued event"
        );
        assert_eq!(q.dropped, 0, "duplicates are not drops");
        assert!(q.push_event(ev("@releaseDomain"), count(2)));
        assert!(!q.push_event(ev("/b"), count(2)), "over the cap");
        assert_eq!(q.dropped, 1);
        q.push_reply(vec![0; 16]);
        assert_eq!(q.pop().unwrap(), ev("/a"));
        assert!(
            q.push_event(ev("/a"), count(2)),
            "no longer queued, so not a duplicate"
        );
        assert_eq!(q.len(), 3);
        assert_eq!(q.queued_events(), 2);
    }

    #[test]
    fn byte_cap() {
        let one = ev("/a").len();
        let cap = EventCap {
            events: 100,
            bytes: 2 * one + 1,
        };
        let mut q = Outq::default();
        assert!(q.push_event(ev("/a"), cap));
        assert!(q.push_event(ev("/b"), cap));
        assert_eq!(q.queued_event_bytes(), 2 * one);
        // A third would need 3 * one bytes: dropped and counted, also for special events.
        assert!(!q.push_event(ev("/c"), cap));
        assert!(!q.push_event(ev("@releaseDomain"), cap));
        assert_eq!(q.dropped, 2);
        // Replies are never capped and do not use the event budget.
        q.push_reply(vec![0; 5000]);
        assert_eq!(q.queued(), (3, 2 * one + 5000));
        // Reading one event makes room for exactly one more.
        assert_eq!(q.pop().unwrap(), ev("/a"));
        assert!(q.push_event(ev("/c"), cap));
        assert!(!q.push_event(ev("/d"), cap));
        assert_eq!(q.dropped, 3);
        // Order is kept: what was queued comes out in order, replies included.
        assert_eq!(q.pop().unwrap(), ev("/b"));
        assert_eq!(q.pop().unwrap().len(), 5000);
        assert_eq!(q.pop().unwrap(), ev("/c"));
        assert_eq!(q.queued(), (0, 0));
        assert_eq!(q.queued_event_bytes(), 0);
        // A cap smaller than one event drops everything.
        let tiny = EventCap {
            events: 100,
            bytes: one - 1,
        };
        assert!(!q.push_event(ev("/e"), tiny));
        q.clear();
        assert_eq!(q.queued(), (0, 0));
    }
}

#[cfg(test)]
mod duplicate_cost {
    use super::*;
    use crate::wire::{encode, MsgType};

    /// A client that never reads, watching nodes that keep being rewritten: its queue sits at
    /// the cap and nearly every new event duplicates a queued one. Finding that out used to
    /// scan the queue (the daemon under load spent 85% of its time there); it must not depend
    /// on the queue's length.
    #[test]
    fn duplicates_of_a_full_queue_cost_a_lookup() {
        let cap = EventCap {
            events: 16 * 1024,
            bytes: usize::MAX,
        };
        let ev = |i: usize| {
            encode(
                MsgType::XS_WATCH_EVENT,
                0,
                0,
                format!("/load/b{i}/k\0sleeper\0").as_bytes(),
            )
        };
        let mut q = Outq::default();
        for i in 0..cap.events {
            assert!(q.push_event(ev(i), cap));
        }
        // Every queued payload is in the index, so a duplicate check is one lookup, not a
        // scan of the queue.
        assert_eq!(q.queued.len(), cap.events);
        for i in 0..20_000 {
            assert!(!q.push_event(ev((i * 7919) % cap.events), cap));
        }
        assert_eq!(q.dropped, 0, "duplicates are not drops");
        assert_eq!(q.queued.len(), cap.events);
        // Popping keeps the index right: a popped event may be queued again.
        let first = q.pop().unwrap();
        assert!(q.push_event(first, cap));
    }
}
