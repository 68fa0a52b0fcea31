//! A tiny engine for testing transports without the real store (tests only).
//!
//! READ echoes its payload; WATCH subscribes the connection; WRITE answers "OK" and sends every
//! subscriber a WATCH_EVENT carrying the payload; CONTROL "fatal" fails the connection.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::Engine;
use crate::store::{ConnId, Fatal};
use crate::wire::{encode, Header, MsgType};

#[derive(Default)]
pub struct StandIn {
    next: u64,
    queues: HashMap<ConnId, VecDeque<Vec<u8>>>,
    watchers: BTreeSet<ConnId>,
    dirty: Vec<ConnId>,
    pub disconnected: Vec<ConnId>,
    pub handled: usize,
}

impl StandIn {
    fn queue(&mut self, conn: ConnId, msg: Vec<u8>) {
        let q = self
            .queues
            .get_mut(&conn)
            .expect("queue of a live connection");
        if q.is_empty() {
            self.dirty.push(conn);
        }
        q.push_back(msg);
    }
}

impl Engine for StandIn {
    fn connect(&mut self, _domid: u32) -> ConnId {
        self.next += 1;
        let id = ConnId(self.next);
        self.queues.insert(id, VecDeque::new());
        id
    }
    fn disconnect(&mut self, conn: ConnId) {
        self.queues.remove(&conn);
        self.watchers.remove(&conn);
        self.disconnected.push(conn);
    }
    fn handle(&mut self, conn: ConnId, hdr: &Header, payload: &[u8]) -> Result<(), Fatal> {
        self.handled += 1;
        let ty = hdr.msg_type().unwrap_or(MsgType::XS_ERROR);
        match ty {
            MsgType::XS_CONTROL if payload == b"fatal" => return Err(Fatal("asked to".into())),
            MsgType::XS_WATCH => {
                self.watchers.insert(conn);
                self.queue(conn, encode(ty, hdr.req_id, hdr.tx_id, b"OK\0"));
            }
            MsgType::XS_WRITE => {
                self.queue(conn, encode(ty, hdr.req_id, hdr.tx_id, b"OK\0"));
                for w in self.watchers.clone() {
                    self.queue(w, encode(MsgType::XS_WATCH_EVENT, 0, 0, payload));
                }
            }
            _ => self.queue(conn, encode(ty, hdr.req_id, hdr.tx_id, payload)),
        }
        Ok(())
    }
    fn pop_output(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        self.queues.get_mut(&conn)?.pop_front()
    }
    fn take_dirty_into(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.dirty)
    }
    fn take_released(&mut self) -> Vec<u32> {
        Vec::new()
    }
}
