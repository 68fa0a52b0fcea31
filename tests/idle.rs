//! Busy polling must stop when the traffic does: once requests stop, our daemon and the
//! library's watch thread each sleep in the kernel with no timeout, and are not woken again
//! while nothing happens. Checked from /proc (which system call each thread is blocked in, and
//! its context-switch counts), not from the clock.

mod util;
use util::common;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::*;
use xenstore::client::Handle;

/// x86_64 numbers of epoll_wait and epoll_pwait (glibc may implement one with the other).
const EPOLL_WAITS: [&str; 2] = ["232", "281"];

/// Whether thread `tid` of `pid` is blocked in epoll_wait with no timeout (the fourth
/// argument, an int, is -1).
fn sleeps_forever(pid: u32, tid: &str) -> bool {
    let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) else {
        return false;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() > 4
        && EPOLL_WAITS.contains(&f[0])
        && matches!(f[4], "0xffffffffffffffff" | "0xffffffff")
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

/// Waits (bounded only against a hang) until `tid` sleeps in epoll_wait with no timeout, then
/// checks it is not woken while nothing happens.
fn expect_idle(pid: u32, tid: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleeps_forever(pid, tid) {
        assert!(
            Instant::now() < deadline,
            "{what} never went to sleep without a timeout: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = switches(pid, tid);
    std::thread::sleep(Duration::from_millis(200));
    assert!(sleeps_forever(pid, tid), "{what} left its sleep");
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
    expect_idle(dpid, &dtid, "the daemon");
    // This process: the handle's watch thread.
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let watch = loop {
        // The thread names itself once it runs.
        if let Some(t) = threads(me)
            .into_iter()
            .find(|t| thread_name(me, t) == "xenstore-watch")
        {
            break t;
        }
        assert!(Instant::now() < deadline, "the handle has no watch thread");
        std::thread::sleep(Duration::from_millis(1));
    };
    expect_idle(me, &watch, "the watch thread");
    drop(h);
}
