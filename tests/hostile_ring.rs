//! Hostile guest kernels against the shared ring page: indexes far ahead, behind or random,
//! headers announcing more than XENSTORE_PAYLOAD_MAX, unknown message types, messages
//! half-written and then silence, `connection` toggled to RECONNECT over and over, requests
//! flooded without reading a reply, random bytes anywhere.
//!
//! Two servers are attacked:
//! - the embedded store's own page of a domain (`Embedded::domain_page`, with
//!   `Embedded::notify_domain` as the event channel kick), where the guest's handles share
//!   the ring: a page that makes no sense is given up (the domain's handles fail, none
//!   hangs) and replaced, while domain 0 and another guest keep being served;
//! - a plain server with one store connection per page (`hostile_support::RingConn`, as the C
//!   daemon serves a domain), so that what a kernel writes reaches the store: unknown types are
//!   answered ENOSYS and the ring goes on, bad indexes and lengths fail the ring with
//!   XENSTORE_ERROR_RINGIDX / XENSTORE_ERROR_PROTO in the page.
//!
//! After every attack the store's invariants are checked. One `PASS hostile/<case>: ...` line
//! per case (`-- --nocapture`).

mod case_runner;
mod hostile_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostile_support::*;
use xenstore::client::Errno;
use xenstore::ring::{Field, RingError, RingPage, RING_SIZE};
use xenstore::store::{Config, Store};
use xenstore::wire::{
    Header, MsgType, HEADER_LEN, XENSTORE_CONNECTED, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT,
};

const ATTACKER: u32 = 1;
const BYSTANDER: u32 = 3;

/// xorshift64*: reproducible pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn load(page: &RingPage, f: Field) -> u32 {
    page.load(f, Ordering::Acquire)
}

fn store(page: &RingPage, f: Field, v: u32) {
    page.store(f, v, Ordering::Release)
}

/// An outcome a guest request may have while its kernel scribbles on the ring: served, or
/// failed because the ring was given up. Anything else (a hang, a panic, another errno) is a
/// failure of the case.
fn ok_or_ring_gone(r: &Result<Vec<u8>, Errno>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => [EIO, EBADF, EINVAL].contains(e),
    }
}

/// The embedded page: one corruption, the kick, then the consequences. Returns a line of
/// details.
fn embedded_attack(name: &str, corrupt: impl Fn(&RingPage)) -> String {
    let host = Host::new(&[ATTACKER, BYSTANDER]);
    let g = host.guest(ATTACKER);
    let other = host.guest(BYSTANDER);
    g.write(0, b"x", b"before").unwrap();
    let page = host.e.domain_page(ATTACKER).unwrap();
    corrupt(&page);
    host.e.notify_domain(ATTACKER).unwrap();
    // The old handle is failed (or fails on its next use), and never hangs.
    let first = g.read(0, b"x");
    assert!(
        first.is_err(),
        "{name}: a handle on a corrupted ring was served: {first:?}"
    );
    assert_eq!(
        g.read(0, b"x"),
        Err(EBADF),
        "{name}: the handle stays failed"
    );
    let fresh = host.e.domain_page(ATTACKER).unwrap();
    assert!(
        !Arc::ptr_eq(&page, &fresh),
        "{name}: the page was not replaced"
    );
    // A new handle (the guest's kernel starting over) works, and its data survived.
    let g2 = host.guest(ATTACKER);
    assert_eq!(g2.read(0, b"x").unwrap(), b"before");
    host.assert_served(&[&g2, &other], name);
    host.assert_intact(name);
    format!(
        "handle failed ({:?}), page replaced, new handle served",
        first.unwrap_err()
    )
}

#[test]
fn embedded_page_bad_indexes_and_headers() {
    case("hostile/ring_embedded_corruptions", || {
        let mut lines = Vec::new();
        #[allow(clippy::type_complexity)]
        let attacks: Vec<(&str, Box<dyn Fn(&RingPage)>)> = vec![
            (
                "req_prod far ahead",
                Box::new(|p| {
                    store(
                        p,
                        Field::ReqProd,
                        load(p, Field::ReqCons).wrapping_add(0x10_0000),
                    )
                }),
            ),
            (
                "req_prod one past the ring",
                Box::new(|p| {
                    store(
                        p,
                        Field::ReqProd,
                        load(p, Field::ReqCons).wrapping_add(RING_SIZE + 1),
                    )
                }),
            ),
            (
                "req_cons ahead of req_prod",
                Box::new(|p| store(p, Field::ReqCons, load(p, Field::ReqProd).wrapping_add(5))),
            ),
            (
                "rsp_cons far ahead",
                Box::new(|p| {
                    store(
                        p,
                        Field::RspCons,
                        load(p, Field::RspProd).wrapping_add(0x7000_0000),
                    )
                }),
            ),
            (
                "rsp_prod behind rsp_cons",
                Box::new(|p| store(p, Field::RspProd, load(p, Field::RspCons).wrapping_sub(3))),
            ),
            (
                "header len 4097",
                Box::new(|p| {
                    guest_send(p, &message(MsgType::XS_READ as u32, 1, 0, 4097, b"x\0"));
                }),
            ),
            (
                "header len u32::MAX",
                Box::new(|p| {
                    guest_send(p, &message(MsgType::XS_WRITE as u32, 1, 0, u32::MAX, b""));
                }),
            ),
            (
                "whole request from no handle",
                Box::new(|p| {
                    guest_send(p, &msg(MsgType::XS_READ, 1, b"x\0"));
                }),
            ),
            (
                "garbage type 999 from no handle",
                Box::new(|p| {
                    guest_send(p, &message(999, 1, 0, 0, b""));
                }),
            ),
            (
                "7 bytes of a header then silence",
                Box::new(|p| {
                    guest_send(p, &msg(MsgType::XS_READ, 1, b"x\0")[..7]);
                }),
            ),
            (
                "header then half the payload",
                Box::new(|p| {
                    guest_send(
                        p,
                        &message(MsgType::XS_WRITE as u32, 1, 0, 100, &[b'a'; 50]),
                    );
                }),
            ),
            (
                "error field set",
                Box::new(|p| store(p, Field::Error, XENSTORE_ERROR_PROTO)),
            ),
            (
                "reply injected into rsp",
                Box::new(|p| {
                    let m = msg(MsgType::XS_READ, 77, b"forged");
                    let prod = load(p, Field::RspProd);
                    poke_data(p, false, prod, &m);
                    store(p, Field::RspProd, prod.wrapping_add(m.len() as u32));
                }),
            ),
        ];
        let n = attacks.len();
        for (name, f) in attacks {
            lines.push(format!("{name}: {}", embedded_attack(name, f)));
        }
        format!("{n} corruptions of the embedded domain page, each: {}; dom0 and guest3 served after each, check OK after each", lines.join("; "))
    });
}

/// `connection` set to RECONNECT again and again by the guest kernel, between requests: each
/// is a reset of an idle ring, which the store performs, and the guest's handles go on.
#[test]
fn embedded_reconnect_toggling() {
    case("hostile/ring_embedded_reconnect_storm", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        g.watch(b"w", b"tok").unwrap();
        let page = host.e.domain_page(ATTACKER).unwrap();
        let rounds = 2000;
        for i in 0..rounds {
            store(&page, Field::Connection, XENSTORE_RECONNECT);
            if i % 2 == 0 {
                host.e.notify_domain(ATTACKER).unwrap();
                assert_eq!(
                    load(&page, Field::Connection),
                    XENSTORE_CONNECTED,
                    "reset done"
                );
                assert_eq!(load(&page, Field::ReqProd), 0);
            }
            g.write(0, b"w", format!("{i}").as_bytes()).unwrap();
            if i % 100 == 0 {
                host.assert_served(&[&other], "reconnect_storm");
            }
        }
        assert!(
            Arc::ptr_eq(&page, &host.e.domain_page(ATTACKER).unwrap()),
            "idle resets keep the page"
        );
        assert_eq!(
            g.read(0, b"w").unwrap(),
            format!("{}", rounds - 1).as_bytes()
        );
        host.assert_intact("reconnect storm");
        format!("{rounds} RECONNECTs of an idle ring (half kicked, half found at the next request): all reset, {rounds} guest writes served in between, page kept, check OK")
    });
}

/// A second thread plays the kernel and scribbles (indexes, data, `connection`, `error`)
/// while the guest's handles, domain 0 and another guest make requests. Guest requests may
/// fail (the ring is given up, a new handle is opened), none may hang; domain 0 and the other
/// guest never fail.
#[test]
fn embedded_concurrent_scribbler() {
    case("hostile/ring_embedded_concurrent_scribbler", || {
        let host = Arc::new(Host::new(&[ATTACKER, BYSTANDER]));
        host.dom0.write(0, b"/local/domain/1/n0", b"v").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let scribbler = {
            let (host, stop) = (Arc::clone(&host), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
                let mut pokes = 0u64;
                let mut page = host.e.domain_page(ATTACKER).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if pokes.is_multiple_of(64) {
                        // The page may have been given up and replaced meanwhile.
                        page = host.e.domain_page(ATTACKER).unwrap();
                    }
                    match rng.below(16) {
                        0 => store(&page, Field::ReqProd, rng.u32()),
                        1 => store(
                            &page,
                            Field::ReqCons,
                            load(&page, Field::ReqCons).wrapping_add(rng.below(40) as u32),
                        ),
                        2 => store(&page, Field::RspCons, rng.u32()),
                        3 => store(&page, Field::Connection, XENSTORE_RECONNECT),
                        4 => store(&page, Field::Error, rng.below(4) as u32),
                        5 => {
                            let bytes: Vec<u8> =
                                (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                            poke_data(&page, rng.below(2) == 0, rng.u32(), &bytes);
                        }
                        6 => {
                            guest_send(
                                &page,
                                &message(rng.u32() % 40, 1, 0, rng.below(5000) as u32, b"x\0"),
                            );
                        }
                        7 => {
                            let _ = host.e.notify_domain(ATTACKER);
                        }
                        // Now and then a quiet spell, so that the guest gets some work done.
                        15 => std::thread::sleep(Duration::from_micros(200)),
                        _ => {}
                    }
                    pokes += 1;
                    if pokes.is_multiple_of(16) {
                        std::thread::yield_now();
                    }
                }
                pokes
            })
        };
        let other = host.guest(BYSTANDER);
        let mut g = host.guest(ATTACKER);
        let (mut ok, mut failed, mut reopened) = (0, 0, 0);
        let mut errnos = std::collections::BTreeMap::new();
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(2) {
            // The kernel may corrupt the guest's own requests in flight, so any errno may come
            // back to the guest; what matters is that every request returns.
            let r = g
                .write(0, format!("n{}", i % 50).as_bytes(), b"v")
                .and_then(|_| g.read(0, b"n0"));
            if let Err(e) = &r {
                *errnos.entry(e.0).or_insert(0) += 1;
            }
            if ok_or_ring_gone(&r) && r.is_ok() {
                ok += 1;
            } else {
                failed += 1;
                if g.is_dead() || r == Err(EBADF) {
                    g = host.guest(ATTACKER);
                    reopened += 1;
                }
            }
            if i % 10 == 0 {
                host.assert_served(&[&other], "scribbler");
            }
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let pokes = scribbler.join().unwrap();
        // Once the kernel is quiet, the domain is served again (after at most one failure of a
        // handle that met the last scribbles).
        let g = host.guest(ATTACKER);
        let _ = g.read(0, b"n0");
        let g = host.guest(ATTACKER);
        g.write(0, b"after", b"1").unwrap();
        assert_eq!(g.read(0, b"after").unwrap(), b"1");
        host.assert_intact("concurrent scribbling");
        assert!(ok + failed > 0);
        format!("{pokes} random pokes (indexes, data, connection, error, bogus headers, kicks) racing {i} guest round trips: {ok} served, {failed} failed (errno counts {errnos:?}), {reopened} handles reopened, 0 hangs; dom0+guest3 served {} times without error; check OK", i / 10 + 1)
    });
}

// ----- the plain one-connection-per-ring server -----

/// A store with domain 0 (direct), the attacker and a bystander on their own pages.
struct Plain {
    store: Store,
    dom0: xenstore::store::ConnId,
    attacker: RingConn,
    bystander: RingConn,
    partial: Vec<u8>,
}

impl Plain {
    fn new() -> Plain {
        let mut store = Store::new(Config::default());
        let dom0 = store.connect(0);
        let mut p = Plain {
            attacker: RingConn::new(&mut store, ATTACKER),
            bystander: RingConn::new(&mut store, BYSTANDER),
            store,
            dom0,
            partial: Vec::new(),
        };
        for d in [ATTACKER, BYSTANDER] {
            p.dom0_ok(MsgType::XS_INTRODUCE, format!("{d}\x001\x001\0").as_bytes());
            p.dom0_ok(MsgType::XS_MKDIR, format!("/local/domain/{d}\0").as_bytes());
            p.dom0_ok(
                MsgType::XS_SET_PERMS,
                format!("/local/domain/{d}\0n{d}\0").as_bytes(),
            );
        }
        p
    }

    fn dom0_ok(&mut self, ty: MsgType, payload: &[u8]) -> Vec<u8> {
        self.store
            .handle(
                self.dom0,
                &Header::new(ty, 1, 0, payload.len() as u32),
                payload,
            )
            .unwrap();
        let r = self.store.pop_output(self.dom0).unwrap();
        let h = Header::parse(r[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(
            h.ty,
            ty as u32,
            "{:?}",
            String::from_utf8_lossy(&r[HEADER_LEN..])
        );
        while self.store.pop_output(self.dom0).is_some() {}
        r[HEADER_LEN..].to_vec()
    }

    /// Domain 0 and the bystander are served (a write and a read-back each).
    fn others_served(&mut self, tag: &str) {
        let tag = &node_name(tag);
        self.dom0_ok(MsgType::XS_WRITE, format!("/plain/{tag}\0v").as_bytes());
        let mut partial = Vec::new();
        let r = self.bystander.call(
            &mut self.store,
            &msg(MsgType::XS_WRITE, 5, format!("{tag}\0v").as_bytes()),
            &mut partial,
            1,
        );
        assert_eq!(r[0].payload, b"OK\0", "bystander after {tag}");
        let r = self.bystander.call(
            &mut self.store,
            &msg(MsgType::XS_READ, 6, format!("{tag}\0").as_bytes()),
            &mut partial,
            1,
        );
        assert_eq!(r[0].payload, b"v");
    }

    fn intact(&self, after: &str) {
        let problems = self.store.check();
        assert!(problems.is_empty(), "after {after}: {problems:?}");
    }
}

#[test]
fn plain_unknown_types_are_enosys() {
    case("hostile/ring_plain_garbage_types", || {
        let mut p = Plain::new();
        let mut types: Vec<u32> = vec![
            15,
            16,
            20,
            27,
            28,
            100,
            999,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            u32::MAX,
        ];
        let mut rng = Rng(7);
        types.extend((0..200).map(|_| rng.u32() | 0x100));
        for (i, &ty) in types.iter().enumerate() {
            let body: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            let m = message(ty, i as u32, rng.u32() % 3, body.len() as u32, &body);
            let r = p.attacker.call(&mut p.store, &m, &mut p.partial, 1);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].header.ty, MsgType::XS_ERROR as u32, "type {ty}");
            assert_eq!(r[0].header.req_id, i as u32, "the reply names the request");
            assert_eq!(r[0].payload, b"ENOSYS\0", "type {ty}");
        }
        // The ring and the connection go on.
        let r = p.attacker.call(
            &mut p.store,
            &msg(MsgType::XS_WRITE, 1, b"still\0here"),
            &mut p.partial,
            1,
        );
        assert_eq!(r[0].payload, b"OK\0");
        p.others_served("garbage_types");
        p.intact("garbage types");
        format!("{} requests of unknown/reply-only types (WATCH_EVENT, ERROR, 20, >=27, random) answered XS_ERROR ENOSYS with their req_id, ring and connection kept, dom0+guest3 served, check OK", types.len())
    });
}

/// One fatal corruption of the plain server's page: the ring fails with `code` in the page
/// and is no longer served; everybody else is.
fn plain_fatal(name: &str, corrupt: impl Fn(&RingPage), code: u32) {
    let mut p = Plain::new();
    let r = p.attacker.call(
        &mut p.store,
        &msg(MsgType::XS_WATCH, 1, b"w\0t\0"),
        &mut p.partial,
        2,
    );
    assert_eq!(r[0].payload, b"OK\0");
    corrupt(&p.attacker.page);
    assert!(
        !p.attacker.service(&mut p.store),
        "{name}: the ring goes on"
    );
    assert_eq!(
        load(&p.attacker.page, Field::Error),
        code,
        "{name}: error code in the page"
    );
    let err = p.attacker.failed.unwrap();
    assert_eq!(err.code(), Some(code), "{name}");
    // A failed ring stays failed: more bytes are not read.
    guest_send(&p.attacker.page, &msg(MsgType::XS_WRITE, 2, b"more\0x"));
    assert!(!p.attacker.service(&mut p.store));
    p.others_served(name);
    p.intact(name);
    // The store drops the connection; its watch goes with it.
    p.store.disconnect(p.attacker.conn);
    p.intact(name);
}

#[test]
fn plain_fatal_corruptions() {
    case("hostile/ring_plain_fatal", || {
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Box<dyn Fn(&RingPage)>, u32)> = vec![
            (
                "req_prod far ahead",
                Box::new(|pg| {
                    store(
                        pg,
                        Field::ReqProd,
                        load(pg, Field::ReqCons).wrapping_add(0x8000_0000),
                    )
                }),
                XENSTORE_ERROR_RINGIDX,
            ),
            (
                "req_prod ring+1 ahead",
                Box::new(|pg| {
                    store(
                        pg,
                        Field::ReqProd,
                        load(pg, Field::ReqCons).wrapping_add(RING_SIZE + 1),
                    )
                }),
                XENSTORE_ERROR_RINGIDX,
            ),
            (
                "req_cons ahead of req_prod",
                Box::new(|pg| store(pg, Field::ReqCons, load(pg, Field::ReqProd).wrapping_add(1))),
                XENSTORE_ERROR_RINGIDX,
            ),
            (
                "header len 4097",
                Box::new(|pg| {
                    guest_send(pg, &message(2, 1, 0, 4097, b""));
                }),
                XENSTORE_ERROR_PROTO,
            ),
            (
                "header len 0x80000000",
                Box::new(|pg| {
                    guest_send(pg, &message(11, 1, 0, 0x8000_0000, b""));
                }),
                XENSTORE_ERROR_PROTO,
            ),
        ];
        let n = cases.len();
        let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let names = names.join(", ");
        for (name, f, code) in cases {
            plain_fatal(name, f, code);
        }
        // The rsp side: a kernel moving rsp_cons past rsp_prod fails the ring when the server
        // next writes.
        let mut p = Plain::new();
        let prod = load(&p.attacker.page, Field::RspProd);
        store(&p.attacker.page, Field::RspCons, prod.wrapping_add(2000));
        guest_send(&p.attacker.page, &msg(MsgType::XS_READ, 1, b"x\0"));
        assert!(!p.attacker.service(&mut p.store));
        assert_eq!(p.attacker.failed, Some(RingError::BadIndex));
        p.others_served("rsp_cons");
        p.intact("rsp_cons");
        format!("{} fatal corruptions ({names}, rsp_cons ahead): ring failed with RINGIDX/PROTO in the page, not served again, watch dropped with the connection, dom0+guest3 served, check OK", n + 1)
    });
}

/// Half a message and then nothing: the server keeps the part, serves nothing, does not spin,
/// and completes it when the rest comes; a reset throws the part away.
#[test]
fn plain_half_written_then_silence() {
    case("hostile/ring_plain_half_written", || {
        let mut p = Plain::new();
        let m = msg(MsgType::XS_WRITE, 9, b"half\0done");
        let mut wakeups = 0;
        for cut in [1, 7, HEADER_LEN, HEADER_LEN + 3] {
            guest_send(&p.attacker.page, &m[..cut]);
            for _ in 0..500 {
                assert!(p.attacker.service(&mut p.store));
                wakeups += 1;
            }
            assert!(p.attacker.server.in_request(), "part of a request is held");
            assert!(
                guest_take(&p.attacker.page, &mut p.partial).is_empty(),
                "nothing answered"
            );
            p.others_served("half");
            guest_send(&p.attacker.page, &m[cut..]);
            assert!(p.attacker.service(&mut p.store));
            let r = guest_take(&p.attacker.page, &mut p.partial);
            assert_eq!(r.len(), 1, "completed at cut {cut}");
            assert_eq!(
                (r[0].header.req_id, r[0].payload.as_slice()),
                (9, &b"OK\0"[..])
            );
        }
        // Half a message, then a reset: the part is gone, the next message is read whole.
        guest_send(&p.attacker.page, &m[..10]);
        p.attacker.service(&mut p.store);
        store(&p.attacker.page, Field::Connection, XENSTORE_RECONNECT);
        p.attacker.service(&mut p.store);
        assert_eq!(
            load(&p.attacker.page, Field::Connection),
            XENSTORE_CONNECTED
        );
        assert!(!p.attacker.server.in_request());
        p.partial.clear();
        let r = p.attacker.call(
            &mut p.store,
            &msg(MsgType::XS_READ, 3, b"half\0"),
            &mut p.partial,
            1,
        );
        assert_eq!(r[0].payload, b"done");
        p.intact("half-written messages");
        format!("4 messages cut after 1/7/16/19 bytes: {wakeups} wake-ups served nothing and held the part, each completed later, a reset dropped a part; dom0+guest3 served meanwhile, check OK")
    });
}

/// RECONNECT toggled with watches and transactions open: every reset drops the connection's
/// state (its watches and transactions are given back), the ring works after each.
#[test]
fn plain_reconnect_storm() {
    case("hostile/ring_plain_reconnect_storm", || {
        let mut p = Plain::new();
        let rounds = 1000;
        for i in 0..rounds {
            let r = p.attacker.call(
                &mut p.store,
                &msg(MsgType::XS_WATCH, 1, format!("w{i}\0t\0").as_bytes()),
                &mut p.partial,
                2,
            );
            assert_eq!(r[0].payload, b"OK\0");
            let r = p.attacker.call(
                &mut p.store,
                &msg(MsgType::XS_TRANSACTION_START, 2, b"\0"),
                &mut p.partial,
                1,
            );
            assert_eq!(r[0].header.ty, MsgType::XS_TRANSACTION_START as u32);
            store(&p.attacker.page, Field::Connection, XENSTORE_RECONNECT);
            if i % 3 == 0 {
                // Sometimes with half a request in the ring.
                guest_send(&p.attacker.page, &msg(MsgType::XS_READ, 1, b"x\0")[..5]);
            }
            assert!(p.attacker.service(&mut p.store));
            p.partial.clear();
            assert_eq!(
                load(&p.attacker.page, Field::Connection),
                XENSTORE_CONNECTED
            );
            if i % 100 == 0 {
                p.others_served("reconnect");
                p.intact("reconnect");
            }
        }
        assert_eq!(p.attacker.resets, rounds);
        p.intact("reconnect storm");
        let report = p.dom0_ok(
            MsgType::XS_CONTROL,
            format!("quota\0{ATTACKER}\0").as_bytes(),
        );
        let text = String::from_utf8_lossy(&report);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .to_string()
        };
        assert_eq!(line("watches "), "0");
        assert_eq!(line("transactions "), "0");
        format!("{rounds} resets each with a watch and a transaction open (a third with half a request): state dropped every time (0 watches, 0 transactions accounted after), ring served after each, dom0+guest3 served, check OK")
    });
}

/// Requests flooded without ever reading a reply: the server stops taking requests once its
/// replies fill the ring, so what the store holds for the guest stays bounded.
#[test]
fn plain_request_flood_without_reading() {
    case("hostile/ring_plain_outstanding_flood", || {
        let mut p = Plain::new();
        let req = msg(MsgType::XS_GET_DOMAIN_PATH, 1, b"1\0");
        let mut off = 0usize;
        let mut whole = 0usize;
        for _ in 0..20_000 {
            let n = guest_send(&p.attacker.page, &req[off..]);
            off += n;
            if off == req.len() {
                off = 0;
                whole += 1;
            }
            assert!(p.attacker.service(&mut p.store));
        }
        let served = p.attacker.served;
        let full = load(&p.attacker.page, Field::RspProd)
            .wrapping_sub(load(&p.attacker.page, Field::RspCons));
        let reply = HEADER_LEN + b"/local/domain/1\0".len();
        assert!(
            served as usize <= RING_SIZE as usize / reply + 2,
            "{served} requests served with no reply read"
        );
        assert!(p.attacker.server.pending() <= reply);
        assert!(full as usize > RING_SIZE as usize - reply);
        p.others_served("flood");
        p.intact("flood");
        format!("20000 rounds of queueing GET_DOMAIN_PATH with no reply read ({whole} whole requests got into the ring): {served} served (rsp ring full at {full} bytes, <= 1 reply waiting at the ring end), then the guest's ring is not read; dom0+guest3 served, check OK")
    });
}

/// Random bytes and indexes thrown at the plain server's page, with kicks, for a while:
/// nothing panics, every failure is a clean ring error, the store stays consistent.
#[test]
fn plain_random_pages() {
    case("hostile/ring_plain_random_fuzz", || {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        let mut failures = 0;
        let mut served = 0;
        let rounds = 300;
        let mut p = Plain::new();
        for round in 0..rounds {
            for _ in 0..rng.below(20) + 1 {
                match rng.below(6) {
                    0 => store(
                        &p.attacker.page,
                        Field::ReqProd,
                        load(&p.attacker.page, Field::ReqProd).wrapping_add(rng.below(300) as u32),
                    ),
                    1 => store(&p.attacker.page, Field::ReqProd, rng.u32()),
                    2 => {
                        let bytes: Vec<u8> =
                            (0..rng.below(300)).map(|_| rng.next() as u8).collect();
                        poke_data(&p.attacker.page, true, rng.u32(), &bytes);
                    }
                    3 => {
                        let ty = rng.u32() % 30;
                        let body: Vec<u8> = (0..rng.below(100))
                            .map(|_| b"/a0@\0x"[rng.below(6) as usize])
                            .collect();
                        guest_send(
                            &p.attacker.page,
                            &message(ty, 1, 0, body.len() as u32, &body),
                        );
                    }
                    4 => store(&p.attacker.page, Field::Connection, XENSTORE_RECONNECT),
                    _ => store(
                        &p.attacker.page,
                        Field::RspCons,
                        load(&p.attacker.page, Field::RspProd),
                    ),
                }
                p.attacker.service(&mut p.store);
            }
            if let Some(e) = p.attacker.failed {
                served += p.attacker.served;
                assert!(e.is_fatal(), "{e:?}");
                failures += 1;
                p.store.disconnect(p.attacker.conn);
                p.attacker = RingConn::new(&mut p.store, ATTACKER);
            }
            if round % 30 == 0 {
                p.others_served("fuzz");
                p.intact("fuzz");
            }
        }
        served += p.attacker.served;
        p.intact("random pages");
        format!("{rounds} rounds of random indexes/bytes/headers/resets: {failures} rings failed cleanly (RINGIDX/PROTO), {served} random requests reached the store, dom0+guest3 served every 30 rounds, check OK throughout")
    });
}

/// Handles stay the attacker's own business: while it corrupts its page, a blocked reader of
/// its watch is woken (not left waiting) when the ring is given up.
#[test]
fn embedded_blocked_reader_is_woken() {
    case("hostile/ring_embedded_blocked_reader", || {
        let host = Host::new(&[ATTACKER]);
        let g = Arc::new(host.guest(ATTACKER));
        g.watch(b"w", b"t").unwrap();
        assert_eq!(drain_events(&g, Duration::from_millis(20)).len(), 1);
        let g2 = Arc::clone(&g);
        let waiter = std::thread::spawn(move || g2.read_watch().map(drop));
        std::thread::sleep(Duration::from_millis(30));
        let page = host.e.domain_page(ATTACKER).unwrap();
        store(&page, Field::ReqProd, 0xFFFF_0000);
        host.e.notify_domain(ATTACKER).unwrap();
        let r = waiter.join().unwrap();
        assert!(r.is_err(), "the blocked reader was woken with an error");
        host.assert_intact("blocked reader");
        format!("watch reader blocked in another thread woken with {:?} when the corrupted ring was given up", r.unwrap_err())
    });
}
