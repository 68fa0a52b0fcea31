//! Busy polling must stop when the traffic does: once requests stop, our daemon and the
//! library's watch thread each sleep in the kernel with no timeout, and are not woken again
//! while nothing happens (the watch thread of a handle that only receives events sleeps in a
//! read of its socket instead of in epoll_wait). Checked from /proc (which system call each thread is blocked in, and
//! its context-switch counts), not from the clock.

mod util;
use util::common;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::*;
use xenstore::client::Handle;

/// x86_64 numbers of epoll_wait and epoll_pwait (glibc may implement one with the other).
const EPOLL_WAITS: [&str; 2] = ["232", "281"];
/// x86_64 number of read.
const READ: &str = "0";

/// How a thread sleeps with no timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sleep {
    /// In epoll_wait, whose fourth argument (an int) is -1.
    Epoll,
    /// In read (our sockets have no receive timeout).
    Read,
}

/// How thread `tid` of `pid` sleeps with no timeout, if it does.
fn sleeps_forever(pid: u32, tid: &str) -> Option<Sleep> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() > 4
        && EPOLL_WAITS.contains(&f[0])
        && matches!(f[4], "0xffffffffffffffff" | "0xffffffff")
    {
        Some(Sleep::Epoll)
    } else if f.len() > 1 && f[0] == READ {
        Some(Sleep::Read)
    } else {
        None
    }
}

/// Voluntary and involuntary context switches of one thread so far.
fn switches(pid: u32, tid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap()
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

fn threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn thread_name(pid: u32, tid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits (bounded only against a hang) until `tid` sleeps as `how` with no timeout, then
/// checks it is not woken while nothing happens.
fn expect_idle(pid: u32, tid: &str, what: &str, how: Sleep) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps_forever(pid, tid) != Some(how) {
        assert!(
            Instant::now() < deadline,
            "{what} never went to sleep without a timeout: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut before = switches(pid, tid);
    if how == Sleep::Read {
        // A read also wakes (and sleeps again, not returning) when the peer takes bytes we
        // sent off the socket, and our daemon takes a request's bytes just after replying
        // (src/server/deferred.rs): the handle's last request may still do that once.
        std::thread::sleep(Duration::from_millis(200));
        let after = switches(pid, tid);
        assert!(
            after.0 <= before.0 + 1 && after.1 == before.1,
            "{what} was woken more than once while idle: {before:?} -> {after:?}"
        );
        before = after;
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sleeps_forever(pid, tid), Some(how), "{what} left its sleep");
    assert_eq!(switches(pid, tid), before, "{what} was woken while idle");
}

#[test]
fn an_idle_daemon_and_an_idle_handle_sleep_without_a_timeout() {
    let d = Daemon::start("idle");
    let h = Handle::open_path(&OsString::from(&d.socket), 0).unwrap();
    h.watch(b"/idle/w", b"tok").unwrap();
    assert_eq!(h.read_watch().unwrap().path(), b"/idle/w");
    // Enough back-to-back requests for both sides to poll.
    for i in 0..2000u32 {
        h.write(0, b"/idle/k", i.to_string().as_bytes()).unwrap();
        assert_eq!(h.read(0, b"/idle/k").unwrap(), i.to_string().as_bytes());
    }
    // Our daemon: its event loop is its only thread that waits on epoll.
    let dpid = d.pid();
    let dtid = threads(dpid)
        .into_iter()
        .find(|t| *t == dpid.to_string())
        .unwrap();
    expect_idle(dpid, &dtid, "the daemon", Sleep::Epoll);
    // This process: the handle's watch thread.
    expect_idle(
        std::process::id(),
        &watch_thread(),
        "the watch thread",
        Sleep::Epoll,
    );
    drop(h);
    // (In the same test: there must be only one watch thread in this process to look at.)
    a_pure_watcher_sleeps_in_a_read(&d);
}

/// This process's one watch thread.
fn watch_thread() -> String {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The thread names itself once it runs.
        if let Some(t) = threads(me)
            .into_iter()
            .find(|t| thread_name(me, t) == "xenstore-watch")
        {
            return t;
        }
        assert!(Instant::now() < deadline, "the handle has no watch thread");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn a_pure_watcher_sleeps_in_a_read(d: &Daemon) {
    let path = OsString::from(&d.socket);
    let watcher = Handle::open_path(&path, 0).unwrap();
    let writer = Handle::open_path(&path, 0).unwrap();
    watcher.watch(b"/idle/w", b"tok").unwrap();
    assert_eq!(watcher.read_watch().unwrap().path(), b"/idle/w");
    // Events with no request of the watcher's between them, and none for a while before
    // them (10 ms makes a pure watcher, src/client/conn.rs).
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..3u32 {
        writer
            .write(0, b"/idle/w", i.to_string().as_bytes())
            .unwrap();
        assert_eq!(watcher.read_watch().unwrap().path(), b"/idle/w");
    }
    expect_idle(
        std::process::id(),
        &watch_thread(),
        "the pure watcher's watch thread",
        Sleep::Read,
    );
    // Still a working handle, and closing it ends the read.
    assert_eq!(watcher.read(0, b"/idle/w").unwrap(), b"2");
    drop(watcher);
}
