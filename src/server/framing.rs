//! Per-connection byte buffers of a stream transport: [`InBuf`] reassembles whole requests from
//! however the bytes arrived, [`OutQueue`] holds whole messages until the peer takes them,
//! writing as many as the socket accepts with one call. No locking: each buffer belongs to one
//! connection, owned by the event-loop thread.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use crate::wire::{Header, MsgType, WireError, HEADER_LEN};

/// Bytes received from a peer, not yet consumed as whole messages.
#[derive(Default)]
pub struct InBuf {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
}

impl InBuf {
    pub fn new() -> InBuf {
        InBuf::default()
    }

    /// The bytes held, not handled yet (a live update hands them over).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Appends bytes (used by tests and transports that do not read from a `Read`).
    pub fn extend(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if all of it has arrived. Its bytes are consumed; the payload
    /// slice stays valid until the buffer is next modified.
    pub fn next_message(&mut self) -> Result<Option<(Header, &[u8])>, WireError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let hdr = Header::parse(avail[..HEADER_LEN].try_into().expect("header length"))?;
        let total = HEADER_LEN + hdr.len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let from = self.start + HEADER_LEN;
        self.start += total;
        Ok(Some((hdr, &self.buf[from..self.start])))
    }

    /// Moves unconsumed bytes to the front so the buffer does not creep.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
        // Give back the memory of a big burst once it is consumed.
        if self.buf.capacity() > 256 * 1024 && self.buf.len() < 64 * 1024 {
            self.buf.shrink_to(64 * 1024);
        }
    }
}

struct OutMsg {
    data: Vec<u8>,
    /// When a watch event was queued (None for replies, which never expire: reading the
    /// clock for them would be wasted).
    queued: Option<Instant>,
}

/// Whole messages waiting for the peer, in the order they must arrive.
#[derive(Default)]
pub struct OutQueue {
    msgs: VecDeque<OutMsg>,
    /// Bytes of the first message already written.
    head_off: usize,
    /// Unwritten bytes in the queue.
    bytes: usize,
}

/// At most this many messages go into one writev.
const IOV_BATCH: usize = 64;

impl OutQueue {
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues one whole message (header and payload).
    pub fn push(&mut self, data: Vec<u8>) {
        let event = data.len() >= 4
            && u32::from_ne_bytes([data[0], data[1], data[2], data[3]])
                == MsgType::XS_WATCH_EVENT as u32;
        self.bytes += data.len();
        let queued = if event { Some(Instant::now()) } else { None };
        self.msgs.push_back(OutMsg { data, queued });
    }

    /// Queues the rest of a message another daemon started writing (live update): never
    /// taken for a watch event, whatever its first bytes look like.
    pub fn push_raw(&mut self, data: Vec<u8>) {
        self.bytes += data.len();
        self.msgs.push_back(OutMsg { data, queued: None });
    }

    /// Everything not yet written, and how many of its first bytes finish a message
    /// already partly written.
    pub fn unwritten(&self) -> (Vec<u8>, usize) {
        let mut v = Vec::with_capacity(self.bytes);
        for (i, m) in self.msgs.iter().enumerate() {
            v.extend_from_slice(&m.data[if i == 0 { self.head_off } else { 0 }..]);
        }
        let partial = match self.msgs.front() {
            Some(m) if self.head_off > 0 => m.data.len() - self.head_off,
            _ => 0,
        };
        (v, partial)
    }

    /// Writes as much as `dst` accepts, several messages per call. Returns the bytes written;
    /// stops quietly at `WouldBlock`; other errors are returned.
    pub fn write_to(&mut self, dst: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while let Some(head) = self.msgs.front() {
            let sent = if self.msgs.len() == 1 {
                // The common case (one reply or event): no gather list to build.
                dst.write(&head.data[self.head_off..])
            } else {
                let mut iov = [IoSlice::new(&[]); IOV_BATCH];
                let mut k = 0;
                for (slot, m) in iov.iter_mut().zip(self.msgs.iter()) {
                    let from = if k == 0 { self.head_off } else { 0 };
                    *slot = IoSlice::new(&m.data[from..]);
                    k += 1;
                }
                dst.write_vectored(&iov[..k])
            };
            let n = match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(n);
            total += n;
        }
        Ok(total)
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let head = self.msgs.front().expect("advance past the queue");
            let left = head.data.len() - self.head_off;
            if n >= left {
                n -= left;
                self.msgs.pop_front();
                self.head_off = 0;
            } else {
                self.head_off += n;
                n = 0;
            }
        }
    }

    /// Drops watch events that have waited longer than `timeout` and of which nothing was
    /// sent yet (a partly sent message must be finished to keep the stream in step).
    /// Returns how many were dropped.
    pub fn drop_stale_events(&mut self, now: Instant, timeout: Duration) -> usize {
        let head_started = self.head_off > 0;
        let mut dropped = 0;
        let mut bytes = self.bytes;
        let mut i = 0;
        self.msgs.retain(|m| {
            let keep = (i == 0 && head_started)
                || m.queued
                    .is_none_or(|t| now.saturating_duration_since(t) <= timeout);
            i += 1;
            if !keep {
                dropped += 1;
                bytes -= m.data.len();
            }
            keep
        });
        self.bytes = bytes;
        dropped
    }

    /// When the oldest unsent watch event was queued, if any.
    pub fn oldest_event(&self) -> Option<Instant> {
        self.msgs.iter().filter_map(|m| m.queued).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    fn msg(ty: MsgType, req: u32, payload: &[u8]) -> Vec<u8> {
        encode(ty, req, 0, payload)
    }

    #[test]
    fn reassembles_byte_by_byte() {
        let mut stream = msg(MsgType::XS_READ, 1, b"/a\0");
        stream.extend(msg(MsgType::XS_WRITE, 2, b"/b\0xyz"));
        let mut inb = InBuf::new();
        let mut seen = Vec::new();
        for b in &stream {
            inb.extend(std::slice::from_ref(b));
            while let Some((h, p)) = inb.next_message().unwrap() {
                seen.push((h.req_id, p.to_vec()));
            }
        }
        assert_eq!(seen, vec![(1, b"/a\0".to_vec()), (2, b"/b\0xyz".to_vec())]);
        assert!(inb.pending().is_empty());
    }

    #[test]
    fn many_messages_in_one_chunk_and_a_partial_tail() {
        let mut stream = Vec::new();
        for i in 0..100 {
            stream.extend(msg(MsgType::XS_READ, i, b"/x\0"));
        }
        let tail = msg(MsgType::XS_READ, 100, b"/tail\0");
        stream.extend(&tail[..10]);
        let mut inb = InBuf::new();
        inb.extend(&stream);
        let mut n = 0;
        while let Some((h, _)) = inb.next_message().unwrap() {
            assert_eq!(h.req_id, n);
            n += 1;
        }
        assert_eq!(n, 100);
        assert_eq!(inb.pending().len(), 10);
        inb.extend(&tail[10..]);
        assert_eq!(inb.next_message().unwrap().unwrap().0.req_id, 100);
    }

    #[test]
    fn oversized_length_is_refused_before_the_payload_arrives() {
        let mut h = Header::new(MsgType::XS_WRITE, 1, 0, 4097)
            .to_bytes()
            .to_vec();
        let mut inb = InBuf::new();
        inb.extend(&h);
        assert_eq!(inb.next_message().err(), Some(WireError::TooLong(4097)));
        // Exactly the maximum is fine.
        h = Header::new(MsgType::XS_WRITE, 1, 0, 4096)
            .to_bytes()
            .to_vec();
        let mut inb = InBuf::new();
        inb.extend(&h);
        assert_eq!(inb.next_message(), Ok(None));
        inb.extend(&[0u8; 4096]);
        assert_eq!(inb.next_message().unwrap().unwrap().1.len(), 4096);
    }

    /// A writer that accepts at most `cap` bytes per call and then reports WouldBlock after
    /// `budget` bytes in total.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                for &c in b.iter() {
                    if n == self.cap || n == self.budget {
                        break;
                    }
                    self.got.push(c);
                    n += 1;
                }
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_resume() {
        let mut q = OutQueue::new();
        let mut expected = Vec::new();
        for i in 0..10 {
            let m = msg(MsgType::XS_READ, i, &[b'a' + i as u8; 100]);
            expected.extend(&m);
            q.push(m);
        }
        assert_eq!(q.bytes(), expected.len());
        let mut w = Trickle {
            got: Vec::new(),
            cap: 7,
            budget: 333,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), 333);
        assert_eq!(q.bytes(), expected.len() - 333);
        w.budget = usize::MAX;
        q.write_to(&mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(w.got, expected);
    }

    #[test]
    fn stale_events_are_dropped_but_not_replies_or_a_started_message() {
        let mut q = OutQueue::new();
        q.push(msg(MsgType::XS_WATCH_EVENT, 0, b"/a\0tok\0"));
        q.push(msg(MsgType::XS_READ, 1, b"v"));
        q.push(msg(MsgType::XS_WATCH_EVENT, 0, b"/b\0tok\0"));
        let later = Instant::now() + Duration::from_secs(30);
        assert!(q.oldest_event().is_some());
        // Start sending the first event: it must survive.
        let mut w = Trickle {
            got: Vec::new(),
            cap: 5,
            budget: 5,
        };
        q.write_to(&mut w).unwrap();
        assert_eq!(q.drop_stale_events(later, Duration::from_secs(20)), 1);
        assert_eq!(
            q.drop_stale_events(Instant::now(), Duration::from_secs(20)),
            0
        );
        w.budget = usize::MAX;
        w.cap = usize::MAX;
        q.write_to(&mut w).unwrap();
        let mut expect = msg(MsgType::XS_WATCH_EVENT, 0, b"/a\0tok\0");
        expect.extend(msg(MsgType::XS_READ, 1, b"v"));
        assert_eq!(w.got, expect);
        assert_eq!(q.bytes(), 0);
    }
}
