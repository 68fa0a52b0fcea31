//! Watches: initial event, matching, removals, relative paths, duplicates, depth, special
//! watches, permission filtering and the output bound.

use super::{ev, z, H};
use crate::store::Config;
use crate::wire::MsgType as T;

#[test]
fn initial_event_follows_the_ok() {
    let mut h = H::new();
    let c = h.conn(0);
    let msgs = h.raw(c, T::XS_WATCH, 0, &z(&["/nowhere", "tok"]));
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].ty, T::XS_WATCH as u32);
    assert_eq!(msgs[0].payload, b"OK\0");
    assert_eq!(msgs[1].ty, T::XS_WATCH_EVENT as u32);
    assert_eq!(msgs[1].payload, b"/nowhere\0tok\0");
    assert_eq!((msgs[1].req_id, msgs[1].tx_id), (0, 0));
}

#[test]
fn events_on_write_mkdir_setperms_for_node_and_ancestors() {
    let mut h = H::new();
    let w = h.conn(0);
    let c = h.conn(0);
    h.watch(w, "/a", "A");
    h.watch(w, "/a/b", "AB");
    h.watch(w, "/other", "O");
    h.events(w);
    h.write(c, "/a/b/c", "v");
    // Registration order within the connection.
    assert_eq!(h.events(w), [ev("/a/b/c", "A"), ev("/a/b/c", "AB")]);
    assert_eq!(h.ok(c, T::XS_MKDIR, 0, &z(&["/a/m"])), "OK\0");
    assert_eq!(h.events(w), [ev("/a/m", "A")]);
    // MKDIR of an existing node changes nothing and fires nothing.
    h.ok(c, T::XS_MKDIR, 0, &z(&["/a/m"]));
    assert!(h.events(w).is_empty());
    h.set_perms(c, "/a/b", &["n0", "r3"]).unwrap();
    assert_eq!(h.events(w), [ev("/a/b", "A"), ev("/a/b", "AB")]);
    // A write elsewhere is not seen.
    h.write(c, "/elsewhere", "");
    assert!(h.events(w).is_empty());
}

#[test]
fn writer_sees_its_own_event_before_its_reply() {
    let mut h = H::new();
    let c = h.conn(0);
    h.watch(c, "/x", "t");
    h.events(c);
    let msgs = h.raw(c, T::XS_WRITE, 0, b"/x/y\0v");
    let kinds: Vec<u32> = msgs.iter().map(|m| m.ty).collect();
    assert_eq!(kinds, [T::XS_WATCH_EVENT as u32, T::XS_WRITE as u32]);
}

#[test]
fn removal_events() {
    let mut h = H::new();
    let w = h.conn(0);
    let c = h.conn(0);
    h.write(c, "/r/a/b", "");
    h.write(c, "/r/a/c", "");
    h.watch(w, "/", "root");
    h.watch(w, "/r/a/b", "deep");
    h.watch(w, "/r/a/missing", "never");
    h.events(w);
    h.ok(c, T::XS_RM, 0, &z(&["/r/a"]));
    let got = h.events(w);
    // The watcher of a removed child sees its own path; ancestors see the removed top.
    assert!(got.contains(&ev("/r/a/b", "deep")), "{got:?}");
    assert!(got.contains(&ev("/r/a", "root")), "{got:?}");
    assert_eq!(
        got.iter().filter(|e| e.1 == "root").count(),
        1,
        "one event for the subtree watcher"
    );
    assert!(
        !got.iter().any(|e| e.1 == "never"),
        "no node there, no event (as in C)"
    );
    // Removing a node that does not exist fires nothing.
    h.ok(c, T::XS_RM, 0, &z(&["/r/a"]));
    assert!(h.events(w).is_empty());
}

#[test]
fn relative_watches_report_relative_paths() {
    let mut h = H::new();
    let d0 = h.conn(0);
    h.write(d0, "/local/domain/4/dev", "");
    h.set_perms(d0, "/local/domain/4", &["n4"]).unwrap();
    h.set_perms(d0, "/local/domain/4/dev", &["n4"]).unwrap();
    let d = h.conn(4);
    h.watch(d, "dev", "rel");
    h.watch(d, "/local/domain/4/dev", "abs");
    assert_eq!(
        h.events(d),
        [ev("dev", "rel"), ev("/local/domain/4/dev", "abs")]
    );
    h.write(d0, "/local/domain/4/dev/x", "1");
    assert_eq!(
        h.events(d),
        [ev("dev/x", "rel"), ev("/local/domain/4/dev/x", "abs")]
    );
    // A relative and an absolute spelling of the same watch are the same watch.
    assert_eq!(
        h.err(d, T::XS_WATCH, 0, &z(&["/local/domain/4/dev", "rel"])),
        "EEXIST"
    );
    assert_eq!(
        h.ok(d, T::XS_UNWATCH, 0, &z(&["/local/domain/4/dev", "rel"])),
        "OK\0"
    );
    h.check();
}

#[test]
fn duplicates_unwatch_and_reset() {
    let mut h = H::new();
    let c = h.conn(0);
    h.watch(c, "/a", "t");
    assert_eq!(h.err(c, T::XS_WATCH, 0, &z(&["/a", "t"])), "EEXIST");
    h.watch(c, "/a", "t2");
    assert_eq!(h.err(c, T::XS_UNWATCH, 0, &z(&["/a", "nope"])), "ENOENT");
    assert_eq!(h.err(c, T::XS_UNWATCH, 0, &z(&["/b", "t"])), "ENOENT");
    assert_eq!(h.ok(c, T::XS_UNWATCH, 0, &z(&["/a", "t"])), "OK\0");
    h.events(c);
    h.write(c, "/a", "");
    assert_eq!(h.events(c), [ev("/a", "t2")]);
    // The same (path, token) on another connection is independent.
    let o = h.conn(0);
    h.watch(o, "/a", "t2");
    assert_eq!(h.ok(c, T::XS_RESET_WATCHES, 0, b""), "OK\0");
    h.events(o);
    h.write(c, "/a", "x");
    assert!(h.events(c).is_empty());
    assert_eq!(h.events(o), [ev("/a", "t2")]);
    assert_eq!(h.err(c, T::XS_WATCH, 0, &z(&["/a"])), "EINVAL");
    assert_eq!(h.err(c, T::XS_WATCH, 0, &z(&["/a/", "t"])), "EINVAL");
    h.check();
}

#[test]
fn depth_parameter() {
    let mut h = H::new();
    let w = h.conn(0);
    let c = h.conn(0);
    h.write(c, "/d", "");
    assert_eq!(h.ok(w, T::XS_WATCH, 0, &z(&["/d", "zero", "0"])), "OK\0");
    assert_eq!(h.ok(w, T::XS_WATCH, 0, &z(&["/d", "one", "1"])), "OK\0");
    h.events(w);
    h.write(c, "/d", "v");
    assert_eq!(h.events(w), [ev("/d", "zero"), ev("/d", "one")]);
    h.write(c, "/d/x", "");
    assert_eq!(h.events(w), [ev("/d/x", "one")]);
    h.write(c, "/d/x/y", "");
    assert!(h.events(w).is_empty());
    assert_eq!(h.err(w, T::XS_WATCH, 0, &z(&["/d", "bad", "-1"])), "EINVAL");
    assert_eq!(h.err(w, T::XS_WATCH, 0, &z(&["/d", "bad", "x"])), "EINVAL");
    // Without the feature, a third argument is refused.
    let mut h = H::with(Config {
        features: 0,
        ..Config::default()
    });
    let w = h.conn(0);
    assert_eq!(h.err(w, T::XS_WATCH, 0, &z(&["/d", "t", "1"])), "EINVAL");
}

#[test]
fn special_watches() {
    let mut h = H::new();
    let w = h.conn(0);
    let tool = h.conn(0);
    h.watch(w, "@introduceDomain", "intro");
    h.watch(w, "@releaseDomain", "rel");
    assert_eq!(
        h.ok(w, T::XS_WATCH, 0, &z(&["@releaseDomain", "reldepth", "1"])),
        "OK\0"
    );
    h.watch(w, "@releaseDomain/7", "rel7");
    h.events(w);
    assert_eq!(
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&["7", "1234", "3"])),
        "OK\0"
    );
    assert_eq!(h.events(w), [ev("@introduceDomain", "intro")]);
    assert_eq!(
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&["8", "1234", "3"])),
        "OK\0"
    );
    h.events(w);
    // Re-introducing does not fire again.
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["7", "1234", "4"]));
    assert!(h.events(w).is_empty());
    assert_eq!(h.ok(tool, T::XS_RELEASE, 0, &z(&["7"])), "OK\0");
    assert_eq!(
        h.events(w),
        [
            ev("@releaseDomain", "rel"),
            ev("@releaseDomain/7", "reldepth"),
            ev("@releaseDomain/7", "rel7")
        ]
    );
    h.ok(tool, T::XS_RELEASE, 0, &z(&["8"]));
    assert_eq!(
        h.events(w),
        [
            ev("@releaseDomain", "rel"),
            ev("@releaseDomain/8", "reldepth")
        ]
    );
    // Ordinary writes never reach special watches, and a watch on "/" never sees specials.
    let r = h.conn(0);
    h.watch(r, "/", "root");
    h.events(r);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["9", "1", "1"]));
    assert!(h.events(r).is_empty());
    assert_eq!(h.err(w, T::XS_WRITE, 0, &z(&["@releaseDomain"])), "EINVAL");
}

#[test]
fn special_events_need_read_access_to_the_special_node() {
    let mut h = H::new();
    let tool = h.conn(0);
    let guest = h.conn(5);
    h.watch(guest, "@releaseDomain", "g");
    assert_eq!(
        h.events(guest),
        [ev("@releaseDomain", "g")],
        "the initial event is unconditional"
    );
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["6", "1", "1"]));
    h.ok(tool, T::XS_RELEASE, 0, &z(&["6"]));
    assert!(h.events(guest).is_empty());
    h.set_perms(tool, "@releaseDomain", &["n0", "r5"]).unwrap();
    h.events(guest);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["6", "1", "1"]));
    h.ok(tool, T::XS_RELEASE, 0, &z(&["6"]));
    assert_eq!(h.events(guest), [ev("@releaseDomain", "g")]);
}

#[test]
fn events_only_for_readable_nodes() {
    let mut h = H::new();
    let tool = h.conn(0);
    let guest = h.conn(3);
    h.write(tool, "/p/secret", "");
    h.write(tool, "/p/open", "");
    h.set_perms(tool, "/p", &["n0"]).unwrap();
    h.set_perms(tool, "/p/secret", &["n0"]).unwrap();
    h.set_perms(tool, "/p/open", &["n0", "r3"]).unwrap();
    h.watch(guest, "/p", "g");
    h.events(guest);
    h.write(tool, "/p/secret", "x");
    assert!(
        h.events(guest).is_empty(),
        "neither node nor parent readable"
    );
    h.write(tool, "/p/open", "x");
    assert_eq!(h.events(guest), [ev("/p/open", "g")]);
    // A child of a readable node is reported even if the child itself is not readable.
    h.write(tool, "/p/open/kid", "");
    h.set_perms(tool, "/p/open/kid", &["n0"]).unwrap();
    h.events(guest);
    h.write(tool, "/p/open/kid", "y");
    assert_eq!(h.events(guest), [ev("/p/open/kid", "g")]);
    // Losing read access through SET_PERMS is still reported (old permissions count).
    h.set_perms(tool, "/p/open", &["n0"]).unwrap();
    assert_eq!(h.events(guest), [ev("/p/open", "g")]);
    // Removal of a readable node is reported.
    h.write(tool, "/p/r", "");
    h.set_perms(tool, "/p/r", &["n0", "r3"]).unwrap();
    h.events(guest);
    h.ok(tool, T::XS_RM, 0, &z(&["/p/r"]));
    assert_eq!(h.events(guest), [ev("/p/r", "g")]);
}

#[test]
fn queued_events_are_bounded() {
    let mut h = H::with(Config {
        max_queued_events: 10,
        ..Config::default()
    });
    let slow = h.conn(0);
    let c = h.conn(0);
    h.watch(slow, "/f", "t");
    for i in 0..50 {
        h.write(c, &format!("/f/{i}"), "");
    }
    assert_eq!(h.s.queued_events(slow), 10);
    assert_eq!(h.s.dropped_events(slow), 40);
    let got = h.events(slow);
    // The initial event (read with the WATCH reply), then the oldest ten, in order.
    assert_eq!(got.len(), 11);
    assert_eq!(got[0], ev("/f", "t"));
    assert_eq!(got[1], ev("/f/0", "t"));
    assert_eq!(got[10], ev("/f/9", "t"));
    // Once read, new events flow again.
    h.write(c, "/f/again", "");
    assert_eq!(h.events(slow), [ev("/f/again", "t")]);
}

#[test]
fn queued_event_bytes_are_bounded() {
    // With the default caps, a client that never reads holds at most 1 MiB of events even
    // though the count cap (16384) would allow about 64 MiB of the largest ones.
    let mut h = H::new();
    let slow = h.conn(0);
    let c = h.conn(0);
    let token = "t".repeat(2000);
    h.watch(slow, "/f", &token);
    let name = "n".repeat(2000);
    for i in 0..600 {
        h.write(c, &format!("/f/{name}{i}"), "");
    }
    let cap = Config::default().max_queued_event_bytes;
    let queued = h.s.queued_event_bytes(slow);
    assert!(
        queued <= cap && queued > cap - 4200,
        "{queued} bytes queued"
    );
    let kept = h.s.queued_events(slow);
    assert_eq!(kept as u64 + h.s.dropped_events(slow), 600);
    assert!(kept < 300, "{kept} events kept");
    // What was kept is the oldest events, in order, after the initial one.
    let got = h.events(slow);
    assert_eq!(got.len(), kept + 1);
    assert_eq!(got[1].0, format!("/f/{name}0"));
    assert_eq!(got[kept].0, format!("/f/{name}{}", kept - 1));
    assert_eq!(h.s.queued_event_bytes(slow), 0);
    // Room again once read.
    h.write(c, "/f/again", "");
    assert_eq!(h.events(slow), [ev("/f/again", &token)]);

    // A small byte cap binds before the count cap.
    let mut h = H::with(Config {
        max_queued_event_bytes: 100,
        ..Config::default()
    });
    let slow = h.conn(0);
    let c = h.conn(0);
    h.watch(slow, "/f", "t");
    h.events(slow);
    for i in 0..10 {
        h.write(c, &format!("/f/{i}"), "");
    }
    // Each event is 16 + "/f/N\0t\0" = 23 bytes: four fit in 100.
    assert_eq!(h.s.queued_events(slow), 4);
    assert_eq!(h.s.queued_event_bytes(slow), 92);
    assert_eq!(h.s.dropped_events(slow), 6);
}

#[test]
fn identical_pending_events_are_coalesced() {
    let mut h = H::new();
    let slow = h.conn(0);
    let c = h.conn(0);
    h.watch(slow, "/f", "t");
    h.events(slow);
    for _ in 0..5 {
        h.write(c, "/f/x", "");
    }
    assert_eq!(h.events(slow), [ev("/f/x", "t")]);
}

#[test]
fn watch_quota_and_accounting() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "watches", "2"]));
    let g = h.conn(3);
    h.watch(g, "/a", "1");
    h.watch(g, "/a", "2");
    assert_eq!(h.err(g, T::XS_WATCH, 0, &z(&["/a", "3"])), "E2BIG");
    // Another connection of the same domain shares the quota.
    let g2 = h.conn(3);
    assert_eq!(h.err(g2, T::XS_WATCH, 0, &z(&["/a", "4"])), "E2BIG");
    h.s.disconnect(g);
    h.watch(g2, "/a", "4");
    // Domain 0 is exempt.
    for i in 0..300 {
        h.watch(tool, "/many", &i.to_string());
    }
    h.check();
}
