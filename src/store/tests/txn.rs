//! Transactions: isolation, commit, the conflict rule, events at commit only.

use super::{ev, z, H};
use crate::wire::MsgType as T;

fn start(h: &mut H, c: super::ConnId) -> u32 {
    let id = h.ok(c, T::XS_TRANSACTION_START, 0, b"\0");
    let id = id.strip_suffix('\0').expect("id ends in NUL");
    id.parse().expect("decimal id")
}

fn twrite(h: &mut H, c: super::ConnId, tx: u32, p: &str, v: &str) {
    let mut pl = z(&[p]);
    pl.extend_from_slice(v.as_bytes());
    assert_eq!(h.ok(c, T::XS_WRITE, tx, &pl), "OK\0");
}

fn tread(h: &mut H, c: super::ConnId, tx: u32, p: &str) -> Result<String, String> {
    h.call(c, T::XS_READ, tx, &z(&[p]))
        .map(|v| String::from_utf8(v).unwrap())
}

fn end(h: &mut H, c: super::ConnId, tx: u32, commit: bool) -> Result<Vec<u8>, String> {
    h.call(
        c,
        T::XS_TRANSACTION_END,
        tx,
        &z(&[if commit { "T" } else { "F" }]),
    )
}

#[test]
fn isolation_and_commit() {
    let mut h = H::new();
    let c = h.conn(0);
    let other = h.conn(0);
    h.write(c, "/a", "old");
    let tx = start(&mut h, c);
    assert_ne!(tx, 0);
    twrite(&mut h, c, tx, "/a", "new");
    twrite(&mut h, c, tx, "/b/c", "created");
    assert_eq!(tread(&mut h, c, tx, "/a").unwrap(), "new");
    assert_eq!(
        h.read(other, "/a").unwrap(),
        "old",
        "invisible outside before commit"
    );
    assert_eq!(h.read(other, "/b/c").unwrap_err(), "ENOENT");
    assert_eq!(end(&mut h, c, tx, true).unwrap(), b"OK\0");
    assert_eq!(h.read(other, "/a").unwrap(), "new");
    assert_eq!(h.read(other, "/b/c").unwrap(), "created");
    // The id is gone.
    assert_eq!(tread(&mut h, c, tx, "/a").unwrap_err(), "ENOENT");
    h.check();
}

#[test]
fn abort_discards() {
    let mut h = H::new();
    let c = h.conn(0);
    let tx = start(&mut h, c);
    twrite(&mut h, c, tx, "/gone", "x");
    assert_eq!(h.ok(c, T::XS_RM, tx, &z(&["/tool"])), "OK\0");
    assert_eq!(end(&mut h, c, tx, false).unwrap(), b"OK\0");
    assert_eq!(h.read(c, "/gone").unwrap_err(), "ENOENT");
    assert_eq!(h.dir(c, "/"), ["tool"]);
    h.check();
}

#[test]
fn unrelated_write_does_not_conflict() {
    let mut h = H::new();
    let c = h.conn(0);
    let other = h.conn(0);
    h.write(c, "/x/a", "1");
    h.write(c, "/y/b", "1");
    let tx = start(&mut h, c);
    assert_eq!(tread(&mut h, c, tx, "/x/a").unwrap(), "1");
    twrite(&mut h, c, tx, "/x/a", "2");
    // Writes elsewhere, including a new node in an unrelated directory.
    h.write(other, "/y/b", "changed");
    h.write(other, "/y/new", "n");
    assert_eq!(end(&mut h, c, tx, true).unwrap(), b"OK\0");
    assert_eq!(h.read(c, "/x/a").unwrap(), "2");
    assert_eq!(
        h.read(c, "/y/b").unwrap(),
        "changed",
        "concurrent write survives the commit"
    );
    assert_eq!(h.read(c, "/y/new").unwrap(), "n");
    h.check();
}

#[test]
fn conflicts_give_eagain() {
    // Concurrent write to a node the transaction read.
    let mut h = H::new();
    let c = h.conn(0);
    let o = h.conn(0);
    h.write(c, "/r", "1");
    let tx = start(&mut h, c);
    tread(&mut h, c, tx, "/r").unwrap();
    twrite(&mut h, c, tx, "/elsewhere", "x");
    h.write(o, "/r", "2");
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");
    assert_eq!(
        h.read(c, "/elsewhere").unwrap_err(),
        "ENOENT",
        "nothing applied"
    );
    assert_eq!(
        tread(&mut h, c, tx, "/r").unwrap_err(),
        "ENOENT",
        "transaction ended"
    );

    // Concurrent write to a node the transaction wrote.
    let tx = start(&mut h, c);
    twrite(&mut h, c, tx, "/r", "mine");
    h.write(o, "/r", "theirs");
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");
    assert_eq!(h.read(c, "/r").unwrap(), "theirs");

    // A new child in a directory the transaction listed.
    h.write(c, "/d/one", "");
    let tx = start(&mut h, c);
    h.ok(c, T::XS_DIRECTORY, tx, &z(&["/d"]));
    twrite(&mut h, c, tx, "/other", "x");
    h.write(o, "/d/two", "");
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");

    // Creation of a node the transaction saw missing.
    let tx = start(&mut h, c);
    assert_eq!(tread(&mut h, c, tx, "/d/three").unwrap_err(), "ENOENT");
    twrite(&mut h, c, tx, "/other", "x");
    h.write(o, "/d/three", "");
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");

    // Deletion of a node the transaction read.
    let tx = start(&mut h, c);
    tread(&mut h, c, tx, "/d/one").unwrap();
    h.ok(o, T::XS_RM, 0, &z(&["/d/one"]));
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");

    // A change inside a subtree the transaction removed.
    h.write(c, "/s/t/u", "1");
    let tx = start(&mut h, c);
    h.ok(c, T::XS_RM, tx, &z(&["/s"]));
    h.write(o, "/s/t/u", "2");
    assert_eq!(end(&mut h, c, tx, true).unwrap_err(), "EAGAIN");
    assert_eq!(h.read(c, "/s/t/u").unwrap(), "2");
    h.check();
}

#[test]
fn two_transactions_interleaved() {
    // C daemon's example 4: T1 reads A writes B, T2 reads B writes A: first commit wins.
    let mut h = H::new();
    let c1 = h.conn(0);
    let c2 = h.conn(0);
    h.write(c1, "/A", "a");
    h.write(c1, "/B", "b");
    let t1 = start(&mut h, c1);
    let t2 = start(&mut h, c2);
    tread(&mut h, c1, t1, "/A").unwrap();
    tread(&mut h, c2, t2, "/B").unwrap();
    twrite(&mut h, c1, t1, "/B", "from1");
    twrite(&mut h, c2, t2, "/A", "from2");
    assert!(end(&mut h, c1, t1, true).is_ok());
    assert_eq!(end(&mut h, c2, t2, true).unwrap_err(), "EAGAIN");
    assert_eq!(h.read(c1, "/B").unwrap(), "from1");
    assert_eq!(h.read(c1, "/A").unwrap(), "a");
}

#[test]
fn commit_replays_deletes_and_recreations() {
    let mut h = H::new();
    let c = h.conn(0);
    h.write(c, "/p/old/deep", "1");
    h.write(c, "/p/keep", "k");
    h.write(c, "/q/untouched", "u");
    let tx = start(&mut h, c);
    h.ok(c, T::XS_RM, tx, &z(&["/p/old"]));
    twrite(&mut h, c, tx, "/p/old/fresh", "f");
    twrite(&mut h, c, tx, "/p/keep", "k2");
    let other = h.conn(0);
    h.write(other, "/q/untouched", "changed");
    assert!(end(&mut h, c, tx, true).is_ok());
    assert_eq!(h.dir(c, "/p/old"), ["fresh"]);
    assert_eq!(h.read(c, "/p/old/deep").unwrap_err(), "ENOENT");
    assert_eq!(h.read(c, "/p/keep").unwrap(), "k2");
    assert_eq!(h.read(c, "/q/untouched").unwrap(), "changed");
    h.check();
}

#[test]
fn watch_events_only_at_commit() {
    let mut h = H::new();
    let c = h.conn(0);
    let w = h.conn(0);
    h.write(c, "/t/gone", "");
    h.watch(w, "/t", "tok");
    assert_eq!(h.events(w), [ev("/t", "tok")]);
    let tx = start(&mut h, c);
    twrite(&mut h, c, tx, "/t/a", "1");
    twrite(&mut h, c, tx, "/t/a", "2");
    h.ok(c, T::XS_RM, tx, &z(&["/t/gone"]));
    assert!(h.events(w).is_empty(), "nothing before commit");
    assert!(end(&mut h, c, tx, true).is_ok());
    let got = h.events(w);
    assert!(got.contains(&ev("/t/a", "tok")), "{got:?}");
    assert!(got.contains(&ev("/t/gone", "tok")), "{got:?}");
    assert_eq!(
        got.iter().filter(|e| e.0 == "/t/a").count(),
        1,
        "one event per node"
    );
    // Aborted or failed transactions fire nothing.
    let tx = start(&mut h, c);
    twrite(&mut h, c, tx, "/t/b", "1");
    end(&mut h, c, tx, false).unwrap();
    assert!(h.events(w).is_empty());
}

#[test]
fn transaction_rules() {
    let mut h = H::new();
    let c = h.conn(0);
    let tx = start(&mut h, c);
    // No nesting.
    assert_eq!(h.err(c, T::XS_TRANSACTION_START, tx, b"\0"), "EBUSY");
    // END needs T or F and a real id.
    assert_eq!(h.err(c, T::XS_TRANSACTION_END, tx, &z(&["X"])), "EINVAL");
    assert_eq!(h.err(c, T::XS_TRANSACTION_END, 0, &z(&["T"])), "ENOENT");
    // Transaction ids are per connection.
    let other = h.conn(0);
    assert_eq!(h.err(other, T::XS_READ, tx, &z(&["/"])), "ENOENT");
    // Distinct ids for concurrent transactions.
    let tx2 = start(&mut h, c);
    assert_ne!(tx, tx2);
    // WATCH ignores tx_id.
    assert_eq!(h.ok(c, T::XS_WATCH, tx, &z(&["/w", "t"])), "OK\0");
    assert!(end(&mut h, c, tx, true).is_ok());
    assert!(end(&mut h, c, tx2, true).is_ok());
}

#[test]
fn disconnect_drops_transactions_silently() {
    let mut h = H::new();
    let c = h.conn(3);
    let w = h.conn(0);
    h.write(w, "/local/domain/3", "");
    h.set_perms(w, "/local/domain/3", &["n3"]).unwrap();
    h.watch(w, "/", "all");
    h.events(w);
    let tx = start(&mut h, c);
    assert_eq!(h.ok(c, T::XS_WRITE, tx, b"data\0x"), "OK\0");
    h.s.disconnect(c);
    assert!(h.events(w).is_empty());
    assert_eq!(h.s.domains.get(3).unwrap().transactions, 0);
    h.check();
}

#[test]
fn reset_watches_drops_transactions_too() {
    let mut h = H::new();
    let c = h.conn(0);
    let tx = start(&mut h, c);
    h.watch(c, "/x", "t");
    assert_eq!(h.ok(c, T::XS_RESET_WATCHES, 0, b""), "OK\0");
    assert_eq!(tread(&mut h, c, tx, "/").unwrap_err(), "ENOENT");
    assert_eq!(h.err(c, T::XS_UNWATCH, 0, &z(&["/x", "t"])), "ENOENT");
    h.check();
}

#[test]
fn generation_inside_transaction() {
    let mut h = H::new();
    let c = h.conn(0);
    h.write(c, "/g/a", "");
    let before = h.ok(c, T::XS_DIRECTORY_PART, 0, &z(&["/g", "0"]));
    let tx = start(&mut h, c);
    twrite(&mut h, c, tx, "/g/b", "");
    let inside = h.ok(c, T::XS_DIRECTORY_PART, tx, &z(&["/g", "0"]));
    assert!(inside.ends_with("a\0b\0\0"), "{inside:?}");
    assert_ne!(inside.split('\0').next(), before.split('\0').next());
    assert_eq!(
        h.ok(c, T::XS_DIRECTORY_PART, 0, &z(&["/g", "0"])),
        before,
        "outside unchanged"
    );
}

/// A refused write changes nothing, inside a transaction or beside one: the node keeps its
/// value and generation, and transactions that read it commit without a conflict.
#[test]
fn refused_writes_change_nothing() {
    let mut h = H::new();
    let tool = h.conn(0);
    let g = h.conn(3);
    h.write(tool, "/s/v", "old");
    let gen = |h: &mut H| h.ok(tool, T::XS_DIRECTORY_PART, 0, &z(&["/s/v", "0"]));
    let before = gen(&mut h);
    let ttx = start(&mut h, tool);
    assert_eq!(tread(&mut h, tool, ttx, "/s/v").unwrap(), "old");
    let gtx = start(&mut h, g);
    assert_eq!(h.err(g, T::XS_WRITE, gtx, b"/s/v\0x"), "EACCES");
    assert_eq!(h.err(g, T::XS_WRITE, 0, b"/s/v\0x"), "EACCES");
    assert_eq!(h.err(g, T::XS_WRITE, 0, b"/s/w\0x"), "EACCES");
    assert_eq!(gen(&mut h), before);
    assert_eq!(h.read(tool, "/s/v").unwrap(), "old");
    assert_eq!(h.read(tool, "/s/w").unwrap_err(), "ENOENT");
    end(&mut h, g, gtx, true).unwrap();
    twrite(&mut h, tool, ttx, "/s/t", "x");
    end(&mut h, tool, ttx, true).unwrap();
    assert_eq!(h.read(tool, "/s/v").unwrap(), "old");
    h.check();
}
