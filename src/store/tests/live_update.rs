//! The migration stream (migrate.rs) and the live-update session (live_update.rs).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::{z, H, T};
use crate::store::{Config, ConnId, ConnRecord, ConnSpec, LiveUpdate, State, Store};

fn lu_config() -> Config {
    Config {
        live_update: true,
        ..Config::default()
    }
}

/// Every node with its value and permissions, parents first and children in listing order:
/// what `xenstore-ls -fp` would show, plus the special nodes.
fn dump(h: &mut H, c: ConnId) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        let v = h.read(c, &p).unwrap_or_default();
        out.push(format!("{p}={v:?} {:?}", h.perms(c, &p)));
        let kids = h.dir(c, &p);
        for k in kids.iter().rev() {
            stack.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
    }
    for s in ["@introduceDomain", "@releaseDomain"] {
        out.push(format!("{s} {:?}", h.perms(c, s)));
    }
    out
}

/// The records a transport would pass for `conns` (sockets with made-up descriptors).
fn records(conns: &[(ConnId, u32)]) -> Vec<ConnRecord> {
    conns
        .iter()
        .enumerate()
        .map(|(i, &(id, domid))| ConnRecord {
            id: id.0,
            spec: match domid {
                0 => ConnSpec::Socket { fd: 10 + i as i32 },
                d => ConnSpec::Ring {
                    domid: d,
                    target: None,
                    port: 40 + d,
                },
            },
            input: Vec::new(),
            output: Vec::new(),
            partial: 0,
        })
        .collect()
}

/// The state stream of `h` with the connections `conns`, as a live update writes it.
fn export(h: &H, conns: &[(ConnId, u32)]) -> Vec<u8> {
    h.s.export_state(3, -1, None, &records(conns), None)
        .unwrap()
}

/// A harness on the store `data` describes, keeping every connection; their new ids in the
/// order of the stream.
fn restore(data: &[u8]) -> (H, Vec<ConnId>) {
    let (s, kept) = Store::from_state(lu_config(), &State::parse(data).unwrap(), &mut |_| true);
    (
        H { s, ..H::new() },
        kept.into_iter().map(|(_, id)| id).collect(),
    )
}

/// A store with something of everything the stream carries.
fn busy_store() -> (H, ConnId, ConnId, ConnId) {
    let mut h = H::with(lu_config());
    let tool = h.conn(0);
    assert_eq!(
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "4660", "9"])),
        "OK\0"
    );
    assert_eq!(
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&["5", "17", "11"])),
        "OK\0"
    );
    let g3 = h.conn(3);
    let g5 = h.conn(5);
    for (p, v) in [
        ("/local/domain/3/name", "guest3"),
        ("/local/domain/3/device/vif/0/state", "4"),
        ("/local/domain/5/name", "guest5"),
        ("/zz", "created before /aa"),
        ("/aa", "binary\u{1}\u{0}value"),
        ("/vm/x", ""),
    ] {
        h.write(tool, p, v);
    }
    h.set_perms(tool, "/local/domain/3", &["n3", "r0"]).unwrap();
    h.set_perms(tool, "/local/domain/3/name", &["n3"]).unwrap();
    h.set_perms(tool, "/local/domain/3/device/vif/0/state", &["n3"])
        .unwrap();
    h.set_perms(tool, "/aa", &["b0", "r3", "w5"]).unwrap();
    h.set_perms(tool, "/local/domain/5", &["n5", "r3"]).unwrap();
    h.set_perms(tool, "@releaseDomain", &["n0", "r3"]).unwrap();
    assert_eq!(
        h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "nodes", "77"])),
        "OK\0"
    );
    assert_eq!(h.ok(tool, T::XS_SET_TARGET, 0, &z(&["5", "3"])), "OK\0");
    h.watch(tool, "/local", "tool-local");
    h.watch(tool, "@releaseDomain", "rel");
    h.watch(g3, "device", "relative");
    assert_eq!(
        h.ok(
            g3,
            T::XS_WATCH,
            0,
            &z(&["/local/domain/3/name", "deep", "1"])
        ),
        "OK\0"
    );
    h.events(tool);
    h.events(g3);
    (h, tool, g3, g5)
}

#[test]
fn the_stream_gives_back_the_same_store_byte_for_byte() {
    let (mut h, tool, g3, g5) = busy_store();
    // Domain 7 goes: an entry naming it stays, ignored.
    h.write(tool, "/seven", "x");
    h.set_perms(tool, "/seven", &["n0", "r7"]).unwrap();
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["7", "1", "1"]));
    h.ok(tool, T::XS_RELEASE, 0, &z(&["7"]));
    h.events(tool);
    let before = dump(&mut h, tool);
    let conns = [(tool, 0), (g3, 3), (g5, 5)];
    let first = export(&h, &conns);
    let (mut h2, kept) = restore(&first);
    assert_eq!(kept.len(), 3);
    let tool2 = kept[0];
    assert_eq!(dump(&mut h2, tool2), before);
    h2.check();
    // Written again, the restored store gives the same stream.
    let conns2: Vec<(ConnId, u32)> = kept
        .iter()
        .zip(conns)
        .map(|(&id, (_, d))| (id, d))
        .collect();
    assert_eq!(first, export(&h2, &conns2));
    // The quota, the target and the introduction came along.
    assert_eq!(
        h2.ok(tool2, T::XS_GET_QUOTA, 0, &z(&["3", "nodes"])),
        "77\0"
    );
    assert_eq!(
        h2.ok(tool2, T::XS_IS_DOMAIN_INTRODUCED, 0, &z(&["5"])),
        "T\0"
    );
    assert_eq!(h2.s.domain_ring(3), Some((4660, 9)));
    assert_eq!(h2.perms(tool2, "/seven"), "n0\0r7\0");
}

#[test]
fn watches_fire_after_the_restore_as_before() {
    let (h, tool, g3, g5) = busy_store();
    let (mut h2, kept) = restore(&export(&h, &[(tool, 0), (g3, 3), (g5, 5)]));
    let (tool, g3) = (kept[0], kept[1]);
    h2.write(tool, "/local/domain/3/device/vif/0/state", "6");
    h2.write(tool, "/local/domain/3/name/a/b", "too deep for depth 1");
    assert_eq!(
        h2.events(g3),
        vec![("device/vif/0/state".into(), "relative".into())],
        "the relative watch stays relative; the depth-1 watch ignores depth 2"
    );
    h2.write(tool, "/local/domain/3/name/a", "depth 1");
    assert_eq!(
        h2.events(g3),
        vec![("/local/domain/3/name/a".into(), "deep".into())]
    );
    assert_eq!(
        h2.events(tool).len(),
        3,
        "the tool's watch on /local saw all three"
    );
    // Watches are counted again: the same watch is a duplicate.
    assert_eq!(
        h2.err(g3, T::XS_WATCH, 0, &z(&["device", "relative"])),
        "EEXIST"
    );
}

#[test]
fn an_open_transaction_comes_back_and_fails_with_eagain() {
    let (mut h, tool, g3, g5) = busy_store();
    let tx: u32 = h
        .ok(g3, T::XS_TRANSACTION_START, 0, b"\0")
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    let (mut h2, kept) = restore(&export(&h, &[(tool, 0), (g3, 3), (g5, 5)]));
    let g3 = kept[1];
    let mut p = z(&["/local/domain/3/name"]);
    p.extend_from_slice(b"in-tx");
    assert_eq!(h2.ok(g3, T::XS_WRITE, tx, &p), "OK\0");
    assert_eq!(h2.err(g3, T::XS_TRANSACTION_END, tx, &z(&["T"])), "EAGAIN");
    assert_eq!(h2.read(g3, "/local/domain/3/name").unwrap(), "guest3");
    // A new transaction gets a new id and commits.
    let tx2: u32 = h2
        .ok(g3, T::XS_TRANSACTION_START, 0, b"\0")
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert_ne!(tx2, tx);
    assert_eq!(h2.ok(g3, T::XS_TRANSACTION_END, tx2, &z(&["T"])), "OK\0");
    h2.check();
}

#[test]
fn a_damaged_stream_is_refused_whole_and_nothing_panics() {
    let (h, tool, g3, g5) = busy_store();
    let data = export(&h, &[(tool, 0), (g3, 3), (g5, 5)]);
    for cut in 0..data.len() {
        assert!(State::parse(&data[..cut]).is_err(), "cut at {cut} accepted");
    }
    // Any byte changed: refused or read, never a panic; a store built from what is read
    // passes its own checks.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut d = data.clone();
        let at = (seed as usize) % d.len();
        d[at] ^= 1 << ((seed >> 32) % 8);
        if let Ok(st) = State::parse(&d) {
            let (s, _) = Store::from_state(lu_config(), &st, &mut |_| true);
            assert!(s.check().is_empty(), "byte {at}: {:?} {st:?}", s.check());
        }
    }
    assert!(State::parse(b"xenstorX\0\0\0\x02\0\0\0\0")
        .unwrap_err()
        .contains("ident"));
    let mut v3 = data.clone();
    v3[11] = 3;
    assert!(State::parse(&v3).unwrap_err().contains("version 3"));
    let mut trailing = data.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert!(State::parse(&trailing)
        .unwrap_err()
        .contains("after the END"));
}

/// A file with mode `mode`, for `-f`.
fn binary(tag: &str, mode: u32) -> String {
    let p = std::env::temp_dir().join(format!("xs-lu-{tag}-{}", std::process::id()));
    std::fs::write(&p, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_string_lossy().into_owned()
}

fn lu(h: &mut H, c: ConnId, args: &[&str]) -> String {
    let mut v = vec!["live-update"];
    v.extend_from_slice(args);
    h.ok(c, T::XS_CONTROL, 0, &z(&v))
}

#[test]
fn sessions_answer_as_the_c_daemon() {
    let mut h = H::with(lu_config());
    let (a, b) = (h.conn(0), h.conn(0));
    assert_eq!(
        lu(&mut h, a, &["-f", "/nonexistent/xenstored"]),
        "File not accessible.\0"
    );
    assert_eq!(
        lu(&mut h, a, &["-f", &binary("plain", 0o644)]),
        "File not executable.\0"
    );
    assert_eq!(lu(&mut h, a, &["-s"]), "Not in live-update session.\0");
    assert_eq!(lu(&mut h, a, &["-a"]), "No live-update session active.\0");
    let bin = binary("exec", 0o755);
    assert_eq!(lu(&mut h, a, &["-f", &bin]), "OK\0");
    assert_eq!(
        lu(&mut h, b, &["-f", &bin]),
        "live-update session already active.\0"
    );
    assert_eq!(
        lu(&mut h, b, &["-c", "-N"]),
        "Not in live-update session.\0"
    );
    assert_eq!(lu(&mut h, a, &["-c", "-N -V"]), "OK\0");
    assert_eq!(
        lu(&mut h, a, &["-s", "-v", "3"]),
        "Migration stream version not supported.\0"
    );
    assert_eq!(
        h.err(a, T::XS_CONTROL, 0, &z(&["live-update", "-s", "-x"])),
        "EINVAL"
    );
    // Without an open transaction it goes at once, with the arguments given.
    assert!(h
        .raw(a, T::XS_CONTROL, 0, &z(&["live-update", "-s", "-t", "5"]))
        .is_empty());
    match h.s.live_update_poll(Instant::now()) {
        LiveUpdate::Go {
            binary,
            cmdline,
            conn,
            reply,
        } => {
            assert_eq!(binary.to_string_lossy(), bin);
            assert_eq!(cmdline.as_deref(), Some("-N -V"));
            assert_eq!(conn, a);
            assert!(reply.ends_with(b"OK\0"));
        }
        other => panic!("{other:?}"),
    }
    h.s.live_update_failed("Error activating new binary.");
    assert_eq!(
        super::decode(&h.s.pop_output(a).unwrap()).payload,
        b"Error activating new binary.\0"
    );
    assert_eq!(h.s.live_update_poll(Instant::now()), LiveUpdate::Idle);
    // A session ends with its connection.
    assert_eq!(lu(&mut h, b, &["-f", &bin]), "OK\0");
    h.s.disconnect(b);
    assert_eq!(lu(&mut h, a, &["-f", &bin]), "OK\0");
    assert_eq!(lu(&mut h, a, &["-a"]), "OK\0");
}

#[test]
fn transactions_drain_before_the_update_and_new_ones_wait() {
    let mut h = H::with(lu_config());
    let (lu_conn, busy, other) = (h.conn(0), h.conn(0), h.conn(0));
    h.write(busy, "/x", "0");
    let tx = h.ok(busy, T::XS_TRANSACTION_START, 0, b"\0");
    let tx: u32 = tx.trim_end_matches('\0').parse().unwrap();
    assert_eq!(
        lu(&mut h, lu_conn, &["-f", &binary("drain", 0o755)]),
        "OK\0"
    );
    assert!(h
        .raw(
            lu_conn,
            T::XS_CONTROL,
            0,
            &z(&["live-update", "-s", "-t", "60"])
        )
        .is_empty());
    assert_eq!(h.s.live_update_poll(Instant::now()), LiveUpdate::Waiting);
    // A new transaction waits, unanswered, and so does what its connection sends next.
    assert!(h.raw(other, T::XS_TRANSACTION_START, 0, b"\0").is_empty());
    assert!(h.raw(other, T::XS_READ, 0, &z(&["/tool"])).is_empty());
    // Requests of other kinds, and the open transaction, carry on.
    h.write(busy, "/x", "1");
    let mut p = z(&["/y"]);
    p.extend_from_slice(b"2");
    assert_eq!(h.ok(busy, T::XS_WRITE, tx, &p), "OK\0");
    assert_eq!(h.ok(busy, T::XS_TRANSACTION_END, tx, &z(&["T"])), "OK\0");
    // Drained: it goes, with the held requests part of the state.
    let LiveUpdate::Go { conn, reply, .. } = h.s.live_update_poll(Instant::now()) else {
        panic!("no go");
    };
    let recs = records(&[(lu_conn, 0), (busy, 0), (other, 0)]);
    let data =
        h.s.export_state(3, -1, None, &recs, Some((conn, &reply)))
            .unwrap();
    let st = State::parse(&data).unwrap();
    assert!(st.conns[0].output.ends_with(b"OK\0"), "the requester's OK");
    assert_eq!(
        st.conns[2].input.len(),
        2 * 16 + 1 + 6,
        "both held requests"
    );
    // Were it refused now, the held requests would be answered in order.
    h.s.live_update_failed("refused");
    let out: Vec<_> = std::iter::from_fn(|| h.s.pop_output(other))
        .map(|m| super::decode(&m).ty)
        .collect();
    assert_eq!(out, vec![T::XS_TRANSACTION_START as u32, T::XS_READ as u32]);
}

#[test]
fn a_long_transaction_refuses_the_update_without_force() {
    let mut h = H::with(lu_config());
    let (lu_conn, busy) = (h.conn(0), h.conn(0));
    h.ok(busy, T::XS_TRANSACTION_START, 0, b"\0");
    let bin = binary("long", 0o755);
    assert_eq!(lu(&mut h, lu_conn, &["-f", &bin]), "OK\0");
    h.raw(
        lu_conn,
        T::XS_CONTROL,
        0,
        &z(&["live-update", "-s", "-t", "0"]),
    );
    assert_eq!(h.s.live_update_poll(Instant::now()), LiveUpdate::Idle);
    let reply = super::decode(&h.s.pop_output(lu_conn).unwrap()).payload;
    let text = String::from_utf8(reply).unwrap();
    assert!(
        text.starts_with("Domains with long running transactions:\nDomain 0: "),
        "{text:?}"
    );
    // With -F it goes after the time, the transaction left behind.
    assert_eq!(lu(&mut h, lu_conn, &["-f", &bin]), "OK\0");
    h.raw(
        lu_conn,
        T::XS_CONTROL,
        0,
        &z(&["live-update", "-s", "-F", "-t", "1"]),
    );
    assert_eq!(h.s.live_update_poll(Instant::now()), LiveUpdate::Waiting);
    let later = Instant::now() + Duration::from_secs(2);
    assert!(matches!(h.s.live_update_poll(later), LiveUpdate::Go { .. }));
}
