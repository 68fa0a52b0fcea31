//! XenStore advisories whose attack needs the daemon's own service of guest rings: its loop
//! in host mode over the in-memory hypervisor, a guest kernel writing its page. The rest of
//! the suite (the engine through guest rings) is tests/advisories.rs; docs/advisories.md
//! lists them all.

use super::*;

/// Fills `page`'s request ring with exactly RING_SIZE bytes: four writes of 256 bytes.
fn full_ring_of_writes(page: &RingPage) {
    let mut bytes = Vec::new();
    for i in 0..4u32 {
        let mut p = format!("full{i}\0").into_bytes();
        p.resize(256 - HEADER_LEN, b'v');
        bytes.extend(encode(MsgType::XS_WRITE, 100 + i, 0, &p));
    }
    assert_eq!(bytes.len(), RING_SIZE as usize);
    inject(page, &bytes);
}

/// XSA-38 (oxenstored): ring indexes from the guest were trusted (reads and writes out of
/// the ring), and the first fix ignored a completely full ring. Here: a full ring is served
/// whole; a producer behind the consumer (an index difference of 2^32 - 1) fails the ring
/// with RINGIDX, and the rest of the host is served.
#[test]
fn xsa038_full_ring_served_and_wrapped_index_refused() {
    let r = rig("xsa038");
    let mut tool = Tool::new(&r);
    let mut g = start_guest(&r, &mut tool, 5);
    let page = Arc::clone(g.ring.page());
    full_ring_of_writes(&page);
    r.xen.guest_notify(5);
    for i in 0..4u32 {
        let m = g.next();
        assert_eq!(
            (m.header.req_id, m.header.msg_type()),
            (100 + i, Some(MsgType::XS_WRITE))
        );
    }
    assert_eq!(
        tool.ok(MsgType::XS_READ, b"/local/domain/5/full3\0").len(),
        240 - 6
    );
    attack(
        "xsa038",
        |p| {
            let cons = p.load(Field::ReqCons, Ordering::Acquire);
            p.store(Field::ReqProd, cons.wrapping_sub(1), Ordering::Release)
        },
        XENSTORE_ERROR_RINGIDX,
    );
}

/// XSA-233: a domain and its stub domain (SET_TARGET) destroyed at the same time made the C
/// daemon unlink the shared connection twice. Here: both die in one batch, each with a watch
/// and an open transaction; both are released, once, and nothing of them is left.
#[test]
fn xsa233_domain_and_stubdom_die_together() {
    let r = rig("xsa233");
    let mut tool = Tool::new(&r);
    let mut watcher = Tool::watching(&r, "@releaseDomain", "r");
    let mut guest = start_guest(&r, &mut tool, 5);
    let mut stub = start_guest(&r, &mut tool, 6);
    tool.ok(MsgType::XS_SET_TARGET, b"6\x005\0");
    guest.ok(MsgType::XS_WATCH, b"data\0g\0");
    guest.next();
    stub.ok(MsgType::XS_WATCH, b"/local/domain/5\0s\0");
    stub.next();
    stub.ok(MsgType::XS_TRANSACTION_START, b"\0");
    guest.ok(MsgType::XS_TRANSACTION_START, b"\0");
    r.xen.set_state(5, DomainState::Dying);
    r.xen.set_state(6, DomainState::Dying);
    r.xen.raise_virq();
    watcher.event("@releaseDomain");
    wait_until("both released", || r.store.lock().domain_ids().len() == 1);
    assert_only_dom0_left(&r, &mut tool, 5);
    assert_only_dom0_left(&r, &mut tool, 6);
    assert_eq!(tool.control("check"), "OK\0");
}

/// XSA-325: a guest violating the ring protocol was dropped as if destroyed: @releaseDomain
/// fired while it still ran, and none when it really died (a zombie domain). Here: after a
/// protocol violation the domain stays introduced and no @releaseDomain fires; when it dies,
/// one does and it is torn down.
#[test]
fn xsa325_protocol_violation_is_not_a_death() {
    let r = rig("xsa325");
    let mut tool = Tool::new(&r);
    let mut watcher = Tool::watching(&r, "@releaseDomain", "r");
    watcher.watch("/marker", "m");
    let g = start_guest(&r, &mut tool, 5);
    let page = Arc::clone(g.ring.page());
    inject(
        &page,
        &Header::new(MsgType::XS_WRITE, 1, 0, 5000).to_bytes(),
    );
    r.xen.guest_notify(5);
    wait_until("the ring's error", || {
        page.load(Field::Error, Ordering::Acquire) == XENSTORE_ERROR_PROTO
    });
    tool.ok(MsgType::XS_WRITE, b"/marker\0");
    assert_eq!(
        watcher.next().payload,
        b"/marker\0m\0",
        "no @releaseDomain before the marker"
    );
    assert_eq!(tool.ok(MsgType::XS_IS_DOMAIN_INTRODUCED, b"5\0"), "T\0");
    r.xen.set_state(5, DomainState::Dying);
    r.xen.raise_virq();
    assert_eq!(watcher.next().payload, b"@releaseDomain\0r\0");
    assert_only_dom0_left(&r, &mut tool, 5);
}

/// Host mode driven turn by turn, without the loop's thread: a store, the rings over the
/// in-memory hypervisor, and a domain-0 connection to set things up.
struct Turns {
    xen: FakeXen,
    store: Store,
    host: HostRings,
    dom0: crate::store::ConnId,
}

impl Turns {
    fn new(cfg: Config) -> Turns {
        let xen = FakeXen::new();
        let mut store = Store::new(cfg);
        let host = HostRings::new(Arc::new(xen.clone()), &mut store, 1 << 20, false).unwrap();
        let dom0 = store.connect(0);
        Turns {
            xen,
            store,
            host,
            dom0,
        }
    }

    /// One request of domain 0; its reply, whole.
    fn call(&mut self, ty: MsgType, tx: u32, p: &[u8]) -> Vec<u8> {
        let h = Header::new(ty, 1, tx, p.len() as u32);
        self.store.handle(self.dom0, &h, p).unwrap();
        self.store.pop_output(self.dom0).unwrap()
    }

    /// A request of domain 0 that must succeed.
    fn ok(&mut self, ty: MsgType, tx: u32, p: &[u8]) {
        let r = self.call(ty, tx, p);
        assert_eq!(r[..4], (ty as u32).to_le_bytes(), "{ty:?}: {r:?}");
    }

    /// What one iteration of the loop does for the rings.
    fn turn(&mut self) {
        self.host.on_events();
        self.host.serve(&mut self.store);
        self.host.deliver(&mut self.store);
    }

    /// Introduces domain `domid` (`created`: its page and port, from `FakeXen::add_domain`),
    /// its ring set up; its kernel.
    fn introduce(&mut self, domid: u32, created: (Arc<RingPage>, u32)) -> Guest {
        let (page, port) = created;
        let p = format!("{domid}\0\0{port}\0");
        self.ok(MsgType::XS_INTRODUCE, 0, p.as_bytes());
        self.turn();
        Guest::new(&self.xen, domid, page)
    }
}

/// XSA-326 (unread replies) and XSA-416 (temporary memory of a request kept until its reply
/// was read): a guest sending requests without reading the replies made the daemon keep
/// every reply, and with it the request's working memory. Here: big-reply requests (a 3000-
/// byte directory listing) from a guest that reads nothing; the daemon stops reading its ring
/// at the outstanding quota, so only that many replies wait (a request keeps nothing else:
/// its work is done when the reply is made), and all are served once it reads.
#[test]
fn xsa326_xsa416_unread_replies_stop_at_the_outstanding_quota() {
    let mut cfg = Config::default();
    cfg.quota.outstanding = 5;
    let mut t = Turns::new(cfg);
    let created = t.xen.add_domain(3);
    t.ok(MsgType::XS_MKDIR, 0, b"/big\0");
    t.ok(MsgType::XS_SET_PERMS, 0, b"/big\0n0\0r3\0");
    for i in 0..50 {
        t.ok(MsgType::XS_MKDIR, 0, format!("/big/{i:059}\0").as_bytes());
    }
    let mut guest = t.introduce(3, created);
    for i in 0..30u32 {
        guest
            .ring
            .write_message(&Header::new(MsgType::XS_DIRECTORY, i, 0, 0), b"/big\0")
            .unwrap();
    }
    for _ in 0..10 {
        let _ = guest.ring.flush();
        t.turn();
    }
    assert_eq!(
        t.host.rings[&3].ring.unsent_replies(),
        5,
        "stopped at the quota"
    );
    let page = guest.ring.page();
    assert_ne!(
        page.load(Field::ReqProd, Ordering::Acquire),
        page.load(Field::ReqCons, Ordering::Acquire),
        "the rest waits unread in the guest's own ring"
    );
    let mut got = Vec::new();
    for _ in 0..100 {
        let _ = guest.ring.flush();
        t.turn();
        while let Some(m) = guest.ring.try_read_message().unwrap() {
            got.push((m.header.req_id, m.payload.len()));
        }
    }
    let want: Vec<(u32, usize)> = (0..30).map(|i| (i, 50 * 60)).collect();
    assert_eq!(got, want, "every reply, in order, once the guest reads");
    assert!(t.store.check().is_empty(), "{:?}", t.store.check());
}

/// XSA-417: a permission entry naming a domain the daemon had no record of was honoured,
/// so a new domain reusing a dead one's domid got the old one's access. Here: a grant to a
/// domain that does not exist is ignored, and so is a grant to a domain that died, for the
/// new domain with its domid.
#[test]
fn xsa417_grants_to_dead_or_absent_domains_are_void() {
    let r = rig("xsa417");
    let mut tool = Tool::new(&r);
    tool.ok(MsgType::XS_WRITE, b"/absent\0a");
    tool.ok(MsgType::XS_SET_PERMS, b"/absent\0n0\0r9\0");
    let old = start_guest(&r, &mut tool, 8);
    tool.ok(MsgType::XS_WRITE, b"/old\0o");
    tool.ok(MsgType::XS_SET_PERMS, b"/old\0n0\0r8\0");
    drop(old);
    r.xen.set_state(8, DomainState::Gone);
    r.xen.raise_virq();
    wait_until("domain 8 released", || {
        r.store.lock().domain_ids().iter().all(|&(d, _)| d != 8)
    });
    let mut new8 = start_guest(&r, &mut tool, 8);
    let mut new9 = start_guest(&r, &mut tool, 9);
    for (g, p) in [(&mut new8, "/old\0"), (&mut new9, "/absent\0")] {
        let (t, e) = g.call(MsgType::XS_READ, p.as_bytes(), &mut Vec::new());
        assert_eq!((t, e.as_str()), (MsgType::XS_ERROR, "EACCES\0"), "{p}");
    }
    assert_eq!(tool.control("check"), "OK\0");
}

/// XSA-420 (oxenstored): a length field between 1G and 2G became a negative OCaml integer and
/// raised an exception at every look at the ring (a livelock). Here: such a header fails the
/// ring with PROTO; the host goes on and the guest can reconnect.
#[test]
fn xsa420_length_between_1g_and_2g_fails_the_ring() {
    attack(
        "xsa420",
        |p| {
            inject(
                p,
                &Header::new(MsgType::XS_WRITE, 1, 0, 0x4000_0001).to_bytes(),
            )
        },
        XENSTORE_ERROR_PROTO,
    );
}

/// XSA-425: XS_RELEASE, which libxl issues for a guest's soft reset (kexec), could crash the
/// C daemon. Here: a guest soft-resets ten times (RELEASE and INTRODUCE again in one batch)
/// with a watch, a transaction and an unanswered request on its ring each time; it is
/// served after each, and the store stays consistent.
#[test]
fn xsa425_soft_reset_with_work_in_flight() {
    let r = rig("xsa425");
    let mut tool = Tool::new(&r);
    let g = start_guest(&r, &mut tool, 5);
    let page = Arc::clone(g.ring.page());
    drop(g);
    for round in 0..10u32 {
        let mut g = Guest::new(&r.xen, 5, Arc::clone(&page));
        g.ok(MsgType::XS_WATCH, b"data\0t\0");
        g.next();
        g.ok(MsgType::XS_TRANSACTION_START, b"\0");
        g.ring
            .write_message(&Header::new(MsgType::XS_READ, 999, 0, 0), b"data\0")
            .unwrap();
        let mut both = encode(MsgType::XS_RELEASE, 50, 0, b"5\0");
        both.extend(encode(MsgType::XS_INTRODUCE, 51, 0, b"5\0\x0051\0"));
        tool.0.write_all(&both).unwrap();
        assert_eq!(tool.next().header.req_id, 50);
        assert_eq!(tool.next().header.req_id, 51);
        assert_eq!(tool.control("check"), "OK\0", "round {round}");
        tool.ok(MsgType::XS_MKDIR, b"/local/domain/5\0");
        tool.ok(MsgType::XS_SET_PERMS, b"/local/domain/5\0n5\0");
        let mut g = Guest::new(&r.xen, 5, Arc::clone(&page));
        g.ok(MsgType::XS_WRITE, format!("data\0{round}").as_bytes());
    }
    assert_eq!(tool.ok(MsgType::XS_READ, b"/local/domain/5/data\0"), "9");
}

/// XSA-484: a connection dropped while it was inside a transaction (or XS_RESET_WATCHES sent
/// within one) tripped an assert in the C daemon's transaction clean-up. Here: RESET_WATCHES
/// from a guest with transactions open ends them (as the fixed C daemon does); a guest with a
/// transaction open breaks its ring, and its transaction is gone from the accounting; a
/// reconnection starts clean.
#[test]
fn xsa484_ring_dropped_inside_a_transaction() {
    let r = rig("xsa484");
    let mut tool = Tool::new(&r);
    let mut g = start_guest(&r, &mut tool, 5);
    for _ in 0..3 {
        let t = g.ok(MsgType::XS_TRANSACTION_START, b"\0");
        let t: u32 = t.trim_end_matches('\0').parse().unwrap();
        g.ring
            .write_message(&Header::new(MsgType::XS_WRITE, 7, t, 0), b"in-tx\0v")
            .unwrap();
        g.next();
    }
    g.ok(MsgType::XS_RESET_WATCHES, b"");
    g.ok(MsgType::XS_TRANSACTION_START, b"\0");
    // Open transactions of domain 5, from CONTROL quota.
    let open = |tool: &mut Tool| -> u32 {
        let text = tool.ok(MsgType::XS_CONTROL, b"quota\x005\0");
        let line = text.lines().find(|l| l.starts_with("transactions"));
        let n = line.and_then(|l| l.split(':').nth(1)?.split_whitespace().next());
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"))
    };
    assert_eq!(open(&mut tool), 1, "RESET_WATCHES ended the three before");
    let page = Arc::clone(g.ring.page());
    let cons = page.load(Field::ReqCons, Ordering::Acquire);
    page.store(
        Field::ReqProd,
        cons.wrapping_add(RING_SIZE + 1),
        Ordering::Release,
    );
    r.xen.guest_notify(5);
    wait_until("the ring's error", || {
        page.load(Field::Error, Ordering::Acquire) == XENSTORE_ERROR_RINGIDX
    });
    assert_eq!(open(&mut tool), 0);
    assert_eq!(tool.control("check"), "OK\0");
    let mut fresh = Guest::new(&r.xen, 5, Arc::clone(&page));
    fresh.ring.request_reconnect().unwrap();
    wait_until("CONNECTED", || {
        page.load(Field::Connection, Ordering::Acquire) == XENSTORE_CONNECTED
    });
    fresh.ok(MsgType::XS_TRANSACTION_START, b"\0");
}

/// XSA-206: a guest writing over and over a node that a toolstack transaction reads could make
/// that transaction fail (EAGAIN) at every retry, stalling the toolstack. Here: a guest keeps
/// its ring full of writes to its `state` node while domain 0 retries a transaction that reads
/// it. Once the guest's burst is spent, its writes are served at the limited rate only, so a
/// retry commits; the guest's writes served meanwhile stay within the burst plus the rate.
#[test]
fn xsa206_a_guest_writing_fast_cannot_stall_a_transaction() {
    let mut t = Turns::new(Config::default());
    let created = t.xen.add_domain(4);
    t.ok(MsgType::XS_WRITE, 0, b"/local/domain/4/state\0x");
    t.ok(MsgType::XS_SET_PERMS, 0, b"/local/domain/4\0n4\0");
    t.ok(MsgType::XS_SET_PERMS, 0, b"/local/domain/4/state\0n4\0");
    let mut guest = t.introduce(4, created);
    let (mut sent, mut answered) = (0u32, 0u32);
    // The guest reads every reply and refills its ring with writes before each turn.
    let mut attack = |guest: &mut Guest| {
        while let Ok(Some(_)) = guest.ring.try_read_message() {
            answered += 1;
        }
        while sent - answered < 10 {
            let v = format!("state\0{sent}");
            guest
                .ring
                .write_message(&Header::new(MsgType::XS_WRITE, sent, 0, 0), v.as_bytes())
                .unwrap();
            sent += 1;
        }
        let _ = guest.ring.flush();
        answered
    };
    let start = Instant::now();
    let mut failed = 0;
    let committed = loop {
        let tx = t.call(MsgType::XS_TRANSACTION_START, 0, b"\0");
        let tx: u32 = std::str::from_utf8(&tx[HEADER_LEN..tx.len() - 1])
            .unwrap()
            .parse()
            .unwrap();
        t.call(MsgType::XS_READ, tx, b"/local/domain/4/state\0");
        attack(&mut guest);
        t.turn();
        t.call(MsgType::XS_WRITE, tx, b"/backend/seen\0y");
        let end = t.call(MsgType::XS_TRANSACTION_END, tx, b"T\0");
        if end[..4] == (MsgType::XS_TRANSACTION_END as u32).to_le_bytes() {
            break true;
        }
        failed += 1;
        if failed == 1000 {
            break false;
        }
    };
    let served = attack(&mut guest);
    let elapsed = start.elapsed();
    assert!(
        committed,
        "1000 retries failed, {served} guest writes served"
    );
    assert!(failed > 0, "the guest's burst did conflict");
    let bound = 100 + 200 * (elapsed.as_millis() as u32 + 1) / 1000 + 10;
    assert!(
        served <= bound,
        "{served} writes served in {elapsed:?}, more than the rate allows ({bound})"
    );
    assert!(t.store.check().is_empty(), "{:?}", t.store.check());
}
