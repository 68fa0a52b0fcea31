//! The `ring_reader` harness: both ends of one shared page, with the fuzz input playing a
//! hostile peer that sets the indexes and control words to anything and scribbles on the data,
//! interleaved with the ends' own reads and writes.
//!
//! A shadow model follows what each end consumed and produced, and after every call checks:
//! - a reader never consumes more than was available, returns exactly the bytes it consumed as
//!   messages (header and payload, `len <= XENSTORE_PAYLOAD_MAX`), and returns `None` only in
//!   the middle of a message;
//! - a writer never produces past its consumer (never overwrites unread bytes), and what it
//!   produces is exactly the messages queued, in order;
//! - inconsistent indexes fail the ring with `BadIndex` (`XENSTORE_ERROR_RINGIDX` in the page),
//!   an over-long header with `Protocol` (`XENSTORE_ERROR_PROTO`), and an error is only ever
//!   reported for one of those causes, a code the peer put in `error`, or an earlier failure.
//!
//! Input format: 4 index words (little endian) set before the ends attach, then operations,
//! one byte each plus arguments (see `Harness::step`); missing bytes read as zero.

use std::collections::VecDeque;
use std::ptr::addr_of_mut;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use xenstore::ring::{
    ClientRing, Field, Message, Ring, RingError, RingPage, ServerRing, RING_SIZE,
};
use xenstore::wire::{
    Header, HEADER_LEN, PAYLOAD_MAX, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX, XENSTORE_RECONNECT, XENSTORE_SERVER_FEATURE_ERROR,
    XENSTORE_SERVER_FEATURE_RECONNECTION,
};

/// Most operations taken from one input.
pub const MAX_OPS: usize = 256;

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Server,
    Client,
}

/// What the model knows about one end's reader.
#[derive(Default)]
struct ReadShadow {
    /// Bytes of the current message consumed so far.
    partial: Vec<u8>,
}

/// What the model knows about one end's writer: the queued messages and how much of the front
/// one is already in the ring.
#[derive(Default)]
struct WriteShadow {
    queue: VecDeque<Vec<u8>>,
    front_off: usize,
}

impl WriteShadow {
    fn pending(&self) -> usize {
        self.queue.iter().map(Vec::len).sum::<usize>() - self.front_off
    }
    /// The next `n` bytes to go out, consumed from the model.
    fn take(&mut self, mut n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while n > 0 {
            let front = self
                .queue
                .front()
                .expect("writer produced more than was queued");
            let k = (front.len() - self.front_off).min(n);
            out.extend_from_slice(&front[self.front_off..self.front_off + k]);
            self.front_off += k;
            n -= k;
            if self.front_off == front.len() {
                self.queue.pop_front();
                self.front_off = 0;
            }
        }
        out
    }
    fn clear(&mut self) {
        self.queue.clear();
        self.front_off = 0;
    }
}

struct Side {
    read: ReadShadow,
    write: WriteShadow,
    /// Errors this end reported before (an end stays failed until a reconnection).
    seen: Vec<RingError>,
}

pub struct Harness {
    page: Arc<RingPage>,
    server: ServerRing,
    client: ClientRing,
    s: Side,
    c: Side,
    /// Mirror of the client's "waiting for a reset to finish" flag.
    client_reconnecting: bool,
    pub stats: Stats,
}

/// What a run went through (the seed tests check every outcome is reached).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub messages: u32,
    pub bad_index: u32,
    pub protocol: u32,
    pub resets: u32,
}

fn parse_len(hdr: &[u8]) -> u32 {
    u32::from_ne_bytes(hdr[12..16].try_into().unwrap())
}

impl Harness {
    fn new(idx: [u32; 4]) -> Harness {
        let page = Arc::new(RingPage::new());
        for (f, v) in [
            Field::ReqCons,
            Field::ReqProd,
            Field::RspCons,
            Field::RspProd,
        ]
        .into_iter()
        .zip(idx)
        {
            page.store(f, v, Relaxed);
        }
        let server = ServerRing::new(page.clone(), || {});
        let client = ClientRing::new(page.clone(), || {});
        let side = || Side {
            read: ReadShadow::default(),
            write: WriteShadow::default(),
            seen: Vec::new(),
        };
        Harness {
            page,
            server,
            client,
            s: side(),
            c: side(),
            client_reconnecting: false,
            stats: Stats::default(),
        }
    }

    pub fn run(data: &[u8]) -> Stats {
        let mut c = Cursor { data, pos: 0 };
        let mut h = Harness::new([c.u32(), c.u32(), c.u32(), c.u32()]);
        let mut n = 0;
        while !c.done() && n < MAX_OPS {
            h.step(&mut c);
            n += 1;
        }
        h.stats
    }

    fn get(&self, f: Field) -> u32 {
        self.page.load(f, Relaxed)
    }
    fn set(&self, f: Field, v: u32) {
        self.page.store(f, v, Relaxed)
    }

    /// The peer writes data bytes directly into a ring (offsets masked, as any producer does).
    fn poke(&self, ring: Ring, idx: u32, bytes: &[u8]) {
        let p = self.page.as_ptr();
        for (i, &b) in bytes.iter().enumerate() {
            let off = (idx.wrapping_add(i as u32) & (RING_SIZE - 1)) as usize;
            // SAFETY: off < RING_SIZE, inside the live page's ring array; this thread is the only
            // one touching the page, and no reference into it is held across this write.
            unsafe {
                let base = match ring {
                    Ring::Req => addr_of_mut!((*p).req).cast::<u8>(),
                    Ring::Rsp => addr_of_mut!((*p).rsp).cast::<u8>(),
                };
                base.add(off).write_volatile(b);
            }
        }
    }

    fn peek(&self, ring: Ring, idx: u32, n: usize) -> Vec<u8> {
        let p = self.page.as_ptr();
        (0..n)
            .map(|i| {
                let off = (idx.wrapping_add(i as u32) & (RING_SIZE - 1)) as usize;
                // SAFETY: as in `poke`.
                unsafe {
                    let base = match ring {
                        Ring::Req => addr_of_mut!((*p).req).cast::<u8>(),
                        Ring::Rsp => addr_of_mut!((*p).rsp).cast::<u8>(),
                    };
                    base.add(off).read_volatile()
                }
            })
            .collect()
    }

    fn ring_of(c: &mut Cursor<'_>) -> Ring {
        if c.u8() & 1 == 0 {
            Ring::Req
        } else {
            Ring::Rsp
        }
    }

    fn step(&mut self, c: &mut Cursor<'_>) {
        match c.u8() % 16 {
            0 => {
                let f = [
                    Field::ReqCons,
                    Field::ReqProd,
                    Field::RspCons,
                    Field::RspProd,
                    Field::ServerFeatures,
                    Field::Connection,
                    Field::Error,
                    Field::EvtchnPort,
                ][c.u8() as usize % 8];
                let v = c.u32();
                self.set(f, v);
            }
            1 => {
                // A producer index near its consumer: mostly valid, sometimes just too far.
                let r = Self::ring_of(c);
                let d = c.u16() as u32 % (RING_SIZE + 80);
                self.set(r.prod(), self.get(r.cons()).wrapping_add(d));
            }
            2 => {
                let r = Self::ring_of(c);
                let d = c.u16() as u32 % (RING_SIZE + 80);
                self.set(r.cons(), self.get(r.prod()).wrapping_sub(d));
            }
            3 => {
                // The peer produces raw bytes.
                let r = Self::ring_of(c);
                let n = c.u8() as usize;
                let b = c.bytes(n);
                let prod = self.get(r.prod());
                self.poke(r, prod, &b);
                self.set(r.prod(), prod.wrapping_add(n as u32));
            }
            4 => {
                // The peer produces a header (any len, often over the limit) and some payload.
                let r = Self::ring_of(c);
                let ty = c.u8() as u32;
                let len = match c.u8() % 4 {
                    0 => c.u16() as u32 % 64,
                    1 => PAYLOAD_MAX as u32 + (c.u8() as u32 % 3),
                    2 => c.u32(),
                    _ => c.u16() as u32,
                };
                let k = (c.u8() as usize).min(len as usize);
                let mut b = Header {
                    ty,
                    req_id: 1,
                    tx_id: 0,
                    len,
                }
                .to_bytes()
                .to_vec();
                b.extend(c.bytes(k));
                let prod = self.get(r.prod());
                self.poke(r, prod, &b);
                self.set(r.prod(), prod.wrapping_add(b.len() as u32));
            }
            5 => self.read(End::Server),
            6 => self.read(End::Client),
            7 | 8 => {
                let end = if c.u8() & 1 == 0 {
                    End::Server
                } else {
                    End::Client
                };
                let len = match c.u8() % 4 {
                    0 => c.u8() as usize,
                    1 => PAYLOAD_MAX + 1,
                    _ => c.u16() as usize % (PAYLOAD_MAX + 1),
                };
                let fill = c.u8();
                self.write(end, c.u32(), &vec![fill; len]);
            }
            9 => self.flush(End::Server),
            10 => self.flush(End::Client),
            11 => {
                if self.server.check_reconnect() {
                    self.stats.resets += 1;
                    // The server emptied both rings and forgot its partial messages.
                    self.s.read.partial.clear();
                    self.s.write.clear();
                    self.s.seen.clear();
                    for f in [
                        Field::ReqCons,
                        Field::ReqProd,
                        Field::RspCons,
                        Field::RspProd,
                        Field::Error,
                    ] {
                        assert_eq!(self.get(f), 0, "{f:?} not reset");
                    }
                    assert_ne!(self.get(Field::Connection), XENSTORE_RECONNECT);
                }
            }
            12 => {
                let offered =
                    self.get(Field::ServerFeatures) & XENSTORE_SERVER_FEATURE_RECONNECTION != 0;
                match self.client.request_reconnect() {
                    Ok(()) => {
                        assert!(offered);
                        self.c.read.partial.clear();
                        self.c.write.clear();
                        self.client_reconnecting = true;
                        assert_eq!(self.get(Field::Connection), XENSTORE_RECONNECT);
                    }
                    Err(e) => {
                        assert_eq!(e, RingError::NoReconnect);
                        assert!(!offered);
                    }
                }
            }
            13 => {
                // The peer scribbles anywhere in a ring without moving an index.
                let r = Self::ring_of(c);
                let at = c.u16() as u32;
                let n = c.u8() as usize;
                let b = c.bytes(n);
                self.poke(r, at, &b);
            }
            14 => {
                for _ in 0..4 {
                    self.read(End::Server);
                }
            }
            _ => {
                for _ in 0..4 {
                    self.read(End::Client);
                }
            }
        }
    }

    /// Mirrors `ClientRing::ready`'s handling of a reset: while one is pending nothing is read
    /// or written; when it completes, partial reads are dropped and the front message being
    /// written restarts from its beginning.
    fn client_ready_model(&mut self) -> bool {
        let features = self.get(Field::ServerFeatures);
        let honoured =
            self.client_reconnecting || features & XENSTORE_SERVER_FEATURE_RECONNECTION != 0;
        if honoured && self.get(Field::Connection) == XENSTORE_RECONNECT {
            self.client_reconnecting = true;
            return false;
        }
        if self.client_reconnecting {
            self.client_reconnecting = false;
            self.c.read.partial.clear();
            self.c.write.front_off = 0;
            self.c.seen.clear();
        }
        true
    }

    fn server_ready_model(&self) -> bool {
        self.get(Field::Connection) != XENSTORE_RECONNECT
    }

    /// Errors `end` may legitimately report now, besides the specific causes checked by the
    /// caller: earlier failures of its own and a code the page's `error` holds.
    fn may_report(&self, end: End, e: RingError) -> bool {
        let side = match end {
            End::Server => &self.s,
            End::Client => &self.c,
        };
        if side.seen.contains(&e) {
            return true;
        }
        let code = self.get(Field::Error);
        self.uses_field(end) && code != XENSTORE_ERROR_NONE && RingError::from_code(code) == e
    }

    fn side(&mut self, end: End) -> &mut Side {
        match end {
            End::Server => &mut self.s,
            End::Client => &mut self.c,
        }
    }

    /// Remembers a reported error. (Whether a newly detected one was published in `error` is
    /// checked by the callers: a sticky one may legitimately be reported after the peer
    /// cleared the field.)
    fn after_error(&mut self, end: End, e: RingError) {
        self.side(end).seen.push(e);
    }

    fn read(&mut self, end: End) {
        let rx = match end {
            End::Server => Ring::Req,
            End::Client => Ring::Rsp,
        };
        let ready = match end {
            End::Server => self.server_ready_model(),
            End::Client => self.client_ready_model(),
        };
        let (prod, cons) = (self.get(rx.prod()), self.get(rx.cons()));
        let avail = prod.wrapping_sub(cons);
        let valid = avail <= RING_SIZE;
        let bytes = if valid {
            self.peek(rx, cons, avail as usize)
        } else {
            Vec::new()
        };
        // What a correct reader would make of the available bytes: the header it completes,
        // if any, and whether that header is over the limit.
        let partial_len = self.side(end).read.partial.len();
        let mut stream = self.side(end).read.partial.clone();
        stream.extend_from_slice(&bytes);
        let too_long =
            stream.len() >= HEADER_LEN && parse_len(&stream[..HEADER_LEN]) as usize > PAYLOAD_MAX;
        let err_before = self.get(Field::Error);
        let honoured_err = self.uses_field(end) && err_before != XENSTORE_ERROR_NONE;
        let fresh = self.fresh(end);

        let result = match end {
            End::Server => self.server.try_read_message(),
            End::Client => self.client.try_read_message(),
        };
        let consumed = self.get(rx.cons()).wrapping_sub(cons);
        match result {
            Ok(got) => {
                assert!(
                    ready || consumed == 0,
                    "{end:?} read while a reset was pending"
                );
                if consumed > 0 || got.is_some() {
                    assert!(
                        valid,
                        "{end:?} read through bad indexes (prod {prod}, cons {cons})"
                    );
                    assert!(
                        !too_long,
                        "{end:?} accepted a header over the payload limit"
                    );
                    assert!(!honoured_err, "{end:?} ignored the error field");
                    assert!(fresh, "{end:?} read after failing");
                }
                assert!(
                    consumed <= avail,
                    "{end:?} consumed {consumed} of {avail} bytes"
                );
                let taken = &bytes[..consumed as usize];
                let side = self.side(end);
                side.read.partial.extend_from_slice(taken);
                match &got {
                    Some(m) => {
                        Self::check_message(m, &side.read.partial, end);
                        self.stats.messages += 1;
                    }
                    None => {
                        let p = &side.read.partial;
                        let incomplete =
                            p.len() < HEADER_LEN || p.len() < HEADER_LEN + parse_len(p) as usize;
                        assert!(incomplete, "{end:?} sat on a complete message");
                        if ready && valid && self.may_read(end) {
                            assert_eq!(
                                consumed, avail,
                                "{end:?} left available bytes of an unfinished message"
                            );
                        }
                    }
                }
                if got.is_some() {
                    self.side(end).read.partial.clear();
                }
                // A ready end with nothing wrong must not be sitting on a fatal condition.
                if ready && !valid && self.may_read(end) {
                    panic!("{end:?} accepted bad indexes (prod {prod}, cons {cons})");
                }
            }
            Err(e) => {
                let because = match e {
                    RingError::BadIndex => !valid,
                    RingError::Protocol => too_long && valid,
                    _ => false,
                };
                assert!(
                    because || self.may_report(end, e),
                    "{end:?} reported {e:?} for no reason (prod {prod}, cons {cons}, partial {partial_len}, error {err_before})"
                );
                if because && fresh && err_before == XENSTORE_ERROR_NONE {
                    let want = if e == RingError::BadIndex {
                        XENSTORE_ERROR_RINGIDX
                    } else {
                        XENSTORE_ERROR_PROTO
                    };
                    assert_eq!(
                        self.get(Field::Error),
                        want,
                        "{e:?} published the wrong code"
                    );
                }
                match e {
                    RingError::BadIndex => self.stats.bad_index += 1,
                    RingError::Protocol => self.stats.protocol += 1,
                    _ => {}
                }
                self.after_error(end, e);
            }
        }
    }

    /// Whether `end` honours the page's `error` field (the client only when the server
    /// advertises it).
    fn uses_field(&self, end: End) -> bool {
        end == End::Server || self.get(Field::ServerFeatures) & XENSTORE_SERVER_FEATURE_ERROR != 0
    }

    /// Whether `end` has not failed since its last reset.
    fn fresh(&self, end: End) -> bool {
        let side = match end {
            End::Server => &self.s,
            End::Client => &self.c,
        };
        side.seen.iter().all(|e| !e.is_fatal())
    }

    /// Whether `end` has no reason to refuse reading or writing (no earlier failure, no error
    /// code it honours); only then are "must have noticed" checks meaningful.
    fn may_read(&self, end: End) -> bool {
        self.fresh(end) && !(self.uses_field(end) && self.get(Field::Error) != XENSTORE_ERROR_NONE)
    }

    fn check_message(m: &Message, consumed: &[u8], end: End) {
        assert!(m.payload.len() <= PAYLOAD_MAX);
        assert_eq!(m.header.len as usize, m.payload.len());
        assert_eq!(
            m.to_bytes(),
            consumed,
            "{end:?} returned other bytes than it consumed"
        );
    }

    fn write(&mut self, end: End, req_id: u32, payload: &[u8]) {
        let hdr = Header {
            ty: 2,
            req_id,
            tx_id: 0,
            len: 0,
        };
        let ready = match end {
            End::Server => self.server_ready_model(),
            End::Client => self.client_ready_model(),
        };
        let tx = match end {
            End::Server => Ring::Rsp,
            End::Client => Ring::Req,
        };
        let before = self.snapshot(tx);
        let pending_before = self.side(end).write.pending();
        let result = match end {
            End::Server => self.server.write_message(&hdr, payload),
            End::Client => self.client.write_message(&hdr, payload),
        };
        let mut m = Header {
            len: payload.len() as u32,
            ..hdr
        }
        .to_bytes()
        .to_vec();
        m.extend_from_slice(payload);
        // Whether the message was queued shows in the end's pending count: a refused message
        // (too long, or the ring had failed before) is not; one whose flush failed is.
        let put = self.get(tx.prod()).wrapping_sub(before.0) as usize;
        let pending = match end {
            End::Server => self.server.pending(),
            End::Client => self.client.pending(),
        };
        if pending + put == pending_before + m.len() {
            assert!(
                payload.len() <= PAYLOAD_MAX,
                "{end:?} queued an over-long message"
            );
            assert!(!matches!(result, Err(RingError::TooLong(_))));
            self.side(end).write.queue.push_back(m);
        } else {
            assert_eq!(
                pending + put,
                pending_before,
                "{end:?} pending count is off"
            );
            assert!(
                result.is_err(),
                "{end:?} dropped a message and reported success"
            );
        }
        if let Err(RingError::TooLong(n)) = result {
            assert_eq!(n, payload.len());
            assert!(payload.len() > PAYLOAD_MAX);
            assert_eq!(put, 0);
            return;
        }
        self.finish_write(end, tx, before, ready, result);
    }

    fn flush(&mut self, end: End) {
        let ready = match end {
            End::Server => self.server_ready_model(),
            End::Client => self.client_ready_model(),
        };
        let tx = match end {
            End::Server => Ring::Rsp,
            End::Client => Ring::Req,
        };
        let before = self.snapshot(tx);
        let result = match end {
            End::Server => self.server.flush(),
            End::Client => self.client.flush(),
        };
        self.finish_write(end, tx, before, ready, result);
    }

    fn snapshot(&self, tx: Ring) -> (u32, u32, u32) {
        (
            self.get(tx.prod()),
            self.get(tx.cons()),
            self.get(Field::Error),
        )
    }

    fn finish_write(
        &mut self,
        end: End,
        tx: Ring,
        before: (u32, u32, u32),
        ready: bool,
        result: Result<xenstore::ring::WriteStatus, RingError>,
    ) {
        let (prod, cons, err_before) = before;
        let used = prod.wrapping_sub(cons);
        let honoured_err = self.uses_field(end) && err_before != XENSTORE_ERROR_NONE;
        let fresh = self.fresh(end);
        match result {
            Ok(st) => {
                let put = self.get(tx.prod()).wrapping_sub(prod);
                assert_eq!(
                    st.written as u32, put,
                    "{end:?} reported {} bytes written, moved prod by {put}",
                    st.written
                );
                if put > 0 {
                    assert!(ready, "{end:?} wrote while a reset was pending");
                    assert!(used <= RING_SIZE, "{end:?} wrote through bad indexes");
                    assert!(
                        used + put <= RING_SIZE,
                        "{end:?} overwrote unconsumed bytes"
                    );
                    assert!(!honoured_err, "{end:?} ignored the error field");
                    assert!(fresh, "{end:?} wrote after failing");
                }
                self.check_produced(end, tx, (prod, cons, err_before), put);
                assert_eq!(
                    st.pending,
                    self.side(end).write.pending(),
                    "{end:?} pending count"
                );
                if ready && used > RING_SIZE && st.pending > 0 && self.may_read(end) {
                    panic!("{end:?} accepted bad indexes on write (prod {prod}, cons {cons})");
                }
            }
            Err(e) => {
                assert_eq!(self.get(tx.prod()), prod, "{end:?} moved prod and failed");
                let because = e == RingError::BadIndex && used > RING_SIZE;
                assert!(
                    because || self.may_report(end, e),
                    "{end:?} reported {e:?} for no reason on write"
                );
                if because && fresh && err_before == XENSTORE_ERROR_NONE {
                    assert_eq!(self.get(Field::Error), XENSTORE_ERROR_RINGIDX);
                }
                self.after_error(end, e);
            }
        }
    }

    /// The bytes just produced are the next ones of the queued messages.
    fn check_produced(&mut self, end: End, tx: Ring, before: (u32, u32, u32), put: u32) {
        let got = self.peek(tx, before.0, put as usize);
        let want = self.side(end).write.take(put as usize);
        assert_eq!(got, want, "{end:?} produced other bytes than queued");
    }
}
