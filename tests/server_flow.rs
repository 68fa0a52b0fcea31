//! Clients that never read must not grow the daemon nor slow down the others.

mod util;
use util::common;

use std::io::{self, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use xenstore::wire::{encode, MsgType};

/// Writes `msg` over and over until the daemon has stopped taking bytes for a while; returns
/// how much it took.
fn flood_until_stalled(c: &mut Client, msg: &[u8], limit: Duration) -> usize {
    c.sock.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match c.sock.write(msg) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stalled_since.get_or_insert_with(Instant::now).elapsed()
                    > Duration::from_millis(500)
                {
                    return sent;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("flood: {e}"),
        }
    }
    panic!("the daemon kept reading a client that never reads ({sent} bytes)");
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_throttled() {
    let d = Daemon::start("noread");
    let mut setup = d.connect();
    let big = "v".repeat(4000);
    setup.write("/flow/big", big.as_bytes());
    let rss_before = d.rss_kib();

    // Each 26-byte request asks for a 4000-byte reply.
    let mut hog = d.connect();
    let req = encode(MsgType::XS_READ, 1, 0, &z("/flow/big"));
    let sent = flood_until_stalled(&mut hog, &req, Duration::from_secs(10));
    assert!(sent < 16 << 20, "took {sent} bytes of requests");

    // Others are served meanwhile.
    let mut other = d.connect();
    for i in 0..100 {
        other.write("/flow/other", format!("{i}").as_bytes());
    }
    let grown = d.rss_kib().saturating_sub(rss_before);
    eprintln!("requests: daemon grew by {grown} KiB after {sent} bytes");
    assert!(grown < 32 * 1024, "daemon grew by {grown} KiB");
    drop(hog);
    assert_eq!(other.read("/flow/other").unwrap(), b"99");
}

#[test]
fn watch_events_for_a_client_that_never_reads_stay_bounded() {
    let d = Daemon::start("noreadwatch");
    let mut sleeper = d.connect();
    // 100 watches with ~1 KiB tokens: every write below queues 100 distinct events.
    let pad = "x".repeat(1000);
    for t in 0..100 {
        sleeper.ok(
            MsgType::XS_WATCH,
            0,
            &zz(&["/flood", &format!("t{t}{pad}")]),
        );
    }
    let rss_before = d.rss_kib();

    // 600 writes to distinct nodes: 60,000 distinct events, ~60 MiB if all were kept.
    let mut writer = d.connect();
    for i in 0..600 {
        writer.write(&format!("/flood/n{i}"), b"");
    }
    let grown = d.rss_kib().saturating_sub(rss_before);
    eprintln!("events: daemon grew by {grown} KiB");
    assert!(
        grown < 32 * 1024,
        "daemon grew by {grown} KiB for a client that never reads"
    );
    // The sleeper is still connected and, once it reads, gets well-formed events in order.
    let mut last = None;
    for _ in 0..200 {
        let m = sleeper.recv().unwrap();
        if m.is(MsgType::XS_WATCH_EVENT) {
            last = Some(m);
        }
    }
    assert!(last.is_some());
}
