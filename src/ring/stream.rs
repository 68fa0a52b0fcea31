//! Moving bytes through one ring: a message reassembler on the consumer side and a byte queue on
//! the producer side. Both read the two indexes once per call, check them, and publish their own
//! index once at the end (see the module comment of `ring` for the ordering argument).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::page::{Ring, RingPage, RING_SIZE};
use super::{Message, RingError};
use crate::wire::{Header, MsgType, HEADER_LEN};

/// Reassembles messages from a ring, however they are split (ring end, partial publication).
#[derive(Debug, Default)]
pub(crate) struct Reader {
    hdr: [u8; HEADER_LEN],
    hdr_fill: usize,
    header: Option<Header>,
    payload: Vec<u8>,
}

impl Reader {
    /// Forgets a partially read message.
    pub fn clear(&mut self) {
        self.hdr_fill = 0;
        self.header = None;
        self.payload = Vec::new();
    }

    /// Whether part of a message has been consumed but not yet returned.
    pub fn in_message(&self) -> bool {
        self.hdr_fill > 0
    }

    /// The bytes of the message consumed so far (a live update hands them over).
    pub fn partial(&self) -> Vec<u8> {
        let mut v = self.hdr[..self.hdr_fill].to_vec();
        if self.header.is_some() {
            v.extend_from_slice(&self.payload);
        }
        v
    }

    /// Takes up a message another process started consuming: `bytes` as `partial` gave them,
    /// less than one whole message.
    pub fn resume(&mut self, bytes: &[u8]) -> Result<(), RingError> {
        self.clear();
        let n = bytes.len().min(HEADER_LEN);
        self.hdr[..n].copy_from_slice(&bytes[..n]);
        self.hdr_fill = n;
        if n == HEADER_LEN {
            let h = Header::parse(&self.hdr).map_err(|_| RingError::Protocol)?;
            if bytes.len() - n >= h.len as usize && h.len > 0 {
                return Err(RingError::Protocol);
            }
            self.header = Some(h);
            self.payload = Vec::with_capacity(h.len as usize);
            self.payload.extend_from_slice(&bytes[n..]);
        }
        Ok(())
    }

    /// Consumes what is available, up to the end of one message. Returns the message if it
    /// completed, and how many bytes were consumed (and published as consumed).
    pub fn poll(
        &mut self,
        page: &RingPage,
        ring: Ring,
    ) -> Result<(Option<Message>, u32), RingError> {
        // Acquire on prod: the data bytes the producer wrote before publishing are visible.
        let prod = page.load(ring.prod(), Acquire);
        let cons = page.load(ring.cons(), Relaxed);
        let avail = prod.wrapping_sub(cons);
        if avail > RING_SIZE {
            return Err(RingError::BadIndex);
        }
        let mut taken: u32 = 0;
        let mut done = None;
        while taken < avail {
            let left = (avail - taken) as usize;
            let at = cons.wrapping_add(taken);
            match self.header {
                None => {
                    let n = left.min(HEADER_LEN - self.hdr_fill);
                    page.read_data(ring, at, &mut self.hdr[self.hdr_fill..self.hdr_fill + n]);
                    self.hdr_fill += n;
                    taken += n as u32;
                    if self.hdr_fill == HEADER_LEN {
                        let h = Header::parse(&self.hdr).map_err(|_| RingError::Protocol)?;
                        self.header = Some(h);
                        self.payload = Vec::with_capacity(h.len as usize);
                    }
                }
                Some(h) => {
                    let have = self.payload.len();
                    let n = left.min(h.len as usize - have);
                    self.payload.resize(have + n, 0);
                    page.read_data(ring, at, &mut self.payload[have..]);
                    taken += n as u32;
                }
            }
            if let Some(h) = self.header {
                if self.payload.len() == h.len as usize {
                    done = Some(Message {
                        header: h,
                        payload: std::mem::take(&mut self.payload),
                    });
                    self.clear();
                    break;
                }
            }
        }
        if taken > 0 {
            // Release: our reads of the bytes happen before the producer may reuse their slots.
            page.store(ring.cons(), cons.wrapping_add(taken), Release);
        }
        Ok((done, taken))
    }
}

/// Bytes waiting to be produced into a ring, whole messages in order.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    queue: VecDeque<Vec<u8>>,
    /// How much of the front message is already in the ring.
    front_off: usize,
    pending: usize,
    /// Queued messages that are not watch events, until wholly in the ring (the C daemon's
    /// "outstanding requests" of a domain: answered, the answer not yet delivered).
    replies: usize,
}

fn is_event(msg: &[u8]) -> bool {
    msg.get(..4)
        .is_some_and(|t| t == (MsgType::XS_WATCH_EVENT as u32).to_le_bytes())
}

impl Writer {
    pub fn push(&mut self, msg: Vec<u8>) {
        self.pending += msg.len();
        self.replies += usize::from(!is_event(&msg));
        self.queue.push_back(msg);
    }

    /// Everything not yet in the ring, and how many of its first bytes finish a message
    /// partly in the ring already.
    pub fn unwritten(&self) -> (Vec<u8>, usize) {
        let mut v = Vec::with_capacity(self.pending);
        for (i, m) in self.queue.iter().enumerate() {
            v.extend_from_slice(&m[if i == 0 { self.front_off } else { 0 }..]);
        }
        let partial = match self.queue.front() {
            Some(m) if self.front_off > 0 => m.len() - self.front_off,
            _ => 0,
        };
        (v, partial)
    }

    /// Queued messages other than watch events not wholly in the ring yet.
    pub fn replies(&self) -> usize {
        self.replies
    }

    /// Bytes not yet in the ring.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.front_off = 0;
        self.pending = 0;
        self.replies = 0;
    }

    /// Forgets that the front message was partly sent, so it goes out again from its start
    /// (after the ring was reset under it, the peer saw none of it).
    pub fn rewind(&mut self) {
        self.pending += self.front_off;
        self.front_off = 0;
    }

    /// Produces as much as fits. Returns the bytes published by this call.
    pub fn flush(&mut self, page: &RingPage, ring: Ring) -> Result<u32, RingError> {
        if self.pending == 0 {
            return Ok(0);
        }
        // Acquire on cons: the consumer's reads of the slots it freed happen before our writes.
        let cons = page.load(ring.cons(), Acquire);
        let prod = page.load(ring.prod(), Relaxed);
        let used = prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(RingError::BadIndex);
        }
        let mut free = (RING_SIZE - used) as usize;
        let mut put: u32 = 0;
        while free > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let chunk = &front[self.front_off..];
            let n = chunk.len().min(free);
            page.write_data(ring, prod.wrapping_add(put), &chunk[..n]);
            put += n as u32;
            free -= n;
            self.front_off += n;
            if self.front_off == front.len() {
                self.replies -= usize::from(!is_event(front));
                self.queue.pop_front();
                self.front_off = 0;
            }
        }
        self.pending -= put as usize;
        if put > 0 {
            // Release: the data written above is visible to whoever acquires the new index.
            page.store(ring.prod(), prod.wrapping_add(put), Release);
        }
        Ok(put)
    }
}
