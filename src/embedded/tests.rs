//! The embedded store through its handles: sharing, watches, guests on their rings, release.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::delivery::Wakeups;
use super::mailbox::Mailbox;
use super::world::World;
use super::Embedded;
use crate::client::perms::{PERM_NONE, PERM_READ};
use crate::client::{Errno, Handle, Permission};
use crate::ring::Field;
use crate::store::Config;
use crate::wire::{encode, MsgType, HEADER_LEN};

const EACCES: Errno = Errno(libc::EACCES);
const ENOENT: Errno = Errno(libc::ENOENT);
const EBADF: Errno = Errno(libc::EBADF);

fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// The next event of `h`, waiting up to 5 s on its pipe: (path, token).
fn next_event(h: &Handle) -> Option<(String, String)> {
    let fd = h.fileno().unwrap();
    for _ in 0..2 {
        if let Some(ev) = h.check_watch().unwrap() {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            return Some((s(ev.path()), s(ev.token())));
        }
        readable(fd, 5000);
    }
    None
}

/// The next event of `h` if one is queued now, without waiting.
fn check(h: &Handle) -> Option<(String, String)> {
    let ev = h.check_watch().unwrap()?;
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some((s(ev.path()), s(ev.token())))
}

fn ev(path: &str, token: &str) -> Option<(String, String)> {
    Some((path.to_string(), token.to_string()))
}

/// A store with domain `domid` introduced and its home owned by it, as a toolstack does.
fn with_guest(domid: u32) -> (Arc<Embedded>, Handle) {
    let e = Embedded::new(Config::default());
    let dom0 = e.open(0).unwrap();
    dom0.introduce_domain(domid, 0x1234, 5).unwrap();
    let home = format!("/local/domain/{domid}");
    dom0.mkdir(0, home.as_bytes()).unwrap();
    dom0.set_permissions(
        0,
        home.as_bytes(),
        &[Permission {
            id: domid,
            perms: PERM_NONE,
        }],
    )
    .unwrap();
    (e, dom0)
}

#[test]
fn dom0_handles_share_one_store_and_are_privileged() {
    let e = Embedded::new(Config::default());
    let a = e.open(0).unwrap();
    let b = e.open(0).unwrap();
    a.write(0, b"/x/y", b"hello").unwrap();
    assert_eq!(b.read(0, b"/x/y").unwrap(), b"hello");
    assert_eq!(b.directory(0, b"/x").unwrap(), vec![b"y".to_vec()]);
    // Privileged: reading a node no one was granted.
    a.set_permissions(
        0,
        b"/x/y",
        &[Permission {
            id: 3,
            perms: PERM_NONE,
        }],
    )
    .unwrap();
    assert_eq!(b.read(0, b"/x/y").unwrap(), b"hello");
    // Separate stores are separate.
    let other = Embedded::new(Config::default()).open(0).unwrap();
    assert_eq!(other.read(0, b"/x/y"), Err(ENOENT));
}

#[test]
fn watches_fire_across_handles_through_the_pipe() {
    let e = Embedded::new(Config::default());
    let watcher = e.open(0).unwrap();
    let writer = e.open(0).unwrap();
    watcher.watch(b"/w", b"tok").unwrap();
    assert_eq!(next_event(&watcher), ev("/w", "tok"), "the initial event");
    assert!(!readable(watcher.fileno().unwrap(), 0));
    for i in 0..100 {
        writer.write(0, b"/w/n", i.to_string().as_bytes()).unwrap();
        assert_eq!(next_event(&watcher), ev("/w/n", "tok"));
    }
    assert_eq!(watcher.check_watch().unwrap(), None);
    // A blocking reader in another thread is woken too.
    let watcher = Arc::new(watcher);
    let w2 = Arc::clone(&watcher);
    let t = std::thread::spawn(move || w2.read_watch().map(|e| e.path().to_vec()));
    std::thread::sleep(Duration::from_millis(20));
    writer.rm(0, b"/w").unwrap();
    assert_eq!(t.join().unwrap().unwrap(), b"/w");
}

/// Events go straight into the watching handle's queue: its pipe is readable as soon as the
/// request that fired them returns, whichever handle made it, with no watch thread involved.
#[test]
fn events_are_pollable_when_the_request_returns() {
    let e = Embedded::new(Config::default());
    let watcher = e.open(0).unwrap();
    let writer = e.open(0).unwrap();
    let fd = watcher.fileno().unwrap();
    // Watching (which starts the watch thread) and then its initial event.
    watcher.watch(b"/d", b"tok").unwrap();
    assert!(readable(fd, 0), "the initial event, with the watch's reply");
    assert_eq!(check(&watcher), ev("/d", "tok"));
    assert!(!readable(fd, 0));
    for i in 0..50 {
        let (by, path) = if i % 2 == 0 {
            (&writer, "/d/x")
        } else {
            (&watcher, "/d/y")
        };
        by.write(0, path.as_bytes(), b"v").unwrap();
        assert!(readable(fd, 0), "round {i}: pollable at once");
        assert_eq!(check(&watcher), ev(path, "tok"));
        assert!(!readable(fd, 0), "round {i}: drained with the last event");
    }
}

#[test]
fn transactions_work_in_process() {
    let e = Embedded::new(Config::default());
    let a = e.open(0).unwrap();
    let b = e.open(0).unwrap();
    let t = a.transaction_start().unwrap();
    a.write(t, b"/t/v", b"1").unwrap();
    assert_eq!(b.read(0, b"/t/v"), Err(ENOENT));
    a.transaction_end(t, false).unwrap();
    assert_eq!(b.read(0, b"/t/v").unwrap(), b"1");
}

/// Without a handle's watch queue to take its events (a bare mailbox), the reply is left for
/// the requester without any wake-up, and an event for another handle wakes that handle's
/// watch thread (its eventfd), once the store lock is released.
#[test]
fn only_other_handles_are_woken() {
    let mut w = World::new(Config::default());
    let mine = Arc::new(Mailbox::new().unwrap());
    let theirs = Arc::new(Mailbox::new().unwrap());
    let me = w.connect_dom0(Arc::clone(&mine));
    let them = w.connect_dom0(Arc::clone(&theirs));
    w.request(them, &encode(MsgType::XS_WATCH, 1, 0, b"/p\0t\0"))
        .unwrap();
    assert!(theirs.take(false).unwrap().is_some() && theirs.take(false).unwrap().is_some());
    assert!(
        !readable(theirs.fd(), 0),
        "their own reply and initial event rang nothing"
    );
    let mut wake = Wakeups::new();
    w.take_wakeups(&mut wake);
    wake.run();
    assert!(!readable(theirs.fd(), 0), "nothing to wake");
    w.request(me, &encode(MsgType::XS_WRITE, 7, 0, b"/p\0v"))
        .unwrap();
    assert!(!readable(mine.fd(), 0));
    let reply = mine.take(false).unwrap().unwrap();
    assert_eq!(
        (reply.header.req_id, reply.payload.as_slice()),
        (7, &b"OK\0"[..])
    );
    assert!(!readable(theirs.fd(), 0), "not under the store lock");
    w.take_wakeups(&mut wake);
    wake.run();
    assert!(readable(theirs.fd(), 0), "the watcher was woken");
    assert!(!readable(mine.fd(), 0));
    assert_eq!(theirs.take(false).unwrap().unwrap().payload, b"/p\0t\0");
    w.disconnect(them);
    assert_eq!(
        w.request(them, &encode(MsgType::XS_READ, 1, 0, b"/p\0")),
        Err(EBADF)
    );
}

#[test]
fn guest_paths_are_relative_to_its_home_and_cross_its_ring() {
    let (e, dom0) = with_guest(3);
    assert_eq!(e.domain_ring(3), Some((0x1234, 5)));
    let g = e.open_domain(3, 0).unwrap();
    g.write(0, b"data/x", b"from guest").unwrap();
    assert_eq!(
        dom0.read(0, b"/local/domain/3/data/x").unwrap(),
        b"from guest"
    );
    assert_eq!(g.read(0, b"/local/domain/3/data/x").unwrap(), b"from guest");
    assert_eq!(g.get_domain_path(3).unwrap(), b"/local/domain/3\0".to_vec());
    let perms = g.get_permissions(0, b"data/x").unwrap();
    assert_eq!(perms[0].id, 3, "the guest owns what it creates");

    // Every byte went through the page: the indexes count them.
    let page = e.world.lock().ring_page(3).unwrap();
    let (req0, rsp0) = (
        page.load(Field::ReqProd, Ordering::Acquire),
        page.load(Field::RspProd, Ordering::Acquire),
    );
    g.read(0, b"data/x").unwrap();
    let req1 = page.load(Field::ReqProd, Ordering::Acquire);
    let rsp1 = page.load(Field::RspProd, Ordering::Acquire);
    assert_eq!(
        req1.wrapping_sub(req0) as usize,
        HEADER_LEN + b"data/x\0".len()
    );
    assert_eq!(
        rsp1.wrapping_sub(rsp0) as usize,
        HEADER_LEN + b"from guest".len()
    );
    assert_eq!(
        page.load(Field::ReqCons, Ordering::Acquire),
        req1,
        "the store consumed it all"
    );
    assert_eq!(
        page.load(Field::RspCons, Ordering::Acquire),
        rsp1,
        "the guest consumed it all"
    );
}

#[test]
fn messages_larger_than_the_ring_pass() {
    let (e, dom0) = with_guest(4);
    let g = e.open_domain(4, 0).unwrap();
    // A guest's node is bounded by its node-size quota; domain 0's are not.
    let big: Vec<u8> = (0..1900u32).map(|i| b'a' + (i % 26) as u8).collect();
    g.write(0, b"big", &big).unwrap();
    assert_eq!(g.read(0, b"big").unwrap(), big);
    assert_eq!(dom0.read(0, b"/local/domain/4/big").unwrap(), big);
    let huge: Vec<u8> = (0..4000u32).map(|i| b'A' + (i % 26) as u8).collect();
    dom0.write(0, b"/local/domain/4/huge", &huge).unwrap();
    assert_eq!(g.read(0, b"huge").unwrap(), huge);
}

#[test]
fn guests_are_held_to_permissions() {
    let (e, dom0) = with_guest(5);
    dom0.write(0, b"/secret", b"s").unwrap();
    dom0.mkdir(0, b"/local/domain/6").unwrap();
    let g = e.open_domain(5, 0).unwrap();
    assert_eq!(g.read(0, b"/secret"), Err(EACCES));
    assert_eq!(g.write(0, b"/secret", b"x"), Err(EACCES));
    assert_eq!(g.write(0, b"/local/domain/6/x", b"x"), Err(EACCES));
    assert_eq!(g.read(0, b"/local/domain/6"), Err(EACCES));
    assert_eq!(
        g.introduce_domain(9, 1, 1),
        Err(EACCES),
        "only domain 0 introduces"
    );
    // A grant opens exactly what it names.
    dom0.set_permissions(
        0,
        b"/secret",
        &[
            Permission {
                id: 0,
                perms: PERM_NONE,
            },
            Permission {
                id: 5,
                perms: PERM_READ,
            },
        ],
    )
    .unwrap();
    assert_eq!(g.read(0, b"/secret").unwrap(), b"s");
    assert_eq!(g.write(0, b"/secret", b"x"), Err(EACCES));
    assert_eq!(dom0.read(0, b"/secret").unwrap(), b"s");
}

#[test]
fn guest_quota_stops_it_and_the_store_stays_intact() {
    let (e, dom0) = with_guest(8);
    let g = e.open_domain(8, 0).unwrap();
    let mut written = 0;
    let err = loop {
        match g.write(0, format!("n{written}").as_bytes(), b"v") {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 100_000, "no quota stopped the guest");
    };
    assert_eq!(err, Errno(libc::ENOSPC));
    assert!(written > 0);
    assert_eq!(g.read(0, b"n0").unwrap(), b"v", "the guest still works");
    assert_eq!(dom0.control(b"check", b"").unwrap(), b"OK\0");
}

#[test]
fn guest_watches_are_reported_relative() {
    let (e, dom0) = with_guest(10);
    let g = e.open_domain(10, 0).unwrap();
    g.watch(b"device", b"rel").unwrap();
    g.watch(b"/local/domain/10/device", b"abs").unwrap();
    let mut initial = vec![next_event(&g), next_event(&g)];
    initial.sort();
    assert_eq!(
        initial,
        vec![ev("/local/domain/10/device", "abs"), ev("device", "rel")]
    );
    // Fired by domain 0's write: the event crosses the guest's ring from dom0's thread.
    dom0.write(0, b"/local/domain/10/device/state", b"1")
        .unwrap();
    let mut got = vec![next_event(&g), next_event(&g)];
    got.sort();
    assert_eq!(
        got,
        vec![
            ev("/local/domain/10/device/state", "abs"),
            ev("device/state", "rel")
        ]
    );
    // Another handle of the same domain fires it too.
    let g2 = e.open_domain(10, 0).unwrap();
    g2.write(0, b"device/state", b"2").unwrap();
    let mut got = vec![next_event(&g), next_event(&g)];
    got.sort();
    assert_eq!(
        got,
        vec![
            ev("/local/domain/10/device/state", "abs"),
            ev("device/state", "rel")
        ]
    );
    assert_eq!(g2.check_watch().unwrap(), None, "watches are per handle");
}

#[test]
fn only_introduced_domains_open() {
    let e = Embedded::new(Config::default());
    assert_eq!(e.open_domain(3, 0).err(), Some(ENOENT));
    assert_eq!(e.open_domain(0, 0).err(), Some(Errno(libc::EINVAL)));
    let dom0 = e.open(0).unwrap();
    dom0.introduce_domain(3, 1, 1).unwrap();
    assert!(e.open_domain(3, 0).is_ok());
    assert_eq!(e.open_domain(4, 0).err(), Some(ENOENT));
}

#[test]
fn release_fails_the_guests_handles_and_wakes_their_waiters() {
    let (e, dom0) = with_guest(11);
    dom0.watch(b"@releaseDomain", b"rel").unwrap();
    assert_eq!(next_event(&dom0), ev("@releaseDomain", "rel"));
    let g = Arc::new(e.open_domain(11, 0).unwrap());
    g.watch(b"x", b"t").unwrap();
    assert_eq!(next_event(&g), ev("x", "t"));
    let fd = g.fileno().unwrap();
    let g2 = Arc::clone(&g);
    let blocked = std::thread::spawn(move || g2.read_watch().map(drop));
    std::thread::sleep(Duration::from_millis(20));
    dom0.release_domain(11).unwrap();
    assert_eq!(next_event(&dom0), ev("@releaseDomain", "rel"));
    assert_eq!(
        blocked.join().unwrap(),
        Err(Errno(libc::EINVAL)),
        "the waiter is woken"
    );
    assert!(readable(fd, 5000), "the pipe tells pollers");
    assert_eq!(g.read(0, b"x"), Err(EBADF));
    assert!(g.is_dead());
    assert_eq!(e.domain_ring(11), None);
    assert_eq!(e.open_domain(11, 0).err(), Some(ENOENT));
    // Introduced again, the domain gets a new ring and new handles work.
    dom0.introduce_domain(11, 9, 9).unwrap();
    assert_eq!(e.domain_ring(11), Some((9, 9)));
    // Its home went with the release (it owned it): the toolstack makes it again.
    dom0.mkdir(0, b"/local/domain/11").unwrap();
    dom0.set_permissions(
        0,
        b"/local/domain/11",
        &[Permission {
            id: 11,
            perms: PERM_NONE,
        }],
    )
    .unwrap();
    let g3 = e.open_domain(11, 0).unwrap();
    g3.write(0, b"again", b"1").unwrap();
    assert_eq!(g.read(0, b"again"), Err(EBADF), "old handles stay dead");
}

#[test]
fn closing_a_guest_handle_gives_back_its_watches() {
    let (e, _dom0) = with_guest(12);
    let quota = Config::default().quota.watches;
    for _ in 0..3 {
        let g = e.open_domain(12, 0).unwrap();
        for i in 0..quota {
            g.watch(format!("w{i}").as_bytes(), b"t").unwrap();
        }
        assert_eq!(g.watch(b"one-more", b"t"), Err(Errno(libc::E2BIG)));
    }
}

#[test]
fn many_threads_share_guest_and_dom0_handles() {
    let (e, dom0) = with_guest(13);
    let g = Arc::new(e.open_domain(13, 0).unwrap());
    let dom0 = Arc::new(dom0);
    let mut threads = Vec::new();
    for t in 0..4 {
        let (g, dom0) = (Arc::clone(&g), Arc::clone(&dom0));
        threads.push(std::thread::spawn(move || {
            for i in 0..200 {
                let p = format!("t{t}/n{i}");
                g.write(0, p.as_bytes(), p.as_bytes()).unwrap();
                let abs = format!("/local/domain/13/{p}");
                assert_eq!(dom0.read(0, abs.as_bytes()).unwrap(), p.as_bytes());
                assert_eq!(g.read(0, p.as_bytes()).unwrap(), p.as_bytes());
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(dom0.control(b"check", b"").unwrap(), b"OK\0");
}

#[test]
fn a_corrupted_ring_fails_its_handles_and_is_replaced() {
    let (e, dom0) = with_guest(14);
    let g = e.open_domain(14, 0).unwrap();
    g.write(0, b"x", b"1").unwrap();
    // Scribble on the page as a misbehaving peer would: the store's end sees a producer
    // index far ahead of its consumer.
    let page = e.world.lock().ring_page(14).unwrap();
    page.store(Field::ReqProd, 0xdead_0000, Ordering::Release);
    assert_eq!(g.read(0, b"x"), Err(Errno(libc::EIO)));
    assert!(g.is_dead());
    assert_eq!(g.read(0, b"x"), Err(EBADF));
    // The domain stays introduced; a fresh page serves new handles.
    let fresh = e.world.lock().ring_page(14).unwrap();
    assert!(!Arc::ptr_eq(&page, &fresh));
    let g2 = e.open_domain(14, 0).unwrap();
    assert_eq!(g2.read(0, b"x").unwrap(), b"1");
    assert_eq!(dom0.read(0, b"/local/domain/14/x").unwrap(), b"1");
}

/// A guest kernel that writes part of a header and falls silent: the next request of a handle
/// is framed behind those bytes. It must fail (and the domain's handles with it) instead of
/// leaving its handle waiting for ever; domain 0 is not disturbed.
#[test]
fn a_half_written_request_fails_the_ring_instead_of_hanging() {
    let (e, dom0) = with_guest(15);
    let g = e.open_domain(15, 0).unwrap();
    g.write(0, b"x", b"1").unwrap();
    let page = e.domain_page(15).unwrap();
    let prod = page.load(Field::ReqProd, Ordering::Acquire);
    page.store(Field::ReqProd, prod.wrapping_add(7), Ordering::Release);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..3 {
            let _ = tx.send(g.read(0, b"x"));
        }
    });
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            rx.recv_timeout(Duration::from_secs(5))
                .expect("a guest request hung"),
        );
    }
    assert!(got[0].is_err(), "{got:?}");
    assert_eq!(&got[1..], &[Err(EBADF), Err(EBADF)]);
    assert_eq!(dom0.read(0, b"/local/domain/15/x").unwrap(), b"1");
    assert_eq!(e.open_domain(15, 0).unwrap().read(0, b"x").unwrap(), b"1");
}

/// Bytes nobody's handle wrote, announced by the guest kernel's notification: the ring is
/// given up at once, before any handle uses it.
#[test]
fn a_notified_request_from_no_handle_fails_the_ring() {
    let (e, _dom0) = with_guest(16);
    let g = e.open_domain(16, 0).unwrap();
    let page = e.domain_page(16).unwrap();
    let msg = encode(MsgType::XS_READ, 1, 0, b"x\0");
    let prod = page.load(Field::ReqProd, Ordering::Acquire);
    page.write_data(crate::ring::Ring::Req, prod, &msg);
    page.store(
        Field::ReqProd,
        prod.wrapping_add(msg.len() as u32),
        Ordering::Release,
    );
    e.notify_domain(16).unwrap();
    assert_eq!(g.read(0, b"x"), Err(EBADF));
    assert!(
        !Arc::ptr_eq(&page, &e.domain_page(16).unwrap()),
        "a fresh page"
    );
    assert_eq!(e.notify_domain(17), Err(ENOENT));
}

/// A message in `rsp` that the store never wrote (the guest kernel forged it): the ring is
/// given up rather than handing it to some handle.
#[test]
fn a_message_the_store_never_wrote_fails_the_ring() {
    let (e, _dom0) = with_guest(18);
    let g = e.open_domain(18, 0).unwrap();
    g.write(0, b"x", b"1").unwrap();
    let page = e.domain_page(18).unwrap();
    let forged = encode(MsgType::XS_READ, 77, 0, b"forged");
    let prod = page.load(Field::RspProd, Ordering::Acquire);
    page.write_data(crate::ring::Ring::Rsp, prod, &forged);
    page.store(
        Field::RspProd,
        prod.wrapping_add(forged.len() as u32),
        Ordering::Release,
    );
    e.notify_domain(18).unwrap();
    assert_eq!(g.read(0, b"x"), Err(EBADF));
    assert!(!Arc::ptr_eq(&page, &e.domain_page(18).unwrap()));
    assert_eq!(e.open_domain(18, 0).unwrap().read(0, b"x").unwrap(), b"1");
}
