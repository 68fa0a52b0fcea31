//! Per-connection state: who it acts as, its watches and transactions, and its output queue.
//!
//! Output queue bound: replies are never dropped (one per request, and transports bound the
//! requests in flight), but queued *watch events* are capped at `Config::max_queued_events` per
//! connection. At the cap, new events for that connection are dropped (the newest, so what the
//! client eventually reads is still in order) and counted in `dropped_events`; the connection
//! stays open. Clients see a gap, which xenstore.txt allows only for unreadable paths, so the
//! default cap is generous; a transport that prefers to close such a client can poll
//! `Store::dropped_events`.
//!
//! Like the C daemon, an event identical (path and token) to one still queued is not queued
//! twice; special (`@...`) events are always queued.

use std::collections::{HashMap, HashSet, VecDeque};

use super::perms::Access;
use super::txn::Txn;
use super::IdMap;
use crate::wire::HEADER_LEN;

pub(crate) struct Conn {
    pub access: Access,
    /// (absolute or special path, token) of every watch, for duplicates and removal.
    pub watches: HashSet<(Box<str>, Box<[u8]>)>,
    pub txns: HashMap<u32, Txn>,
    pub next_txid: u32,
    pub out: Outq,
    /// Already listed for `take_dirty`.
    pub dirty: bool,
}

impl Conn {
    pub fn new(domid: u32) -> Conn {
        Conn {
            access: Access::new(domid),
            watches: HashSet::new(),
            txns: HashMap::new(),
            next_txid: 1,
            out: Outq::default(),
            dirty: false,
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

#[derive(Default)]
pub(crate) struct Outq {
    q: VecDeque<(bool, Vec<u8>)>,
    events: usize,
    /// Hashes of queued non-special event payloads (count per hash) to find duplicates
    /// without scanning the queue in the common case.
    queued: IdMap<u64, u32>,
    pub dropped: u64,
}

/// FNV-1a: cheap for the short payloads of events (this runs once per event and watcher).
/// Collisions only cost a scan of the queue.
fn payload_hash(p: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in p {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Outq {
    pub fn push_reply(&mut self, msg: Vec<u8>) {
        self.q.push_back((false, msg));
    }

    /// Queues a whole WATCH_EVENT message; false if dropped (duplicate or over the cap).
    pub fn push_event(&mut self, msg: Vec<u8>, cap: usize) -> bool {
        let payload = &msg[HEADER_LEN..];
        let special = payload.first() == Some(&b'@');
        let h = if special { 0 } else { payload_hash(payload) };
        if !special
            && self.queued.contains_key(&h)
            && self.q.iter().any(|(ev, m)| *ev && &m[HEADER_LEN..] == payload)
        {
            return false;
        }
        if self.events >= cap {
            self.dropped += 1;
            return false;
        }
        if !special {
            *self.queued.entry(h).or_insert(0) += 1;
        }
        self.events += 1;
        self.q.push_back((true, msg));
        true
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let (ev, msg) = self.q.pop_front()?;
        if ev {
            self.events -= 1;
            let payload = &msg[HEADER_LEN..];
            if payload.first() != Some(&b'@') {
                let h = payload_hash(payload);
                if let Some(n) = self.queued.get_mut(&h) {
                    *n -= 1;
                    if *n == 0 {
                        self.queued.remove(&h);
                    }
                }
            }
        }
        Some(msg)
    }

    pub fn clear(&mut self) {
        self.q.clear();
        self.queued.clear();
        self.events = 0;
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
        encode(MsgType::XS_WATCH_EVENT, 0, 0, format!("{p}\0tok\0").as_bytes())
    }

    #[test]
    fn cap_and_duplicates() {
        let mut q = Outq::default();
        assert!(q.push_event(ev("/a"), 2));
        assert!(!q.push_event(ev("/a"), 2), "duplicate of a queued event");
        assert!(q.push_event(ev("@releaseDomain"), 2));
        assert!(!q.push_event(ev("/b"), 2), "over the cap");
        assert_eq!(q.dropped, 1);
        q.push_reply(vec![0; 16]);
        assert_eq!(q.pop().unwrap(), ev("/a"));
        assert!(q.push_event(ev("/a"), 2), "no longer queued, so not a duplicate");
        assert_eq!(q.len(), 3);
        assert_eq!(q.queued_events(), 2);
    }
}
