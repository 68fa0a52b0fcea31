//! Tests of both ends together: streaming, wrap-around, concurrency, corruption, reconnection
//! and the single-thread pump.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pump::Handler;
use super::*;
use crate::wire::{
    xenstore_domain_interface, MsgType, XENSTORE_CONNECTED, XENSTORE_ERROR_COMM,
    XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX, XENSTORE_RECONNECT,
    XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
};

/// Sends one request from `client` and serves it in this thread; returns every message the
/// guest received meanwhile (the reply, and any watch events).
fn call_inline<H: Handler + ?Sized>(
    client: &mut ClientRing,
    server: &mut ServerRing,
    handler: &mut H,
    header: &Header,
    payload: &[u8],
) -> Result<Vec<Message>, RingError> {
    client.write_message(header, payload)?;
    let mut received = Vec::new();
    pump(client, server, handler, &mut received)?;
    Ok(received)
}

/// A latched notification between two threads, as an event channel's pending bit: `ring`
/// sets it and wakes the waiter, `wait` consumes it.
#[derive(Default)]
struct Doorbell {
    rung: parking_lot::Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.rung.lock() = true;
        self.cv.notify_all();
    }

    /// Returns false if `deadline` passed without a notification.
    fn wait(&self, deadline: Instant) -> bool {
        let mut rung = self.rung.lock();
        while !*rung {
            if self.cv.wait_until(&mut rung, deadline).timed_out() && !*rung {
                return false;
            }
        }
        *rung = false;
        true
    }
}

/// A tiny deterministic generator (xorshift64), so randomized tests replay exactly.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The payload of request `id`: its length and bytes follow from the id alone, so the
/// receiver can check it.
fn request_payload(id: u32) -> Vec<u8> {
    let mut r = XorShift::new(u64::from(id) * 2 + 1);
    let len = r.below(PAYLOAD_MAX as u64 + 1) as usize;
    r.bytes(len)
}

fn reply_payload(id: u32) -> Vec<u8> {
    let mut r = XorShift::new(u64::from(id) * 2 + 2);
    let len = r.below(PAYLOAD_MAX as u64 + 1) as usize;
    r.bytes(len)
}

/// A deadline `secs` from now, stretched under Miri, which runs far slower.
fn deadline_in(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(if cfg!(miri) { secs * 60 } else { secs })
}

fn hdr(ty: MsgType, req_id: u32) -> Header {
    Header::new(ty, req_id, 0, 0)
}

/// A page with both ends attached; each end's notifications are counted.
struct Pair {
    page: Arc<RingPage>,
    client: ClientRing,
    server: ServerRing,
    to_server: Arc<AtomicUsize>,
    to_client: Arc<AtomicUsize>,
}

fn pair_on(page: Arc<RingPage>) -> Pair {
    let to_server = Arc::new(AtomicUsize::new(0));
    let to_client = Arc::new(AtomicUsize::new(0));
    let server = {
        let n = to_client.clone();
        ServerRing::new(page.clone(), move || {
            n.fetch_add(1, SeqCst);
        })
    };
    let client = {
        let n = to_server.clone();
        ClientRing::new(page.clone(), move || {
            n.fetch_add(1, SeqCst);
        })
    };
    Pair {
        page,
        client,
        server,
        to_server,
        to_client,
    }
}

fn pair() -> Pair {
    pair_on(Arc::new(RingPage::new()))
}

fn set_all_indexes(page: &RingPage, v: u32) {
    for f in [
        Field::ReqCons,
        Field::ReqProd,
        Field::RspCons,
        Field::RspProd,
    ] {
        page.store(f, v, SeqCst);
    }
}

/// Puts raw bytes into `ring` as a misbehaving peer would.
fn inject(page: &RingPage, ring: Ring, bytes: &[u8]) {
    let prod = page.load(ring.prod(), SeqCst);
    page.write_data(ring, prod, bytes);
    page.store(ring.prod(), prod.wrapping_add(bytes.len() as u32), SeqCst);
}

#[test]
fn one_request_and_reply() {
    let mut p = pair();
    let st = p
        .client
        .write_message(&hdr(MsgType::XS_READ, 7), b"/local/domain/0/name\0")
        .unwrap();
    assert!(st.is_complete());
    assert_eq!(st.written, 16 + 21);
    assert!(p.to_server.load(SeqCst) >= 1, "publishing must notify");
    let req = p.server.try_read_message().unwrap().expect("whole request");
    assert_eq!(req.header.ty, MsgType::XS_READ as u32);
    assert_eq!(req.header.req_id, 7);
    assert_eq!(req.header.len, 21);
    assert_eq!(req.payload, b"/local/domain/0/name\0");
    assert_eq!(p.server.try_read_message().unwrap(), None);
    p.server
        .write_message(&hdr(MsgType::XS_READ, 7), b"Domain-0")
        .unwrap();
    let rep = p.client.try_read_message().unwrap().unwrap();
    assert_eq!((rep.header.req_id, &rep.payload[..]), (7, &b"Domain-0"[..]));
    assert!(p.to_client.load(SeqCst) >= 1);
    assert_eq!(
        p.page.load(Field::ReqCons, SeqCst),
        p.page.load(Field::ReqProd, SeqCst)
    );
    assert_eq!(
        p.page.load(Field::RspCons, SeqCst),
        p.page.load(Field::RspProd, SeqCst)
    );
}

#[test]
fn server_advertises_reconnection_and_error() {
    let p = pair();
    let f = p.page.load(Field::ServerFeatures, SeqCst);
    assert_eq!(
        f & XENSTORE_SERVER_FEATURE_RECONNECTION,
        XENSTORE_SERVER_FEATURE_RECONNECTION
    );
    assert_eq!(
        f & XENSTORE_SERVER_FEATURE_ERROR,
        XENSTORE_SERVER_FEATURE_ERROR
    );
    assert_eq!(p.client.server_features(), f);
}

#[test]
fn messages_wrap_around_the_ring_end() {
    // Start a few bytes before the end of the ring, and just before the 2^32 wrap of the
    // free-running indexes: guests must not assume the indexes start at zero.
    for start in [RING_SIZE - 5, 3 * RING_SIZE - 17, u32::MAX - 9] {
        let page = Arc::new(RingPage::new());
        set_all_indexes(&page, start);
        let mut p = pair_on(page);
        for id in 0..40u32 {
            let body: Vec<u8> = (0..(id * 37 % 900) as usize)
                .map(|i| (i as u32 ^ id) as u8)
                .collect();
            p.client
                .write_message(&hdr(MsgType::XS_WRITE, id), &body)
                .unwrap();
            let m = p.server.try_read_message().unwrap().unwrap();
            assert_eq!((m.header.req_id, &m.payload), (id, &body));
            p.server
                .write_message(&hdr(MsgType::XS_WRITE, id), &body[..body.len() / 2])
                .unwrap();
            let r = p.client.try_read_message().unwrap().unwrap();
            assert_eq!(r.payload, &body[..body.len() / 2]);
        }
        assert_ne!(
            p.page.load(Field::ReqProd, SeqCst) / RING_SIZE,
            start / RING_SIZE
        );
    }
}

#[test]
fn header_split_across_the_ring_end_and_across_publications() {
    let page = Arc::new(RingPage::new());
    set_all_indexes(&page, RING_SIZE - 7);
    let mut p = pair_on(page);
    let msg = Message::new(hdr(MsgType::XS_DIRECTORY, 3), b"/a/b\0".to_vec()).to_bytes();
    // Published a byte at a time: the reader must keep what it has and wait for the rest.
    for (i, b) in msg.iter().enumerate() {
        inject(&p.page, Ring::Req, &[*b]);
        let got = p.server.try_read_message().unwrap();
        assert_eq!(got.is_some(), i == msg.len() - 1, "byte {i}");
        if let Some(m) = got {
            assert_eq!(m.payload, b"/a/b\0");
            assert_eq!(m.header.req_id, 3);
        }
    }
}

#[test]
fn zero_length_messages() {
    let mut p = pair();
    for id in 0..100 {
        p.client
            .write_message(&hdr(MsgType::XS_TRANSACTION_START, id), &[])
            .unwrap();
    }
    for id in 0..64 {
        // 64 headers of 16 bytes fill the 1024-byte ring exactly.
        let m = p.server.try_read_message().unwrap().unwrap();
        assert_eq!((m.header.req_id, m.payload.len()), (id, 0));
    }
    assert_eq!(p.server.try_read_message().unwrap(), None);
    // The remaining 36 follow once room was made.
    p.client.flush().unwrap();
    for id in 64..100 {
        assert_eq!(
            p.server.try_read_message().unwrap().unwrap().header.req_id,
            id
        );
    }
    assert_eq!(p.client.pending(), 0);
}

#[test]
fn full_payload_streams_through_a_smaller_ring_both_ways() {
    let mut p = pair();
    let big: Vec<u8> = (0..PAYLOAD_MAX).map(|i| (i * 7 + 3) as u8).collect();
    let st = p
        .client
        .write_message(&hdr(MsgType::XS_WRITE, 1), &big)
        .unwrap();
    assert_eq!(st.written, RING_SIZE as usize, "only one ring's worth fits");
    assert_eq!(st.pending, 16 + PAYLOAD_MAX - RING_SIZE as usize);
    let mut got = None;
    let mut rounds = 0;
    while got.is_none() {
        got = p.server.try_read_message().unwrap();
        p.client.flush().unwrap();
        rounds += 1;
        assert!(rounds < 20);
    }
    assert!(rounds >= 5, "4112 bytes need at least five ring-fulls");
    assert_eq!(got.unwrap().payload, big);

    let rev: Vec<u8> = big.iter().rev().copied().collect();
    p.server
        .write_message(&hdr(MsgType::XS_READ, 1), &rev)
        .unwrap();
    let mut got = None;
    while got.is_none() {
        got = p.client.try_read_message().unwrap();
        p.server.flush().unwrap();
    }
    assert_eq!(got.unwrap().payload, rev);
    assert_eq!(p.server.pending(), 0);
}

#[test]
fn oversized_payload_is_refused_before_it_reaches_the_ring() {
    let mut p = pair();
    let too_big = vec![0u8; PAYLOAD_MAX + 1];
    assert_eq!(
        p.client.write_message(&hdr(MsgType::XS_WRITE, 1), &too_big),
        Err(RingError::TooLong(PAYLOAD_MAX + 1))
    );
    let mut bad = Header::new(MsgType::XS_WRITE, 1, 0, 5).to_bytes().to_vec();
    bad.extend_from_slice(b"abc");
    assert_eq!(p.server.write_encoded(&bad), Err(RingError::Malformed));
    assert_eq!(p.page.load(Field::ReqProd, SeqCst), 0);
    assert_eq!(p.page.load(Field::RspProd, SeqCst), 0);
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_NONE);
    // The ring is still fine.
    p.client
        .write_message(&hdr(MsgType::XS_WRITE, 2), b"ok")
        .unwrap();
    assert_eq!(p.server.try_read_message().unwrap().unwrap().payload, b"ok");
    let good = Message::new(hdr(MsgType::XS_WRITE, 2), b"OK".to_vec()).to_bytes();
    assert!(p.server.write_encoded(&good).unwrap().is_complete());
    assert_eq!(p.client.try_read_message().unwrap().unwrap().payload, b"OK");
}

#[test]
fn header_announcing_too_long_a_payload_is_a_protocol_error() {
    let mut p = pair();
    let h = Header {
        ty: MsgType::XS_WRITE as u32,
        req_id: 1,
        tx_id: 0,
        len: PAYLOAD_MAX as u32 + 1,
    };
    inject(&p.page, Ring::Req, &h.to_bytes());
    let before = p.to_client.load(SeqCst);
    assert_eq!(p.server.try_read_message(), Err(RingError::Protocol));
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_PROTO);
    assert!(p.to_client.load(SeqCst) > before, "the guest is told");
    // Both ends now report it and leave the ring alone.
    let req_prod = p.page.load(Field::ReqProd, SeqCst);
    assert_eq!(
        p.client.write_message(&hdr(MsgType::XS_READ, 2), b"x"),
        Err(RingError::Protocol)
    );
    assert_eq!(p.client.try_read_message(), Err(RingError::Protocol));
    assert_eq!(
        p.server.write_message(&hdr(MsgType::XS_READ, 2), b"x"),
        Err(RingError::Protocol)
    );
    assert_eq!(p.page.load(Field::ReqProd, SeqCst), req_prod);
    assert_eq!(p.page.load(Field::RspProd, SeqCst), 0);
    assert_eq!(p.client.error(), Some(RingError::Protocol));
    assert_eq!(p.server.error(), Some(RingError::Protocol));
}

#[test]
fn server_sending_too_long_a_payload_fails_the_guest_end() {
    let mut p = pair();
    let h = Header {
        ty: MsgType::XS_WATCH_EVENT as u32,
        req_id: 0,
        tx_id: 0,
        len: u32::MAX,
    };
    inject(&p.page, Ring::Rsp, &h.to_bytes());
    assert_eq!(p.client.try_read_message(), Err(RingError::Protocol));
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_PROTO);
    assert_eq!(p.server.try_read_message(), Err(RingError::Protocol));
}

#[test]
fn producer_too_far_ahead_is_a_ring_index_error() {
    let mut p = pair();
    p.page.store(Field::ReqProd, RING_SIZE + 1, SeqCst);
    assert_eq!(p.server.try_read_message(), Err(RingError::BadIndex));
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_RINGIDX);
    assert_eq!(p.page.load(Field::ReqCons, SeqCst), 0, "nothing consumed");
    assert_eq!(p.client.try_read_message(), Err(RingError::BadIndex));
    assert_eq!(
        p.client.write_message(&hdr(MsgType::XS_READ, 1), b"x"),
        Err(RingError::BadIndex)
    );
    assert_eq!(
        p.page.load(Field::ReqProd, SeqCst),
        RING_SIZE + 1,
        "nothing produced"
    );
}

#[test]
fn a_full_ring_is_not_an_error() {
    let mut p = pair();
    set_all_indexes(&p.page, 40);
    p.page.store(Field::ReqProd, 40 + RING_SIZE, SeqCst);
    // Exactly RING_SIZE bytes outstanding is legal: the producer waits, nothing fails.
    let st = p
        .client
        .write_message(&hdr(MsgType::XS_READ, 1), b"x")
        .unwrap();
    assert_eq!((st.written, st.pending), (0, 17));
    assert_eq!(p.client.error(), None);
}

#[test]
fn consumer_ahead_of_producer_is_a_ring_index_error() {
    // As seen by the producer (guest writing req whose cons ran past prod) ...
    let mut p = pair();
    p.page.store(Field::ReqCons, 10, SeqCst);
    p.page.store(Field::ReqProd, 4, SeqCst);
    assert_eq!(
        p.client.write_message(&hdr(MsgType::XS_READ, 1), b"x"),
        Err(RingError::BadIndex)
    );
    assert_eq!(p.page.load(Field::ReqProd, SeqCst), 4);
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_RINGIDX);
    assert_eq!(p.server.try_read_message(), Err(RingError::BadIndex));

    // ... and by the consumer (guest reading rsp).
    let mut p = pair();
    p.page.store(Field::RspCons, 1, SeqCst);
    assert_eq!(p.client.try_read_message(), Err(RingError::BadIndex));
    assert_eq!(p.page.load(Field::RspCons, SeqCst), 1);
    assert_eq!(
        p.server.write_message(&hdr(MsgType::XS_READ, 1), b"x"),
        Err(RingError::BadIndex)
    );

    // Server producing rsp with a consumer ahead.
    let mut p = pair();
    p.page.store(Field::RspCons, 5000, SeqCst);
    p.page.store(Field::RspProd, 4000, SeqCst);
    assert_eq!(
        p.server.write_message(&hdr(MsgType::XS_READ, 1), b"x"),
        Err(RingError::BadIndex)
    );
    assert_eq!(p.page.load(Field::RspProd, SeqCst), 4000);
}

#[test]
fn an_error_set_by_the_server_reaches_the_guest() {
    let mut p = pair();
    p.server.fail(XENSTORE_ERROR_COMM);
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_COMM);
    assert_eq!(
        p.client.try_read_message(),
        Err(RingError::Failed(XENSTORE_ERROR_COMM))
    );
    assert_eq!(
        p.client.error(),
        Some(RingError::Failed(XENSTORE_ERROR_COMM))
    );
    assert!(RingError::Failed(XENSTORE_ERROR_COMM).is_fatal());
    assert_eq!(RingError::BadIndex.errno(), libc::EIO);
}

#[test]
fn first_error_wins() {
    let mut p = pair();
    p.page.store(Field::ReqProd, 9999, SeqCst);
    assert_eq!(p.server.try_read_message(), Err(RingError::BadIndex));
    p.page.store(Field::ReqProd, 0, SeqCst);
    inject(
        &p.page,
        Ring::Rsp,
        &Header {
            len: 99999,
            ..hdr(MsgType::XS_READ, 0)
        }
        .to_bytes(),
    );
    // The guest's end already reports the first error without reading further.
    assert_eq!(p.client.try_read_message(), Err(RingError::BadIndex));
    assert_eq!(p.page.load(Field::Error, SeqCst), XENSTORE_ERROR_RINGIDX);
}

/// The page is placed inside a larger buffer full of canaries; random, mostly corrupt index
/// values must never make either end touch anything outside the two rings.
#[test]
fn corrupt_indexes_never_reach_outside_the_page() {
    const WORDS: usize = 3 * PAGE_SIZE / 4;
    const CANARY: u32 = 0xA5C3_5A3C;
    let mut buf = vec![CANARY; WORDS];
    let iface_words = core::mem::size_of::<xenstore_domain_interface>() / 4;
    let start = PAGE_SIZE / 4;
    buf[start..start + iface_words].fill(0);
    let mut rng = XorShift::new(0x5eed);
    let rounds = if cfg!(miri) { 24 } else { 400 };
    for round in 0..rounds {
        // Re-derived each round: the checks below borrow `buf`.
        let iface = buf
            .as_mut_ptr()
            .wrapping_add(start)
            .cast::<xenstore_domain_interface>();
        // SAFETY: `iface` is 4-byte aligned and lies inside `buf`, which outlives `page` and is
        // not accessed otherwise until `page` is dropped.
        let page = unsafe { RingPage::from_raw(iface) }.expect("aligned");
        let page = Arc::new(page);
        page.store(Field::Error, XENSTORE_ERROR_NONE, SeqCst);
        let pick = |rng: &mut XorShift| match rng.below(4) {
            0 => rng.next() as u32,
            1 => u32::MAX - rng.below(2048) as u32,
            _ => rng.below(4096) as u32,
        };
        let (c1, p1, c2, p2) = (
            pick(&mut rng),
            pick(&mut rng),
            pick(&mut rng),
            pick(&mut rng),
        );
        page.store(Field::ReqCons, c1, SeqCst);
        page.store(Field::ReqProd, p1, SeqCst);
        page.store(Field::RspCons, c2, SeqCst);
        page.store(Field::RspProd, p2, SeqCst);
        let mut p = pair_on(page.clone());
        let len = rng.below(PAYLOAD_MAX as u64) as usize;
        let payload = rng.bytes(len);
        let r1 = match round % 4 {
            0 => p
                .client
                .write_message(&hdr(MsgType::XS_WRITE, 1), &payload)
                .map(|_| ()),
            1 => p.client.try_read_message().map(|_| ()),
            2 => p
                .server
                .write_message(&hdr(MsgType::XS_WRITE, 1), &payload)
                .map(|_| ()),
            _ => p.server.try_read_message().map(|_| ()),
        };
        let (cons, prod) = match round % 4 {
            0 | 3 => (c1, p1),
            _ => (c2, p2),
        };
        if prod.wrapping_sub(cons) > RING_SIZE {
            assert_eq!(
                r1,
                Err(RingError::BadIndex),
                "round {round}: cons {cons} prod {prod}"
            );
            assert_eq!(page.load(Field::Error, SeqCst), XENSTORE_ERROR_RINGIDX);
        } else if let Err(e) = r1 {
            // Garbage in a ring may legitimately decode as an over-long header.
            assert_eq!(e, RingError::Protocol, "round {round}");
        }
        drop(p);
        drop(page);
        assert!(
            buf[..start].iter().all(|&w| w == CANARY),
            "round {round}: below the page"
        );
        assert!(
            buf[start + iface_words..].iter().all(|&w| w == CANARY),
            "round {round}: above"
        );
    }
}

#[test]
fn reconnection_resets_the_ring() {
    let mut p = pair();
    set_all_indexes(&p.page, 500);
    // Leave a half-sent request and a half-read reply behind.
    p.client
        .write_message(&hdr(MsgType::XS_WRITE, 1), &[1u8; 3000])
        .unwrap();
    assert!(p.client.pending() > 0);
    p.server
        .write_message(&hdr(MsgType::XS_READ, 9), &[2u8; 100])
        .unwrap();
    p.page.store(Field::Error, XENSTORE_ERROR_COMM, SeqCst);

    p.client.request_reconnect().unwrap();
    assert_eq!(p.page.load(Field::Connection, SeqCst), XENSTORE_RECONNECT);
    assert!(!p.client.is_connected());
    assert_eq!(p.client.pending(), 0, "queued bytes are dropped");
    // Until the server has reset, the guest leaves the ring alone; writes are queued.
    let st = p
        .client
        .write_message(&hdr(MsgType::XS_READ, 2), b"after\0")
        .unwrap();
    assert_eq!(st.written, 0);
    assert_eq!(p.client.try_read_message(), Ok(None));
    // So does the server, except for the reset itself.
    assert!(p.server.reconnect_pending());
    assert_eq!(p.server.try_read_message(), Ok(None));

    let notified = p.to_client.load(SeqCst);
    assert!(p.server.check_reconnect());
    assert!(!p.server.check_reconnect(), "only once");
    assert!(p.to_client.load(SeqCst) > notified);
    for f in [
        Field::ReqCons,
        Field::ReqProd,
        Field::RspCons,
        Field::RspProd,
        Field::Error,
    ] {
        assert_eq!(p.page.load(f, SeqCst), 0, "{f:?}");
    }
    assert_eq!(p.page.load(Field::Connection, SeqCst), XENSTORE_CONNECTED);

    assert!(p.client.is_connected());
    p.client.flush().unwrap();
    let m = p.server.try_read_message().unwrap().unwrap();
    assert_eq!((m.header.req_id, &m.payload[..]), (2, &b"after\0"[..]));
    p.server
        .write_message(&hdr(MsgType::XS_READ, 2), b"v")
        .unwrap();
    assert_eq!(p.client.try_read_message().unwrap().unwrap().payload, b"v");
}

#[test]
fn reconnection_recovers_from_a_ring_error() {
    let mut p = pair();
    p.page.store(Field::ReqProd, 77_777, SeqCst);
    assert_eq!(p.server.try_read_message(), Err(RingError::BadIndex));
    assert_eq!(p.client.try_read_message(), Err(RingError::BadIndex));
    p.client.request_reconnect().unwrap();
    assert!(p.server.check_reconnect());
    assert_eq!(p.server.error(), None);
    p.client
        .write_message(&hdr(MsgType::XS_READ, 3), b"k")
        .unwrap();
    assert_eq!(
        p.server.try_read_message().unwrap().unwrap().header.req_id,
        3
    );
    assert_eq!(p.client.error(), None);
}

#[test]
fn reconnection_needs_the_feature() {
    let page = Arc::new(RingPage::new());
    let mut c = ClientRing::new(page.clone(), || {});
    assert_eq!(c.request_reconnect(), Err(RingError::NoReconnect));
    // Without the features, `connection` and `error` mean nothing to the guest.
    page.store(Field::Connection, XENSTORE_RECONNECT, SeqCst);
    page.store(Field::Error, XENSTORE_ERROR_COMM, SeqCst);
    assert!(c.is_connected());
    assert!(c
        .write_message(&hdr(MsgType::XS_READ, 1), b"x")
        .unwrap()
        .is_complete());
}

#[test]
fn guest_finding_a_reset_in_progress_waits_for_it() {
    let mut p = pair();
    set_all_indexes(&p.page, 100);
    // Someone else (e.g. the toolstack) asked for a reset while our message was half out.
    p.client
        .write_message(&hdr(MsgType::XS_WRITE, 1), &[9u8; 2000])
        .unwrap();
    p.page.store(Field::Connection, XENSTORE_RECONNECT, SeqCst);
    assert_eq!(p.client.flush().unwrap().written, 0);
    assert!(p.server.check_reconnect());
    // The half-sent message goes out again whole, so the server sees a packet boundary.
    let mut got = None;
    while got.is_none() {
        p.client.flush().unwrap();
        got = p.server.try_read_message().unwrap();
    }
    let m = got.unwrap();
    assert_eq!((m.header.req_id, m.payload.len()), (1, 2000));
    assert!(m.payload.iter().all(|&b| b == 9));
}

/// A server handler for the pump tests: replies with `reply_payload(req_id)` after checking
/// the request, and sends a watch event after every third request.
fn echo_handler(
    served: &mut u32,
) -> impl FnMut(Message, &mut ServerRing) -> Result<(), RingError> + '_ {
    move |req, server| {
        assert_eq!(req.payload, request_payload(req.header.req_id));
        *served += 1;
        server.write_message(&req.header, &reply_payload(req.header.req_id))?;
        if req.header.req_id % 3 == 0 {
            server.write_message(&hdr(MsgType::XS_WATCH_EVENT, 0), b"/path\0token\0")?;
        }
        Ok(())
    }
}

#[test]
fn pump_serves_a_request_in_the_callers_thread() {
    // Find a request id whose request and reply are both larger than the ring.
    let id = (0..)
        .find(|&i| request_payload(i).len() > 3000 && reply_payload(i).len() > 3000)
        .unwrap();
    let mut p = pair();
    let mut served = 0;
    let mut handler = echo_handler(&mut served);
    let got = call_inline(
        &mut p.client,
        &mut p.server,
        &mut handler,
        &hdr(MsgType::XS_WRITE, id),
        &request_payload(id),
    )
    .unwrap();
    drop(handler);
    assert_eq!(served, 1);
    assert_eq!(got[0].header.req_id, id);
    assert_eq!(got[0].payload, reply_payload(id));
    assert_eq!(got.len(), if id % 3 == 0 { 2 } else { 1 });
    assert_eq!(p.client.pending(), 0);
    assert_eq!(p.server.pending(), 0);

    // The full 4096-byte payload, both ways, through the same pump.
    let big = vec![0x5a; PAYLOAD_MAX];
    let mut h = |req: Message, s: &mut ServerRing| {
        assert_eq!(req.payload.len(), PAYLOAD_MAX);
        s.write_message(&req.header, &req.payload).map(|_| ())
    };
    let got = call_inline(
        &mut p.client,
        &mut p.server,
        &mut h,
        &hdr(MsgType::XS_WRITE, 5),
        &big,
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, big);
}

#[test]
fn pump_reports_resets_to_the_handler() {
    struct H {
        resets: u32,
    }
    impl Handler for H {
        fn request(&mut self, req: Message, s: &mut ServerRing) -> Result<(), RingError> {
            s.write_message(&req.header, b"ok").map(|_| ())
        }
        fn reconnected(&mut self) {
            self.resets += 1;
        }
    }
    let mut p = pair();
    let mut h = H { resets: 0 };
    p.client.request_reconnect().unwrap();
    let got = call_inline(
        &mut p.client,
        &mut p.server,
        &mut h,
        &hdr(MsgType::XS_READ, 4),
        b"/\0",
    )
    .unwrap();
    assert_eq!(h.resets, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"ok");
}

#[test]
fn pump_propagates_a_protocol_error() {
    let mut p = pair();
    inject(
        &p.page,
        Ring::Req,
        &Header {
            len: 5000,
            ..hdr(MsgType::XS_WRITE, 1)
        }
        .to_bytes(),
    );
    let mut h =
        |_: Message, _: &mut ServerRing| -> Result<(), RingError> { panic!("not a request") };
    let mut out = Vec::new();
    assert_eq!(
        pump(&mut p.client, &mut p.server, &mut h, &mut out),
        Err(RingError::Protocol)
    );
    assert_eq!(p.client.error(), Some(RingError::Protocol));
}

/// One thread, every step chosen by a seeded generator: any interleaving of producer and
/// consumer steps, on both rings, must deliver every message intact and in order.
#[test]
fn random_interleavings_single_thread_deterministic() {
    let seeds = if cfg!(miri) { 1 } else { 8 };
    for seed in 1..=seeds {
        let mut rng = XorShift::new(seed);
        let page = Arc::new(RingPage::new());
        set_all_indexes(&page, rng.next() as u32);
        let mut p = pair_on(page);
        let total = if cfg!(miri) { 20 } else { 300u32 };
        let (mut sent, mut served, mut received) = (0u32, 0u32, 0u32);
        let mut steps = 0;
        while received < total {
            steps += 1;
            assert!(steps < 200_000, "seed {seed}: stuck");
            match rng.below(5) {
                0 if sent < total => {
                    p.client
                        .write_message(&hdr(MsgType::XS_WRITE, sent), &request_payload(sent))
                        .unwrap();
                    sent += 1;
                }
                1 => {
                    p.client.flush().unwrap();
                }
                2 => {
                    if let Some(m) = p.server.try_read_message().unwrap() {
                        assert_eq!(m.header.req_id, served, "seed {seed}");
                        assert_eq!(m.payload, request_payload(served), "seed {seed}");
                        p.server
                            .write_message(&m.header, &reply_payload(served))
                            .unwrap();
                        served += 1;
                    }
                }
                3 => {
                    p.server.flush().unwrap();
                }
                _ => {
                    if let Some(m) = p.client.try_read_message().unwrap() {
                        assert_eq!(m.header.req_id, received, "seed {seed}");
                        assert_eq!(m.payload, reply_payload(received), "seed {seed}");
                        received += 1;
                    }
                }
            }
        }
        assert_eq!((sent, served), (total, total));
    }
}

/// Client and server in two threads, a window of requests in flight, thousands of messages
/// of random sizes (0..=4096) each way, every byte checked. Sizes and contents are seeded; the
/// indexes start just below the 2^32 wrap.
#[test]
fn two_threads_exchange_thousands_of_random_messages() {
    // Miri interprets slowly (and checks for data races); fewer messages suffice there.
    const TOTAL: u32 = if cfg!(miri) { 12 } else { 3000 };
    const WINDOW: u32 = 8;
    let deadline = deadline_in(120);
    let page = Arc::new(RingPage::new());
    set_all_indexes(&page, u32::MAX - 3000);
    let client_bell = Arc::new(Doorbell::default());
    let server_bell = Arc::new(Doorbell::default());
    let mut server = {
        let b = client_bell.clone();
        ServerRing::new(page.clone(), move || b.ring())
    };
    let mut client = {
        let b = server_bell.clone();
        ClientRing::new(page.clone(), move || b.ring())
    };

    let server_thread = std::thread::spawn(move || {
        let mut served = 0u32;
        while served < TOTAL || server.pending() > 0 {
            let mut progressed = server.flush().unwrap().written > 0;
            while let Some(m) = server.try_read_message().unwrap() {
                assert_eq!(m.header.req_id, served);
                assert_eq!(m.header.len as usize, m.payload.len());
                assert_eq!(m.payload, request_payload(served));
                server
                    .write_message(&m.header, &reply_payload(served))
                    .unwrap();
                served += 1;
                progressed = true;
            }
            if !progressed {
                assert!(server_bell.wait(deadline), "server timed out at {served}");
            }
        }
        served
    });

    let (mut sent, mut received) = (0u32, 0u32);
    let mut sizes = 0usize;
    while received < TOTAL {
        while sent < TOTAL && sent - received < WINDOW {
            client
                .write_message(&hdr(MsgType::XS_WRITE, sent), &request_payload(sent))
                .unwrap();
            sent += 1;
        }
        let mut progressed = client.flush().unwrap().written > 0;
        while let Some(m) = client.try_read_message().unwrap() {
            assert_eq!(m.header.req_id, received);
            assert_eq!(m.payload, reply_payload(received));
            sizes += m.payload.len();
            received += 1;
            progressed = true;
        }
        if !progressed {
            assert!(client_bell.wait(deadline), "client timed out at {received}");
        }
    }
    assert_eq!(server_thread.join().unwrap(), TOTAL);
    assert!(
        sizes > TOTAL as usize * 1000,
        "sizes should average about 2 KiB"
    );
    assert!(
        page.load(Field::ReqProd, Relaxed) < 1 << 30,
        "the indexes wrapped past 2^32"
    );
    assert_eq!(page.load(Field::Error, Relaxed), XENSTORE_ERROR_NONE);
}
