//! Wire-level behaviour of the daemon: framing, pipelining, broken clients, disconnects.

mod util;
use util::common;

use std::io::Write;
use std::time::Duration;

use common::*;
use xenstore::wire::{encode, Header, MsgType};

#[test]
fn a_request_split_across_many_writes_is_reassembled() {
    let d = Daemon::start("split");
    let mut c = d.connect();
    let mut msg = encode(MsgType::XS_WRITE, 77, 0, b"/split/node\0some value");
    // Header in three pieces, payload in single bytes, with pauses so they arrive apart.
    let tail = msg.split_off(16);
    for piece in [&msg[..3], &msg[3..11], &msg[11..]] {
        c.sock.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    for b in &tail {
        c.sock.write_all(std::slice::from_ref(b)).unwrap();
    }
    let r = c.recv().unwrap();
    assert_eq!(
        (r.ty, r.req_id, r.payload.as_slice()),
        (MsgType::XS_WRITE as u32, 77, &b"OK\0"[..])
    );
    assert_eq!(c.read("/split/node").unwrap(), b"some value");
}

#[test]
fn many_pipelined_requests_in_one_write_are_answered_in_order() {
    let d = Daemon::start("pipeline");
    let mut c = d.connect();
    let n = 2000u32;
    let mut batch = Vec::new();
    for i in 0..n {
        let payload = format!("/pipe/n{}\0{}", i % 50, i);
        batch.extend(encode(MsgType::XS_WRITE, i * 2 + 1, 0, payload.as_bytes()));
        batch.extend(encode(
            MsgType::XS_READ,
            i * 2 + 2,
            0,
            &z(&format!("/pipe/n{}", i % 50)),
        ));
    }
    c.sock.write_all(&batch).unwrap();
    for i in 0..n {
        let w = c.recv().unwrap();
        assert_eq!((w.req_id, w.payload.as_slice()), (i * 2 + 1, &b"OK\0"[..]));
        let r = c.recv().unwrap();
        assert_eq!(r.req_id, i * 2 + 2);
        // Each read sees the write just before it: requests are handled in order.
        assert_eq!(r.payload, i.to_string().as_bytes());
    }
}

#[test]
fn an_oversized_payload_closes_only_that_connection() {
    let d = Daemon::start("oversize");
    let mut good = d.connect();
    good.write("/keep", b"1");
    let mut bad = d.connect();
    bad.write("/bad", b"2");
    // Claims 4097 bytes: one more than the protocol allows. Closed without waiting for them.
    bad.sock
        .write_all(
            &Header {
                ty: MsgType::XS_WRITE as u32,
                req_id: 1,
                tx_id: 0,
                len: 4097,
            }
            .to_bytes(),
        )
        .unwrap();
    assert!(bad.is_closed(Duration::from_secs(5)));
    // Exactly the maximum is accepted (the reply may be an error about the content, but the
    // connection stays).
    let mut edge = d.connect();
    let mut payload = b"/edge\0".to_vec();
    payload.resize(4096, b'v');
    let r = edge.request(MsgType::XS_WRITE, 0, &payload);
    assert_eq!(r.req_id, 1);
    assert_eq!(edge.read("/keep").unwrap(), b"1");
    assert_eq!(good.read("/keep").unwrap(), b"1");
    assert_eq!(good.read("/bad").unwrap(), b"2");
}

#[test]
fn a_client_disconnecting_mid_transaction_loses_it_and_its_watches() {
    let d = Daemon::start("midtx");
    let mut other = d.connect();
    other.write("/tx/base", b"0");
    other.ok(MsgType::XS_WATCH, 0, &zz(&["/tx", "other"]));
    let first = other.recv().unwrap(); // the watch's initial event
    assert!(first.is(MsgType::XS_WATCH_EVENT));

    let mut quitter = d.connect();
    let t = quitter.ok(MsgType::XS_TRANSACTION_START, 0, b"\0");
    let tx: u32 = std::str::from_utf8(t.strip_suffix(b"\0").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    quitter.ok(MsgType::XS_WRITE, tx, b"/tx/pending\0never");
    quitter.ok(MsgType::XS_WATCH, 0, &zz(&["/tx", "quitter"]));
    drop(quitter);

    // The transaction's write never appears, and nobody saw an event for it.
    let mut evs = Vec::new();
    assert!(other
        .request_ev(MsgType::XS_READ, 0, &z("/tx/pending"), &mut evs)
        .is(MsgType::XS_ERROR));
    let r = other.request_ev(MsgType::XS_WRITE, 0, b"/tx/base\x001", &mut evs);
    assert!(r.is(MsgType::XS_WRITE));
    // Only our own watch fires; events are queued before the reply that caused them.
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].payload, zz(&["/tx/base", "other"]));

    // The daemon serves new clients as before, and the quitter's transaction id is not
    // usable by anyone else.
    let mut late = d.connect();
    assert_eq!(late.read("/tx/base").unwrap(), b"1");
    let r = late.request(MsgType::XS_WRITE, tx, b"/tx/pending\0x");
    assert!(r.is(MsgType::XS_ERROR), "{r:?}");
}

#[test]
fn replies_carry_the_request_ids_and_the_tx_id() {
    let d = Daemon::start("ids");
    let mut c = d.connect();
    c.send(MsgType::XS_READ, 0xdead_beef, 0, &z("/"));
    let r = c.recv().unwrap();
    assert_eq!(r.req_id, 0xdead_beef);
    let t = c.ok(MsgType::XS_TRANSACTION_START, 0, b"\0");
    let tx: u32 = std::str::from_utf8(t.strip_suffix(b"\0").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    c.send(MsgType::XS_WRITE, 5, tx, b"/ids\0v");
    let r = c.recv().unwrap();
    assert_eq!((r.req_id, r.tx_id), (5, tx));
}

#[test]
fn unknown_message_types_get_an_error_not_a_disconnect() {
    let d = Daemon::start("unknown");
    let mut c = d.connect();
    for ty in [20u32, 27, 99, 0xffff] {
        c.sock
            .write_all(
                &Header {
                    ty,
                    req_id: ty,
                    tx_id: 0,
                    len: 2,
                }
                .to_bytes(),
            )
            .unwrap();
        c.sock.write_all(b"x\0").unwrap();
        let r = c.recv().unwrap();
        assert!(r.is(MsgType::XS_ERROR), "type {ty}: {r:?}");
        assert_eq!(r.req_id, ty);
    }
    assert!(c.read("/").is_ok());
}
