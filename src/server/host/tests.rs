//! Host mode over the in-memory hypervisor: the daemon's loop serving dom0's kernel ring and
//! guests' rings next to its socket, domain death and shutdown, reconnection, and hostile
//! guests scribbling on their pages.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::HostRings;
use crate::ring::{ClientRing, Field, Message, RingPage, RING_SIZE};
use crate::server::{ServerConfig, SocketServer, StopHandle};
use crate::store::{Config, Store};
use crate::wire::{
    encode, Header, MsgType, HEADER_LEN, XENSTORE_CONNECTED, XENSTORE_ERROR_NONE,
    XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX,
};
use crate::xen::fake::FakeXen;
use crate::xen::DomainState;

/// Every wait in these tests ends by this deadline, so a bug is a failure, never a hang.
const LIMIT: Duration = Duration::from_secs(20);

/// A daemon loop in a thread, with host mode over a fake hypervisor.
struct Rig {
    xen: FakeXen,
    path: std::path::PathBuf,
    stop: StopHandle,
    thread: Option<thread::JoinHandle<SocketServer>>,
    store: Arc<Mutex<Store>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn rig(tag: &str) -> Rig {
    rig_with(tag, ServerConfig::default())
}

fn rig_with(tag: &str, cfg: ServerConfig) -> Rig {
    let path = std::env::temp_dir().join(format!("xs-host-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let xen = FakeXen::new();
    let config = Config {
        live_update: true,
        ..Config::default()
    };
    let mut server = SocketServer::new(listener, Store::new(config), cfg).unwrap();
    server.serve_domains(Arc::new(xen.clone())).unwrap();
    Rig::run(xen, path, server)
}

impl Rig {
    /// Runs `server`'s loop in a thread.
    fn run(xen: FakeXen, path: std::path::PathBuf, mut server: SocketServer) -> Rig {
        let store = Arc::clone(&server.store);
        let stop = server.stop_handle();
        let thread = Some(thread::spawn(move || {
            server.run().unwrap();
            server
        }));
        Rig {
            xen,
            path,
            stop,
            thread,
            store,
        }
    }

    /// Stops the loop and hands its server back.
    fn stop(&mut self) -> SocketServer {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

/// A toolstack connection to the daemon's socket (domain 0).
struct Tool(UnixStream, u32);

impl Tool {
    fn new(r: &Rig) -> Tool {
        let s = UnixStream::connect(&r.path).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        Tool(s, 0)
    }

    /// A connection watching `path` with `token`, its first event taken.
    fn watching(r: &Rig, path: &str, token: &str) -> Tool {
        let mut t = Tool::new(r);
        t.watch(path, token);
        t
    }

    fn watch(&mut self, path: &str, token: &str) {
        self.ok(MsgType::XS_WATCH, format!("{path}\0{token}\0").as_bytes());
        self.event(path);
    }

    fn next(&mut self) -> Message {
        let mut h = [0u8; HEADER_LEN];
        self.0.read_exact(&mut h).unwrap();
        let header = Header::parse(&h).unwrap();
        let mut payload = vec![0; header.len as usize];
        self.0.read_exact(&mut payload).unwrap();
        Message { header, payload }
    }

    /// Sends a request, returns (type, payload) of its reply; events met on the way are
    /// kept in `events`.
    fn call(&mut self, ty: MsgType, payload: &[u8], events: &mut Vec<String>) -> (MsgType, String) {
        self.1 += 1;
        self.0.write_all(&encode(ty, self.1, 0, payload)).unwrap();
        loop {
            let m = self.next();
            let t = m.header.msg_type().unwrap();
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            if t == MsgType::XS_WATCH_EVENT {
                events.push(text);
            } else {
                assert_eq!(m.header.req_id, self.1);
                return (t, text);
            }
        }
    }

    fn ok(&mut self, ty: MsgType, payload: &[u8]) -> String {
        let (t, text) = self.call(ty, payload, &mut Vec::new());
        assert_eq!(
            t,
            ty,
            "{ty:?} {:?} answered {text}",
            String::from_utf8_lossy(payload)
        );
        text
    }

    fn introduce(&mut self, domid: u32, port: u32) -> (MsgType, String) {
        let p = format!("{domid}\0{}\0{port}\0", 0x1000 + domid);
        self.call(MsgType::XS_INTRODUCE, p.as_bytes(), &mut Vec::new())
    }

    fn control(&mut self, cmd: &str) -> String {
        self.ok(MsgType::XS_CONTROL, format!("{cmd}\0").as_bytes())
    }

    /// The rings the daemon serves, without the mapping count; and that count.
    fn rings(&mut self) -> (Vec<String>, usize) {
        let text = self.control("rings");
        let mut lines: Vec<String> = text
            .trim_end_matches('\0')
            .lines()
            .map(str::to_string)
            .collect();
        let last = lines.pop().unwrap();
        let n = last.strip_prefix("mappings ").unwrap().parse().unwrap();
        (lines, n)
    }

    /// Waits for the watch event on `path` (skipping others).
    fn event(&mut self, path: &str) -> String {
        loop {
            let m = self.next();
            assert_eq!(m.header.msg_type(), Some(MsgType::XS_WATCH_EVENT));
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            if text.split('\0').next() == Some(path) {
                return text;
            }
        }
    }
}

/// A guest kernel: the client end of its ring, notifying through the fake event channel.
struct Guest {
    ring: ClientRing,
    req: u32,
}

impl Guest {
    fn new(xen: &FakeXen, domid: u32, page: Arc<RingPage>) -> Guest {
        Guest {
            ring: ClientRing::new(page, xen.guest_notifier(domid)),
            req: 0,
        }
    }

    /// The next message, polling the ring until `LIMIT`.
    fn next(&mut self) -> Message {
        let deadline = Instant::now() + LIMIT;
        loop {
            let _ = self.ring.flush();
            if let Some(m) = self.ring.try_read_message().unwrap() {
                return m;
            }
            assert!(Instant::now() < deadline, "no message from the daemon");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn call(&mut self, ty: MsgType, payload: &[u8], events: &mut Vec<String>) -> (MsgType, String) {
        self.req += 1;
        self.ring
            .write_message(&Header::new(ty, self.req, 0, 0), payload)
            .unwrap();
        loop {
            let m = self.next();
            let t = m.header.msg_type().unwrap();
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            if t == MsgType::XS_WATCH_EVENT {
                events.push(text);
            } else {
                assert_eq!(m.header.req_id, self.req);
                return (t, text);
            }
        }
    }

    fn ok(&mut self, ty: MsgType, payload: &[u8]) -> String {
        let (t, text) = self.call(ty, payload, &mut Vec::new());
        assert_eq!(t, ty, "{ty:?} answered {text}");
        text
    }
}

/// Creates domain `domid` in the hypervisor, gives it a home it owns and introduces it.
fn start_guest(r: &Rig, tool: &mut Tool, domid: u32) -> Guest {
    let (page, port) = r.xen.add_domain(domid);
    let home = format!("/local/domain/{domid}");
    tool.ok(MsgType::XS_MKDIR, format!("{home}\0").as_bytes());
    tool.ok(
        MsgType::XS_SET_PERMS,
        format!("{home}\0n{domid}\0").as_bytes(),
    );
    assert_eq!(tool.introduce(domid, port).0, MsgType::XS_INTRODUCE);
    Guest::new(&r.xen, domid, page)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn dom0s_kernel_is_served_from_the_start() {
    let r = rig("dom0");
    let mut kernel = Guest::new(&r.xen, 0, r.xen.page(0));
    assert!(kernel.ring.is_connected());
    assert!(
        r.xen.notified(0) > 0,
        "its kernel was told xenstored is there"
    );
    // Privileged, as dom0's kernel carries the toolstack's requests.
    kernel.ok(MsgType::XS_WRITE, b"/from-kernel\0v");
    let mut tool = Tool::new(&r);
    assert_eq!(tool.ok(MsgType::XS_READ, b"/from-kernel\0"), "v");
    let (rings, maps) = tool.rings();
    assert_eq!(rings.len(), 1);
    assert!(rings[0].starts_with("domid 0 port ") && rings[0].ends_with(" 1 local"));
    assert_eq!(maps, 1);
}

#[test]
fn introduced_guests_are_served_and_announced() {
    let r = rig("intro");
    let mut tool = Tool::new(&r);
    let mut watcher = Tool::watching(&r, "@introduceDomain", "i");
    let mut g5 = start_guest(&r, &mut tool, 5);
    watcher.event("@introduceDomain");
    r.xen.refuse_grant(6);
    let mut g6 = start_guest(&r, &mut tool, 6);
    // Each guest acts as itself: relative paths land in its home, others' homes are closed.
    g5.ok(MsgType::XS_WRITE, b"data\0five");
    g6.ok(MsgType::XS_WRITE, b"data\0six");
    assert_eq!(tool.ok(MsgType::XS_READ, b"/local/domain/5/data\0"), "five");
    let (t, err) = g6.call(MsgType::XS_READ, b"/local/domain/5/data\0", &mut Vec::new());
    assert_eq!((t, err.as_str()), (MsgType::XS_ERROR, "EACCES\0"));
    // A guest sees watch events through its ring.
    g5.ok(MsgType::XS_WATCH, b"data\0tok\0");
    assert_eq!(g5.next().payload, b"data\0tok\0");
    tool.ok(MsgType::XS_WRITE, b"/local/domain/5/data\0changed");
    assert_eq!(g5.next().payload, b"data\0tok\0");
    let (rings, maps) = tool.rings();
    assert_eq!(rings.len(), 3, "{rings:?}");
    assert!(rings[1].starts_with("domid 5 ") && rings[1].ends_with(" 51 grant"));
    assert!(rings[2].starts_with("domid 6 ") && rings[2].ends_with(" 61 foreign"));
    assert_eq!(maps, 3);
    assert_eq!(tool.ok(MsgType::XS_IS_DOMAIN_INTRODUCED, b"6\0"), "T\0");
}

#[test]
fn permissions_name_only_domains_that_exist() {
    let r = rig("perms");
    let mut tool = Tool::new(&r);
    tool.ok(MsgType::XS_WRITE, b"/p\0");
    // An owner that does not exist is refused; another entry is kept, shown, and ignored:
    // domain 9, created later, does not get the right.
    let (t, e) = tool.call(MsgType::XS_SET_PERMS, b"/p\0n9\0", &mut Vec::new());
    assert_eq!((t, e.as_str()), (MsgType::XS_ERROR, "ENOENT\0"));
    tool.ok(MsgType::XS_SET_PERMS, b"/p\0n0\0r9\0r5\0");
    assert_eq!(tool.ok(MsgType::XS_GET_PERMS, b"/p\0"), "n0\0r9\0r5\0");
    let mut g9 = start_guest(&r, &mut tool, 9);
    let (t, e) = g9.call(MsgType::XS_READ, b"/p\0", &mut Vec::new());
    assert_eq!((t, e.as_str()), (MsgType::XS_ERROR, "EACCES\0"));
    // Given now that it exists, it counts.
    tool.ok(MsgType::XS_SET_PERMS, b"/p\0n0\0r9\0");
    assert_eq!(g9.ok(MsgType::XS_READ, b"/p\0"), "");
}

#[test]
fn a_domain_whose_ring_cannot_be_set_up_is_not_introduced() {
    let r = rig("nodomain");
    let mut tool = Tool::new(&r);
    // No such domain: nothing to map.
    assert_eq!(tool.introduce(9, 91).0, MsgType::XS_ERROR);
    // A domain that exists, with the wrong port: nothing to bind, and the mapping undone.
    r.xen.add_domain(8);
    assert_eq!(tool.introduce(8, 12345).0, MsgType::XS_ERROR);
    assert_eq!(tool.ok(MsgType::XS_IS_DOMAIN_INTRODUCED, b"8\0"), "F\0");
    assert_eq!(tool.rings().1, 1);
}

/// What a dead or released domain must not leave behind.
fn assert_only_dom0_left(r: &Rig, tool: &mut Tool, domid: u32) {
    let (rings, maps) = tool.rings();
    assert_eq!((rings.len(), maps), (1, 1), "{rings:?}");
    // VIRQ_DOM_EXC and dom0's port.
    assert_eq!(r.xen.bound_ports(), 2);
    assert_eq!(
        tool.ok(
            MsgType::XS_IS_DOMAIN_INTRODUCED,
            format!("{domid}\0").as_bytes()
        ),
        "F\0"
    );
    let (t, _) = tool.call(
        MsgType::XS_READ,
        format!("/local/domain/{domid}\0").as_bytes(),
        &mut Vec::new(),
    );
    assert_eq!(t, MsgType::XS_ERROR, "its home is gone");
    assert_eq!(tool.control("check"), "OK\0");
    assert_eq!(r.store.lock().domain_ids(), vec![(0, true)]);
}

#[test]
fn a_dying_domain_is_torn_down_and_released() {
    let r = rig("death");
    let mut tool = Tool::new(&r);
    let mut watcher = Tool::watching(&r, "@releaseDomain", "r");
    let mut g = start_guest(&r, &mut tool, 7);
    g.ok(MsgType::XS_WATCH, b"/local\0w\0");
    g.next();
    g.ok(MsgType::XS_TRANSACTION_START, b"\0");
    g.ok(MsgType::XS_WRITE, b"data/a\0x");
    r.xen.set_state(7, DomainState::Dying);
    r.xen.raise_virq();
    watcher.event("@releaseDomain");
    assert_only_dom0_left(&r, &mut tool, 7);
}

#[test]
fn a_domain_that_vanished_is_released_too() {
    let r = rig("gone");
    let mut tool = Tool::new(&r);
    let _g = start_guest(&r, &mut tool, 4);
    r.xen.set_state(4, DomainState::Gone);
    r.xen.raise_virq();
    wait_until("the release", || r.store.lock().domain_ids().len() == 1);
    assert_only_dom0_left(&r, &mut tool, 4);
}

#[test]
fn release_tears_the_ring_down() {
    let r = rig("release");
    let mut tool = Tool::new(&r);
    let _g = start_guest(&r, &mut tool, 3);
    assert_eq!(tool.rings().1, 2);
    tool.ok(MsgType::XS_RELEASE, b"3\0");
    assert_only_dom0_left(&r, &mut tool, 3);
}

#[test]
fn released_and_introduced_again_in_one_batch_keeps_a_ring() {
    let r = rig("again-batch");
    let mut tool = Tool::new(&r);
    let g = start_guest(&r, &mut tool, 5);
    let page = g.ring.page().clone();
    // Both requests in one write: the loop handles them in one turn.
    let mut both = encode(MsgType::XS_RELEASE, 50, 0, b"5\0");
    let port = 51;
    let again = format!("5\0\0{port}\0");
    both.extend(encode(MsgType::XS_INTRODUCE, 51, 0, again.as_bytes()));
    tool.0.write_all(&both).unwrap();
    assert_eq!(tool.next().header.req_id, 50);
    assert_eq!(tool.next().header.req_id, 51);
    let (rings, maps) = tool.rings();
    assert_eq!((rings.len(), maps), (2, 2), "{rings:?}");
    assert_eq!(tool.control("check"), "OK\0");
    let mut g = Guest::new(&r.xen, 5, page);
    tool.ok(MsgType::XS_MKDIR, b"/local/domain/5\0");
    tool.ok(MsgType::XS_SET_PERMS, b"/local/domain/5\0n5\0");
    g.ok(MsgType::XS_WRITE, b"data\0served");
}

#[test]
fn a_shutdown_fires_release_domain_once_until_resumed() {
    let r = rig("shutdown");
    let mut tool = Tool::new(&r);
    let mut watcher = Tool::watching(&r, "@releaseDomain", "r");
    watcher.watch("/marker", "m");
    let _g = start_guest(&r, &mut tool, 2);
    let shutdown_then_marker = |tool: &mut Tool| {
        r.xen.set_state(2, DomainState::Shutdown);
        r.xen.raise_virq();
        // The loop handles what Xen reported before the socket requests it read in the same
        // turn, so any @releaseDomain the VIRQ causes comes before the marker's event.
        tool.ok(MsgType::XS_WRITE, b"/marker\0");
    };
    // A domain never introduced but named by a node (its permissions) vanishing in the
    // same check does not hide the shutdown.
    r.xen.add_domain(8);
    tool.ok(MsgType::XS_WRITE, b"/eight\0");
    tool.ok(MsgType::XS_SET_PERMS, b"/eight\0n8\0");
    r.xen.set_state(8, DomainState::Gone);
    shutdown_then_marker(&mut tool);
    assert_eq!(watcher.next().payload, b"@releaseDomain\0r\0");
    assert_eq!(watcher.next().payload, b"/marker\0m\0");
    let (t, _) = tool.call(MsgType::XS_READ, b"/eight\0", &mut Vec::new());
    assert_eq!(t, MsgType::XS_ERROR, "the vanished domain's node went");
    // Still shut down: nothing new to say.
    shutdown_then_marker(&mut tool);
    assert_eq!(watcher.next().payload, b"/marker\0m\0");
    // Resumed, then shut down again: said again. The domain stayed introduced throughout.
    tool.ok(MsgType::XS_RESUME, b"2\0");
    r.xen.set_state(2, DomainState::Running);
    shutdown_then_marker(&mut tool);
    assert_eq!(watcher.next().payload, b"@releaseDomain\0r\0");
    assert_eq!(watcher.next().payload, b"/marker\0m\0");
    assert_eq!(tool.ok(MsgType::XS_IS_DOMAIN_INTRODUCED, b"2\0"), "T\0");
}

#[test]
fn a_guest_reconnecting_starts_without_its_watches() {
    let r = rig("reconnect");
    let mut tool = Tool::new(&r);
    let mut g = start_guest(&r, &mut tool, 5);
    g.ok(MsgType::XS_WATCH, b"data\0tok\0");
    g.next();
    g.ring.request_reconnect().unwrap();
    wait_until("CONNECTED", || g.ring.is_connected());
    tool.ok(MsgType::XS_WRITE, b"/local/domain/5/data\0x");
    // The watch is gone: the next message is the reply to this request, not an event.
    let mut events = Vec::new();
    g.call(MsgType::XS_READ, b"data\0", &mut events);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn introducing_a_domain_again_rebinds_and_resets_its_ring() {
    let r = rig("again");
    let mut tool = Tool::new(&r);
    let mut g = start_guest(&r, &mut tool, 5);
    g.ok(MsgType::XS_WATCH, b"data\0tok\0");
    g.next();
    let before = tool.rings().0;
    assert_eq!(tool.introduce(5, 51).0, MsgType::XS_INTRODUCE);
    let after = tool.rings().0;
    assert_ne!(before[1], after[1], "a new local port");
    assert_eq!(r.xen.bound_ports(), 3, "the old port was unbound");
    // The ring was reset under the guest: it starts again from zero.
    let page = g.ring.page().clone();
    assert_eq!(page.load(Field::ReqProd, Ordering::Acquire), 0);
    let mut g = Guest::new(&r.xen, 5, page);
    let mut events = Vec::new();
    tool.ok(MsgType::XS_WRITE, b"/local/domain/5/data\0x");
    assert_eq!(g.call(MsgType::XS_READ, b"data\0", &mut events).1, "x");
    assert!(events.is_empty(), "watches were dropped: {events:?}");
}

#[test]
fn a_flood_without_reading_is_served_in_order_once_read() {
    let cfg = ServerConfig {
        out_high: 4096,
        ..Default::default()
    };
    let r = rig_with("flood", cfg);
    let mut tool = Tool::new(&r);
    let mut g = start_guest(&r, &mut tool, 5);
    g.ok(
        MsgType::XS_WRITE,
        &[b"data\0".as_slice(), &[b'x'; 2000]].concat(),
    );
    // 200 reads of 2000 bytes each, none of the replies read meanwhile: the guest's queue
    // goes into the ring as the daemon consumes it.
    for i in 0..200u32 {
        g.ring
            .write_message(&Header::new(MsgType::XS_READ, 1000 + i, 0, 0), b"data\0")
            .unwrap();
    }
    // The daemon is not stuck meanwhile.
    tool.ok(MsgType::XS_WRITE, b"/other\0");
    for i in 0..200u32 {
        let m = g.next();
        assert_eq!(m.header.req_id, 1000 + i);
        assert_eq!(m.payload.len(), 2000);
    }
}

#[test]
fn idle_rings_are_not_looked_at() {
    let xen = FakeXen::new();
    let mut store = Store::new(Config::default());
    let mut host = HostRings::new(Arc::new(xen.clone()), &mut store, 1 << 16, false).unwrap();
    let dom0 = store.connect(0);
    let mut guests = Vec::new();
    for d in 1..=50u32 {
        let (page, port) = xen.add_domain(d);
        let p = format!("{d}\0{d}\0{port}\0");
        store
            .handle(
                dom0,
                &Header::new(MsgType::XS_INTRODUCE, d, 0, p.len() as u32),
                p.as_bytes(),
            )
            .unwrap();
        guests.push(Guest::new(&xen, d, page));
    }
    let turn = |host: &mut HostRings, store: &mut Store| {
        host.on_events();
        host.serve(store);
        for id in store.take_dirty() {
            host.mark_dirty(id);
        }
        host.deliver(store);
    };
    turn(&mut host, &mut store);
    assert_eq!(crate::xen::Hypervisor::mappings(&xen), 51);
    host.served.clear();
    guests[6]
        .ring
        .write_message(&Header::new(MsgType::XS_READ, 1, 0, 0), b"name\0")
        .unwrap();
    turn(&mut host, &mut store);
    assert_eq!(
        host.served,
        [7],
        "only the ring whose port fired was served"
    );
    assert_eq!(guests[6].next().header.req_id, 1);
    // Taking the reply notified the daemon (the guest made room): that ring again, no other.
    turn(&mut host, &mut store);
    assert!(host.served.iter().all(|&d| d == 7), "{:?}", host.served);
}

#[test]
fn a_guest_stops_being_read_at_its_outstanding_quota() {
    let xen = FakeXen::new();
    let mut cfg = Config::default();
    cfg.quota.outstanding = 5;
    let mut store = Store::new(cfg);
    let mut host = HostRings::new(Arc::new(xen.clone()), &mut store, 1 << 20, false).unwrap();
    let dom0 = store.connect(0);
    let (page, port) = xen.add_domain(3);
    let mut call = |ty: MsgType, p: &[u8]| {
        store
            .handle(dom0, &Header::new(ty, 1, 0, p.len() as u32), p)
            .unwrap()
    };
    call(
        MsgType::XS_WRITE,
        &[b"/big\0".as_slice(), &[b'v'; 3000]].concat(),
    );
    call(MsgType::XS_SET_PERMS, b"/big\0n0\0r3\0");
    call(MsgType::XS_INTRODUCE, format!("3\0\0{port}\0").as_bytes());
    let turn = |host: &mut HostRings, store: &mut Store| {
        host.on_events();
        host.serve(store);
        host.deliver(store);
    };
    // The ring is set up (and reset) before the guest uses it.
    turn(&mut host, &mut store);
    let mut guest = Guest::new(&xen, 3, page);
    // Thirty reads of 3000 bytes, their replies left unread.
    for i in 0..30u32 {
        guest
            .ring
            .write_message(&Header::new(MsgType::XS_READ, i, 0, 0), b"/big\0")
            .unwrap();
    }
    for _ in 0..10 {
        let _ = guest.ring.flush();
        turn(&mut host, &mut store);
    }
    let r = &host.rings[&3];
    assert_eq!(r.ring.unsent_replies(), 5, "stopped at the quota");
    let page = guest.ring.page();
    assert_ne!(
        page.load(Field::ReqProd, Ordering::Acquire),
        page.load(Field::ReqCons, Ordering::Acquire),
        "the rest waits unread in the ring"
    );
    // Once the guest reads, the rest is served.
    for i in 0..30u32 {
        let deadline = Instant::now() + LIMIT;
        let m = loop {
            let _ = guest.ring.flush();
            turn(&mut host, &mut store);
            if let Some(m) = guest.ring.try_read_message().unwrap() {
                break m;
            }
            assert!(Instant::now() < deadline, "reply {i} never came");
        };
        assert_eq!((m.header.req_id, m.payload.len()), (i, 3000));
    }
}

/// Notifies the daemon as Linux's xenbus driver does: after producing requests only if it saw
/// everything it had produced before already consumed, after consuming replies only if it
/// found the ring full. A daemon that relies on a notification per message loses messages.
fn linux_notifier(xen: &FakeXen, domid: u32, page: Arc<RingPage>) -> impl crate::ring::Notify {
    let xen = xen.clone();
    let last = Mutex::new((
        page.load(Field::ReqProd, Ordering::SeqCst),
        page.load(Field::RspCons, Ordering::SeqCst),
    ));
    move || {
        let mut last = last.lock();
        let (req_prod, rsp_cons) = (
            page.load(Field::ReqProd, Ordering::SeqCst),
            page.load(Field::RspCons, Ordering::SeqCst),
        );
        let mut notify = false;
        if req_prod != last.0 {
            let consumed_all = page
                .load(Field::ReqCons, Ordering::SeqCst)
                .wrapping_sub(last.0) as i32
                >= 0;
            notify |= consumed_all;
        }
        if rsp_cons != last.1 {
            let was_full = page
                .load(Field::RspProd, Ordering::SeqCst)
                .wrapping_sub(last.1)
                >= RING_SIZE;
            notify |= was_full;
        }
        *last = (req_prod, rsp_cons);
        if notify {
            xen.guest_notify(domid);
        }
    }
}

#[test]
fn a_guest_that_saves_notifications_as_linux_does_is_served() {
    let r = rig("linux");
    let mut tool = Tool::new(&r);
    let _ = start_guest(&r, &mut tool, 5);
    let page = r.xen.page(5);
    let mut g = Guest {
        ring: ClientRing::new(
            Arc::clone(&page),
            linux_notifier(&r.xen, 5, Arc::clone(&page)),
        ),
        req: 0,
    };
    g.ok(
        MsgType::XS_WRITE,
        &[b"data\0".as_slice(), &[b'v'; 700]].concat(),
    );
    // Bursts of pipelined requests, replies bigger than the ring, a writer changing a watched
    // node meanwhile: every reply must come without a notification per message.
    g.ok(MsgType::XS_WATCH, b"data\0w\0");
    let writer = {
        let path = r.path.clone();
        thread::spawn(move || {
            let mut s = UnixStream::connect(path).unwrap();
            for i in 0..200u32 {
                let p = format!(
                    "/local/domain/5/data\0{}",
                    "x".repeat(600 + (i as usize % 50))
                );
                s.write_all(&encode(MsgType::XS_WRITE, i, 0, p.as_bytes()))
                    .unwrap();
                let mut h = [0u8; HEADER_LEN];
                s.read_exact(&mut h).unwrap();
                let mut body = vec![0; Header::parse(&h).unwrap().len as usize];
                s.read_exact(&mut body).unwrap();
            }
        })
    };
    for round in 0..300u32 {
        let burst = 1 + round % 4;
        for k in 0..burst {
            g.ring
                .write_message(
                    &Header::new(MsgType::XS_READ, round * 10 + k, 0, 0),
                    b"data\0",
                )
                .unwrap();
        }
        let mut got = 0;
        while got < burst {
            let m = g.next();
            if m.header.msg_type() == Some(MsgType::XS_READ) {
                assert_eq!(m.header.req_id, round * 10 + got);
                got += 1;
            }
        }
    }
    writer.join().unwrap();
}

// ---------------------------------------------------------------- hostile guests

/// Writes raw bytes into the request ring as a guest kernel would, and publishes them.
fn inject(page: &RingPage, bytes: &[u8]) {
    let prod = page.load(Field::ReqProd, Ordering::Acquire);
    page.write_data(crate::ring::Ring::Req, prod, bytes);
    page.store(
        Field::ReqProd,
        prod.wrapping_add(bytes.len() as u32),
        Ordering::Release,
    );
}

/// One attack on domain 5's page: the ring fails with `code` in the page (or keeps working
/// when `code` is NONE), a bystander guest and the socket keep being served, the store holds
/// together, and a reconnection makes the attacker's ring usable again.
fn attack(tag: &str, corrupt: impl Fn(&RingPage), code: u32) {
    let r = rig(tag);
    let mut tool = Tool::new(&r);
    let mut attacker = start_guest(&r, &mut tool, 5);
    let mut bystander = start_guest(&r, &mut tool, 6);
    attacker.ok(MsgType::XS_WATCH, b"data\0tok\0");
    attacker.next();
    let page = attacker.ring.page().clone();
    corrupt(&page);
    r.xen.guest_notify(5);
    // Output for the attacker too (an event), so that its response ring is used.
    tool.ok(MsgType::XS_WRITE, b"/local/domain/5/data\0poke");
    if code != XENSTORE_ERROR_NONE {
        wait_until("the ring's error", || {
            page.load(Field::Error, Ordering::Acquire) == code
        });
    }
    bystander.ok(MsgType::XS_WRITE, b"data\0still served");
    assert_eq!(
        tool.ok(MsgType::XS_READ, b"/local/domain/6/data\0"),
        "still served"
    );
    assert_eq!(tool.control("check"), "OK\0");
    // The attacker's kernel asks for a fresh start and gets a working ring.
    let mut fresh = Guest::new(&r.xen, 5, Arc::clone(&page));
    fresh.ring.request_reconnect().unwrap();
    wait_until("CONNECTED", || {
        page.load(Field::Connection, Ordering::Acquire) == XENSTORE_CONNECTED
    });
    assert_eq!(
        page.load(Field::Error, Ordering::Acquire),
        XENSTORE_ERROR_NONE
    );
    fresh.ok(MsgType::XS_WRITE, b"data\0back");
    assert_eq!(tool.ok(MsgType::XS_READ, b"/local/domain/5/data\0"), "back");
}

#[test]
fn hostile_producer_far_ahead() {
    attack(
        "ahead",
        |p| {
            p.store(
                Field::ReqProd,
                p.load(Field::ReqCons, Ordering::Acquire) + RING_SIZE + 1,
                Ordering::Release,
            )
        },
        XENSTORE_ERROR_RINGIDX,
    );
}

#[test]
fn hostile_consumer_ahead_of_producer() {
    attack(
        "behind",
        |p| {
            p.store(
                Field::RspCons,
                p.load(Field::RspProd, Ordering::Acquire).wrapping_add(7),
                Ordering::Release,
            )
        },
        XENSTORE_ERROR_RINGIDX,
    );
}

#[test]
fn hostile_header_announcing_too_much() {
    attack(
        "toolong",
        |p| inject(p, &Header::new(MsgType::XS_WRITE, 1, 0, 5000).to_bytes()),
        XENSTORE_ERROR_PROTO,
    );
}

#[test]
fn hostile_unknown_type_is_answered_and_the_ring_goes_on() {
    attack(
        "unknown",
        |p| {
            let mut h = Header::new(MsgType::XS_READ, 9, 0, 0).to_bytes();
            h[0] = 200;
            inject(p, &h)
        },
        XENSTORE_ERROR_NONE,
    );
}

#[test]
fn hostile_half_written_request_then_silence() {
    attack(
        "half",
        |p| inject(p, &encode(MsgType::XS_WRITE, 1, 0, b"data\0abcdef")[..20]),
        XENSTORE_ERROR_NONE,
    );
}

#[test]
fn hostile_random_pages() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let r = rig("random");
    let mut tool = Tool::new(&r);
    let _attacker = start_guest(&r, &mut tool, 5);
    let mut bystander = start_guest(&r, &mut tool, 6);
    let page = r.xen.page(5);
    for round in 0..200 {
        // Random indexes and random bytes, then a kick.
        for f in [
            Field::ReqCons,
            Field::ReqProd,
            Field::RspCons,
            Field::RspProd,
        ] {
            if next() % 3 == 0 {
                page.store(f, next() as u32, Ordering::Release);
            }
        }
        let bytes: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
        inject(&page, &bytes);
        if next() % 5 == 0 {
            page.store(Field::Connection, next() as u32 % 3, Ordering::Release);
        }
        r.xen.guest_notify(5);
        if round % 20 == 0 {
            bystander.ok(MsgType::XS_WRITE, format!("data\0{round}").as_bytes());
        }
    }
    assert_eq!(tool.ok(MsgType::XS_READ, b"/local/domain/6/data\0"), "180");
    assert_eq!(tool.control("check"), "OK\0");
}

/// Live update in host mode, short of the exec (a test cannot replace its own binary): the
/// state the daemon writes, read back by a new server on the same hypervisor, carries on
/// every ring where it stopped: a guest's half-written request, replies and events it has
/// not taken from a full ring, the socket clients, with the ports bound once.
#[test]
fn live_update_carries_the_rings_on() {
    let mut r = rig("lu");
    let mut tool = Tool::new(&r);
    let mut g5 = start_guest(&r, &mut tool, 5);
    let mut g6 = start_guest(&r, &mut tool, 6);
    g6.ok(MsgType::XS_WATCH, b"data\0w6\0");
    assert_eq!(g6.next().payload, b"data\0w6\0");
    // Guest 6 stops reading: more events than its ring holds wait in the daemon.
    let n = 200;
    for i in 0..n {
        tool.ok(
            MsgType::XS_WRITE,
            format!("/local/domain/6/data\0{i:0>40}").as_bytes(),
        );
    }
    // Guest 5 has written half a request when the update happens.
    let page5 = r.xen.page(5);
    let req = encode(MsgType::XS_WRITE, 77, 0, b"data\0across the update");
    inject(&page5, &req[..20]);
    r.xen.guest_notify(5);
    let ports = r.xen.bound_ports();
    let path = r.path.clone();
    let xen = r.xen.clone();
    let mut old = r.stop();
    let (state, _fds) = old.write_state(None).unwrap();
    // The new server takes over the descriptors the old one holds: it must not close them.
    std::mem::forget(old);
    let state = crate::store::State::parse(&state).unwrap();
    let cfg = Config {
        live_update: true,
        ..Config::default()
    };
    let hv = xen.clone();
    let restored = SocketServer::restore_with(
        &state,
        cfg,
        ServerConfig::default(),
        || unreachable!("the listener is handed over"),
        &|_| Ok(Arc::new(hv.clone())),
    )
    .unwrap();
    assert_eq!(restored.dropped, 0);
    assert!(restored.listener_kept);
    let r2 = Rig::run(xen, path, restored.server);
    // The rest of guest 5's request, and its reply.
    inject(&page5, &req[20..]);
    r2.xen.guest_notify(5);
    let m = g5.next();
    assert_eq!((m.header.req_id, m.payload.as_slice()), (77, &b"OK\0"[..]));
    // Guest 6 reads again: every event, in order, none lost.
    let mut seen = 0;
    while seen < n {
        let m = g6.next();
        let text = String::from_utf8_lossy(&m.payload).into_owned();
        assert_eq!(text, "data\0w6\0", "event {seen}");
        seen += 1;
    }
    // The socket client goes on on the same connection, and sees guest 5's write.
    assert_eq!(
        tool.ok(MsgType::XS_READ, b"/local/domain/5/data\0"),
        "across the update"
    );
    assert_eq!(tool.control("check"), "OK\0");
    let (rings, maps) = tool.rings();
    assert_eq!(rings.len(), 3, "{rings:?}");
    assert_eq!(
        r2.xen.bound_ports(),
        ports,
        "nothing bound twice, nothing lost"
    );
    // Three mappings of the new server (the old one's were kept alive by `forget`).
    assert!(maps >= 3);
    // Watches still fire for the guest.
    let mut events = Vec::new();
    let (t, _) = g6.call(MsgType::XS_WRITE, b"data\0after", &mut events);
    assert_eq!(
        (t, events),
        (MsgType::XS_WRITE, vec!["data\0w6\0".to_string()])
    );
    drop(r);
    drop(r2);
}
/// The advisories whose attack needs this loop (the rest: tests/advisories.rs).
mod advisories;
