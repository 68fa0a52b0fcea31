//! Hostile guests against the store's resources: a guest tries to exhaust nodes, node size,
//! permissions per node, watches, transactions (opened and never ended) and the store's
//! memory for pending watch events (a guest kernel that never reads its ring). Every attack
//! must stop at the quota with the C xenstored's error (store::quota: nodes, node size,
//! permissions and transactions ENOSPC, watches E2BIG), stay within it, keep domain 0 and
//! another guest served, and leave the invariants intact (CONTROL check).
//!
//! Prints one `PASS hostile/<case>: ...` line per case (`-- --nocapture`).

mod util;
use util::hostile_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostile_support::*;
use xenstore::client::{Handle, Permission};
use xenstore::client::{PERM_NONE, PERM_READ};
use xenstore::ring::{Field, RING_SIZE};
use xenstore::store::{Config, Store};
use xenstore::wire::{Header, MsgType, HEADER_LEN};

const ATTACKER: u32 = 1;
const BYSTANDER: u32 = 3;

/// Writes `d<i/200>/n<i>` until the store refuses (spread over directories, so that no
/// directory reaches the node-size quota first); returns (nodes written, error).
fn fill(g: &Handle, limit: usize) -> (usize, xenstore::client::Errno) {
    for i in 0..limit {
        if let Err(e) = g.write(0, format!("d{}/n{i}", i / 200).as_bytes(), b"v") {
            return (i, e);
        }
    }
    panic!("no quota stopped {limit} writes");
}

#[test]
fn node_count() {
    case("hostile/quota_nodes", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let quota = host.dom0.domain_quota(ATTACKER, b"nodes").unwrap() as u64;
        let owned = host.usage(ATTACKER).0;
        let (written, err) = fill(&g, 5000);
        assert_eq!(err, ENOSPC);
        // Each new directory takes two nodes: the last write may stop one short.
        let used = host.usage(ATTACKER).0;
        assert!(
            used == quota || used + 1 == quota,
            "stopped at {used} nodes, quota {quota}"
        );
        assert!(owned + written as u64 <= quota);
        // Fill the last one, if any; then nothing more fits.
        let _ = g.write(0, b"d0/last", b"v");
        assert_eq!(host.usage(ATTACKER).0, quota);
        let mut refused = 1;
        // More ways in, all refused whole: a chain of new parents, mkdir, and a second handle.
        let g2 = host.guest(ATTACKER);
        for p in [&b"a/b/c/d/e"[..], b"deep/x", b"one-more"] {
            assert_eq!(g.mkdir(0, p), Err(ENOSPC));
            assert_eq!(g2.write(0, p, b"v"), Err(ENOSPC));
            refused += 2;
        }
        assert_eq!(
            host.dom0.read(0, b"/local/domain/1/a"),
            Err(ENOENT),
            "nothing half-created"
        );
        // Transactions: every one may create within what is left, commits add up.
        g.rm(0, b"d0/n0").unwrap();
        g.rm(0, b"d0/n1").unwrap();
        let t1 = g.transaction_start().unwrap();
        let t2 = g2.transaction_start().unwrap();
        // Under different parents, so that the two do not conflict.
        g.write(t1, b"d1/xa", b"1").unwrap();
        g.write(t1, b"d1/xb", b"1").unwrap();
        g2.write(t2, b"d2/ya", b"1").unwrap();
        g2.write(t2, b"d2/yb", b"1").unwrap(); // each fits alone, not both
        g.transaction_end(t1, false)
            .unwrap_or_else(|e| panic!("commit t1: {e:?}"));
        assert_eq!(
            g2.transaction_end(t2, false),
            Err(ENOSPC),
            "the second commit would exceed the quota"
        );
        refused += 1;
        assert_eq!(host.usage(ATTACKER).0, quota);
        // Domain 0 and the other guest are not affected by the attacker's quota.
        let mut other_written = 0;
        for i in 0..200 {
            other.write(0, format!("o{i}").as_bytes(), b"v").unwrap();
            other_written += 1;
        }
        for i in 0..200 {
            host.dom0
                .write(0, format!("/local/domain/1/by-dom0/{i}").as_bytes(), b"v")
                .unwrap();
        }
        let served = host.assert_served(&[&other], "quota_nodes");
        host.assert_intact("node exhaustion");
        // Releasing the domain takes everything it owns with it.
        drop((g, g2));
        host.dom0.release_domain(ATTACKER).unwrap();
        assert_eq!(host.dom0.read(0, b"/local/domain/1/d0/n5"), Err(ENOENT));
        host.assert_intact("release of the exhausting domain");
        format!("{written} writes filled the quota of {quota} nodes then ENOSPC, {refused} further creations (chains, 2nd handle, over-quota txn commit) refused ENOSPC, none half-done; guest3 wrote {other_written}, dom0 200 under the attacker's home, {served} round trips, check OK (also after release)")
    });
}

#[test]
fn node_size() {
    case("hostile/quota_node_size", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let size = host.dom0.domain_quota(ATTACKER, b"node-size").unwrap() as usize;
        let mut refused = 0;
        // The C daemon's measure: 16 + 8 per permission + value + child names with NULs.
        let max_value = size - 16 - 8;
        g.write(0, b"v", &vec![b'x'; max_value]).unwrap();
        assert_eq!(g.write(0, b"v", &vec![b'x'; max_value + 1]), Err(ENOSPC));
        assert_eq!(
            g.write(0, b"w", &vec![b'x'; max_value + 1]),
            Err(ENOSPC),
            "creating"
        );
        assert_eq!(g.write(0, b"big", &vec![b'x'; 4000]), Err(ENOSPC));
        refused += 3;
        assert_eq!(
            g.read(0, b"v").unwrap().len(),
            max_value,
            "the refused write changed nothing"
        );
        assert_eq!(g.read(0, b"w"), Err(ENOENT));
        // A directory grows with every child until its names fill it.
        let mut children = 0;
        let err = loop {
            match g.write(0, format!("kids/c{children:04}").as_bytes(), b"") {
                Ok(()) => children += 1,
                Err(e) => break e,
            }
            assert!(children < 5000);
        };
        assert_eq!(err, ENOSPC);
        refused += 1;
        let names: usize = g
            .directory(0, b"kids")
            .unwrap()
            .iter()
            .map(|c| c.len() + 1)
            .sum();
        assert!(
            16 + 8 + names <= size,
            "directory of {names} name bytes exceeds the node size"
        );
        // A long name under an almost full directory, and a new chain whose parent would
        // overflow: refused without creating anything.
        assert_eq!(
            g.write(0, format!("kids/{}", "z".repeat(200)).as_bytes(), b""),
            Err(ENOSPC)
        );
        assert_eq!(
            g.write(
                0,
                format!("kids/{}/deeper", "y".repeat(200)).as_bytes(),
                b""
            ),
            Err(ENOSPC)
        );
        refused += 2;
        assert_eq!(g.directory(0, b"kids").unwrap().len(), children);
        // Growing the permission list of a full node.
        let five: Vec<Permission> = (0..5)
            .map(|i| Permission {
                id: if i == 0 { ATTACKER } else { 10 + i },
                perms: PERM_READ,
            })
            .collect();
        assert_eq!(g.set_permissions(0, b"v", &five), Err(ENOSPC));
        refused += 1;
        // The same through a transaction.
        let t = g.transaction_start().unwrap();
        assert_eq!(g.write(t, b"v", &vec![b'x'; max_value + 1]), Err(ENOSPC));
        assert_eq!(g.set_permissions(t, b"v", &five), Err(ENOSPC));
        g.transaction_end(t, false).unwrap();
        refused += 2;
        // Domain 0 is not bound by it; the other guest has its own.
        host.dom0
            .write(0, b"/local/domain/1/dom0-big", &vec![b'd'; 4000])
            .unwrap();
        other.write(0, b"fits", &vec![b'o'; max_value]).unwrap();
        let served = host.assert_served(&[&g, &other], "quota_node_size");
        host.assert_intact("node size attacks");
        format!("value of {max_value} accepted, {refused} oversized writes/children/perm lists (direct and in txn) refused ENOSPC at node-size {size}, directory stopped at {children} children, {served} round trips after, check OK")
    });
}

#[test]
fn permissions_per_node() {
    case("hostile/quota_permissions", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let quota = host
            .dom0
            .domain_quota(ATTACKER, b"node-permissions")
            .unwrap() as usize;
        g.write(0, b"p", b"").unwrap();
        let list = |n: usize| -> Vec<Permission> {
            (0..n)
                .map(|i| Permission {
                    id: if i == 0 { ATTACKER } else { i as u32 + 100 },
                    perms: PERM_READ,
                })
                .collect()
        };
        g.set_permissions(0, b"p", &list(quota)).unwrap();
        let mut refused = 0;
        for n in [quota + 1, quota + 2, 50, 600] {
            assert_eq!(
                g.set_permissions(0, b"p", &list(n)),
                Err(ENOSPC),
                "{n} entries"
            );
            refused += 1;
        }
        // The longest list a request can carry (~1300 entries in 4096 bytes).
        let mut payload = b"p\0r1\0".to_vec();
        while payload.len() + 6 <= 4096 {
            payload.extend_from_slice(b"r1234\0");
        }
        assert_eq!(raw(&g, MsgType::XS_SET_PERMS, 0, &payload), Err(ENOSPC));
        refused += 1;
        assert_eq!(
            g.get_permissions(0, b"p").unwrap().len(),
            quota,
            "unchanged"
        );
        host.dom0
            .set_permissions(0, b"/local/domain/1/p", &list(quota + 3))
            .unwrap();
        other.write(0, b"q", b"").unwrap();
        other
            .set_permissions(
                0,
                b"q",
                &[Permission {
                    id: BYSTANDER,
                    perms: PERM_NONE,
                }],
            )
            .unwrap();
        let served = host.assert_served(&[&g, &other], "quota_permissions");
        host.assert_intact("permission list attacks");
        format!("{quota} entries accepted, {refused} longer lists (up to {} entries in one request) refused ENOSPC, dom0 exempt, {served} round trips after, check OK", (payload.len() - 2) / 6)
    });
}

#[test]
fn watches() {
    case("hostile/quota_watches", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let other = host.guest(BYSTANDER);
        let quota = host.dom0.domain_quota(ATTACKER, b"watches").unwrap() as usize;
        // Three handles of the domain share its quota.
        let hs: Vec<Handle> = (0..3).map(|_| host.guest(ATTACKER)).collect();
        let mut placed = 0;
        let mut refused = 0;
        for i in 0..quota + 60 {
            let h = &hs[i % 3];
            match h.watch(format!("w{i}").as_bytes(), b"t") {
                Ok(()) => placed += 1,
                Err(e) => {
                    assert_eq!(e, E2BIG, "watch {i}");
                    refused += 1;
                }
            }
        }
        assert_eq!(placed, quota);
        assert_eq!(host.usage(ATTACKER).1, quota as u64);
        // Duplicates are EEXIST (checked first), special and foreign paths count the same.
        assert_eq!(hs[0].watch(b"w0", b"t"), Err(EEXIST));
        assert_eq!(hs[0].watch(b"@releaseDomain", b"t"), Err(E2BIG));
        assert_eq!(hs[0].watch(b"/local/domain/3", b"t"), Err(E2BIG));
        refused += 2;
        // Many tokens on one path are just as many watches.
        hs[0].unwatch(b"w0", b"t").unwrap();
        hs[0].watch(b"w0", b"t2").unwrap();
        assert_eq!(hs[0].watch(b"w0", b"t3"), Err(E2BIG));
        refused += 1;
        // The other guest has its own quota; domain 0 none.
        for i in 0..quota {
            other.watch(format!("o{i}").as_bytes(), b"t").unwrap();
        }
        for i in 0..quota + 100 {
            host.dom0.watch(format!("/d/{i}").as_bytes(), b"t").unwrap();
        }
        let served = host.assert_served(&[&hs[1], &other], "quota_watches");
        host.assert_intact("watch exhaustion");
        // Closing the handles gives the watches back.
        drop(hs);
        assert_eq!(host.usage(ATTACKER).1, 0);
        let fresh = host.guest(ATTACKER);
        for i in 0..quota {
            fresh.watch(format!("again{i}").as_bytes(), b"t").unwrap();
        }
        host.assert_intact("closing the watching handles");
        format!("{placed} watches over 3 handles then {refused} refused E2BIG (quota {quota} per domain, duplicates EEXIST), guest3 placed {quota}, dom0 {}, {served} round trips, all returned on close, check OK", quota + 100)
    });
}

#[test]
fn transactions_never_ended() {
    case("hostile/quota_transactions", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let other = host.guest(BYSTANDER);
        let quota = host.dom0.domain_quota(ATTACKER, b"transactions").unwrap() as usize;
        let tx_nodes = host
            .dom0
            .domain_quota(ATTACKER, b"transaction-nodes")
            .unwrap() as usize;
        let g = host.guest(ATTACKER);
        let g2 = host.guest(ATTACKER);
        let mut open = Vec::new();
        let mut refused = 0;
        for i in 0..quota + 20 {
            let h = if i % 2 == 0 { &g } else { &g2 };
            match h.transaction_start() {
                Ok(t) => {
                    h.write(t, format!("tx{i}").as_bytes(), b"pending").unwrap();
                    open.push(t);
                }
                Err(e) => {
                    assert_eq!(e, ENOSPC);
                    refused += 1;
                }
            }
        }
        assert_eq!(open.len(), quota);
        assert_eq!(host.usage(ATTACKER).2, quota as u64);
        // Nested start inside a transaction is not a way around it.
        assert_eq!(
            raw(&g, MsgType::XS_TRANSACTION_START, open[0], b"\0"),
            Err(xenstore::client::Errno(libc::EBUSY))
        );
        // While they stay open, everybody else works, including transactions of their own.
        for i in 0..300 {
            host.dom0
                .write(0, format!("/busy/{i}").as_bytes(), b"x")
                .unwrap();
        }
        let t0: Vec<u32> = (0..50)
            .map(|_| host.dom0.transaction_start().unwrap())
            .collect();
        for t in t0 {
            host.dom0.transaction_end(t, false).unwrap();
        }
        let ot: Vec<u32> = (0..quota)
            .map(|_| other.transaction_start().unwrap())
            .collect();
        for t in ot {
            other.transaction_end(t, false).unwrap();
        }
        let served = host.assert_served(&[&other], "quota_transactions");
        host.assert_intact("open transactions");
        // Closing the handles ends them all; nothing they wrote appears.
        drop((g, g2));
        assert_eq!(host.usage(ATTACKER).2, 0);
        assert_eq!(host.dom0.read(0, b"/local/domain/1/tx0"), Err(ENOENT));
        // One transaction touching more nodes than transaction-nodes allows.
        let g = host.guest(ATTACKER);
        let t = g.transaction_start().unwrap();
        let mut touched = 0;
        let err = loop {
            match g.read(t, format!("missing{touched}").as_bytes()) {
                Err(ENOENT) => touched += 1,
                Err(e) => break e,
                Ok(_) => panic!("read a missing node"),
            }
            assert!(touched <= tx_nodes + 10);
        };
        assert_eq!(err, ENOSPC);
        assert!(
            touched < tx_nodes && touched + 2 >= tx_nodes,
            "stopped after {touched}"
        );
        g.transaction_end(t, true).unwrap();
        host.assert_intact("transaction-nodes exhaustion");
        format!("{} transactions opened over 2 handles and never ended, {refused} more refused ENOSPC (quota {quota}); dom0 wrote 300 nodes and ran 50 txns, guest3 ran {quota}, {served} round trips; all freed on close; one txn stopped ENOSPC after {touched} nodes (transaction-nodes {tx_nodes}); check OK", open.len())
    });
}

/// The store's side of the pending-events attack, with a guest kernel that never reads its
/// ring: served as the C daemon serves a domain (one connection per ring, flow-controlled),
/// the events wait in the store's per-connection queue, whose bounds must hold while domain 0
/// (a direct connection) and another guest (a reading ring) keep being served.
fn never_reading_guest(cfg: Config, events: usize, path_len: usize) -> String {
    let (cap_events, cap_bytes) = (cfg.max_queued_events, cfg.max_queued_event_bytes);
    let mut store = Store::new(cfg);
    let dom0 = store.connect(0);
    let setup = |s: &mut Store, ty: MsgType, p: &[u8]| {
        s.handle(dom0, &Header::new(ty, 1, 0, p.len() as u32), p)
            .unwrap();
        let r = s.pop_output(dom0).unwrap();
        assert_ne!(
            Header::parse(r[..HEADER_LEN].try_into().unwrap())
                .unwrap()
                .ty,
            MsgType::XS_ERROR as u32,
            "{:?}",
            String::from_utf8_lossy(p)
        );
        while s.pop_output(dom0).is_some() {}
    };
    let busy = format!("/busy/{}", "p".repeat(path_len));
    for d in [ATTACKER, BYSTANDER] {
        setup(
            &mut store,
            MsgType::XS_INTRODUCE,
            format!("{d}\x001\x001\0").as_bytes(),
        );
        setup(
            &mut store,
            MsgType::XS_MKDIR,
            format!("/local/domain/{d}\0").as_bytes(),
        );
        setup(
            &mut store,
            MsgType::XS_SET_PERMS,
            format!("/local/domain/{d}\0n{d}\0").as_bytes(),
        );
    }
    setup(
        &mut store,
        MsgType::XS_WRITE,
        format!("{busy}\0").as_bytes(),
    );
    setup(
        &mut store,
        MsgType::XS_SET_PERMS,
        format!("{busy}\0n0\0r{ATTACKER}\0").as_bytes(),
    );
    let mut attacker = RingConn::new(&mut store, ATTACKER);
    let mut bystander = RingConn::new(&mut store, BYSTANDER);

    // The attacker's kernel registers watches on the busy node (and its own home), then never
    // reads its responses.
    let mut partial = Vec::new();
    for (i, p) in [busy.as_str(), "/local/domain/1", "data"]
        .iter()
        .enumerate()
    {
        let got = attacker.call(
            &mut store,
            &msg(
                MsgType::XS_WATCH,
                i as u32,
                format!("{p}\0tok{i}\0").as_bytes(),
            ),
            &mut partial,
            2,
        );
        assert_eq!(got.len(), 2, "reply and initial event");
        assert_eq!(got[0].payload, b"OK\0");
    }
    let mut max_events = 0;
    let mut max_bytes = 0;
    let mut bystander_trips = 0;
    let start = Instant::now();
    for i in 0..events {
        // Domain 0 adds under the busy node; every change is an event for the attacker, each
        // for another path (identical events still queued would be merged, as in C).
        let w = format!("{busy}/{i}\0{i}");
        store
            .handle(
                dom0,
                &Header::new(MsgType::XS_WRITE, i as u32, 0, w.len() as u32),
                w.as_bytes(),
            )
            .unwrap();
        let r = store.pop_output(dom0).expect("dom0 is answered at once");
        assert_eq!(&r[HEADER_LEN..], b"OK\0");
        attacker.service(&mut store);
        max_events = max_events.max(store.queued_events(attacker.conn));
        max_bytes = max_bytes.max(store.queued_event_bytes(attacker.conn));
        if i % 97 == 0 {
            // The other guest keeps being served through its ring.
            let p = format!("data{i}\0v");
            let mut bp = Vec::new();
            let replies = bystander.call(
                &mut store,
                &msg(MsgType::XS_WRITE, i as u32, p.as_bytes()),
                &mut bp,
                1,
            );
            assert_eq!(replies.len(), 1);
            assert_eq!(replies[0].payload, b"OK\0");
            bystander_trips += 1;
        }
    }
    let elapsed = start.elapsed();
    let dropped = store.dropped_events(attacker.conn);
    let page = &attacker.page;
    let in_ring = page
        .load(Field::RspProd, Ordering::Acquire)
        .wrapping_sub(page.load(Field::RspCons, Ordering::Acquire));
    assert!(
        max_events <= cap_events,
        "{max_events} events queued, cap {cap_events}"
    );
    assert!(
        max_bytes <= cap_bytes,
        "{max_bytes} bytes queued, cap {cap_bytes}"
    );
    assert!(dropped > 0, "the attack was supposed to reach a cap");
    assert!(in_ring <= RING_SIZE);
    assert!(
        attacker.server.pending() <= HEADER_LEN + 4096,
        "the ring end holds at most one message"
    );
    assert!(attacker.failed.is_none());
    let problems = store.check();
    assert!(problems.is_empty(), "{problems:?}");
    // When the kernel finally reads, what was kept arrives whole and in order; then the
    // connection works again.
    let mut kept = 0;
    let mut last = 0;
    loop {
        attacker.service(&mut store);
        let batch = guest_take(&attacker.page, &mut partial);
        let idle = store.queued_events(attacker.conn) == 0 && attacker.server.pending() == 0;
        if batch.is_empty() && idle && partial.is_empty() {
            break;
        }
        for m in batch {
            assert_eq!(m.header.ty, MsgType::XS_WATCH_EVENT as u32);
            let path =
                String::from_utf8_lossy(m.payload.split(|&c| c == 0).next().unwrap()).into_owned();
            let n: usize = path.rsplit('/').next().unwrap().parse().unwrap();
            assert!(
                kept == 0 || n > last,
                "events out of order: {n} after {last}"
            );
            last = n;
            kept += 1;
        }
    }
    assert_eq!(
        kept as u64 + dropped,
        events as u64,
        "every event was either delivered or counted as dropped"
    );
    let last_node = format!("{busy}/{}\0", events - 1);
    let r = attacker.call(
        &mut store,
        &msg(MsgType::XS_READ, 7, last_node.as_bytes()),
        &mut partial,
        1,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].payload, (events - 1).to_string().as_bytes());
    assert!(store.check().is_empty());
    format!("{events} events of {} bytes for a kernel that never reads: at most {max_events} events / {max_bytes} bytes queued (caps {cap_events} / {cap_bytes}), {dropped} dropped and counted, {kept} delivered in order afterwards; dom0 answered {events} times and guest3 {bystander_trips} times meanwhile ({} ms), check OK", HEADER_LEN + busy.len() + 12, elapsed.as_millis())
}

#[test]
fn pending_events_small() {
    case("hostile/pending_events_count_cap", || {
        never_reading_guest(Config::default(), 20_000, 8)
    });
}

#[test]
fn pending_events_large() {
    case("hostile/pending_events_byte_cap", || {
        never_reading_guest(Config::default(), 3_000, 1500)
    });
}

/// Through an embedded guest handle whose owner never reads its events: the simulated kernel
/// drains the ring into the handle, so nothing waits in the store (every queue is empty after
/// each request), and domain 0 and another guest keep their speed. The events wait in the
/// handle's own queue, as they would in the guest's memory with the C library.
#[test]
fn pending_events_embedded() {
    case("hostile/pending_events_embedded", || {
        let host = Host::new(&[ATTACKER, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        host.dom0.write(0, b"/busy", b"").unwrap();
        grant_read(&host.dom0, "/busy", ATTACKER);
        for i in 0..20 {
            g.watch(b"/busy", format!("tok{i}").as_bytes()).unwrap();
        }
        let n = 2000;
        let start = Instant::now();
        for i in 0..n {
            host.dom0
                .write(0, b"/busy/n", format!("{i}").as_bytes())
                .unwrap();
            if i % 100 == 0 {
                host.assert_served(&[&other], "pending_embedded");
            }
        }
        let elapsed = start.elapsed();
        let report = std::env::temp_dir().join(format!("hostile-memreport-{}", std::process::id()));
        host.dom0
            .control(b"memreport", format!("{}\0", report.display()).as_bytes())
            .unwrap();
        let text = std::fs::read_to_string(&report).unwrap();
        let _ = std::fs::remove_file(&report);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with("queued output"))
            .unwrap()
            .to_string();
        // The report is made while domain 0's own CONTROL reply waits: nothing else is queued.
        assert!(
            line.starts_with("queued output: 0 messages")
                || line.starts_with("queued output: 1 messages"),
            "{line}"
        );
        let waiting = drain_events(&g, Duration::from_millis(300)).len();
        assert_eq!(waiting, 20 * n + 20, "every event reached the handle");
        host.assert_intact("unread events");
        format!("20 watches x {n} changes = {} events for a handle never reading: store queues empty ({line}), dom0 {n} writes + guest3 {} trips in {} ms, all events waiting in the guest's handle, check OK", 20 * n, 2 * (n / 100), elapsed.as_millis())
    });
}
