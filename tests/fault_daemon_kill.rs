//! The real daemon dies (SIGKILL) under a client: our xenstored, and Debian's C xenstored 4.17
//! when its packages can be fetched (scripts/reference/daemon.sh; the C cases are skipped with
//! a SKIP line otherwise, or fail with XS_REQUIRE_REFERENCE=1).
//!
//! Three moments: mid-request (the daemon is stopped with SIGSTOP so requests are surely in
//! flight, then killed), idle with a thread blocked in xs_read_watch and another in poll() on
//! xs_fileno, and under load (threads writing and reading back in a loop). Each time every
//! thread must come back with an error within a few seconds (the library notices EOF, it has no
//! timeouts), xs_check_watch must fail with something other than EAGAIN (so a poll loop learns
//! the connection is gone: the C library's pipe never becomes readable then), and xs_close must
//! release everything. Each case prints `PASS kill/<daemon>/<case>: ...` or `FAIL ...`.

mod client_support;
mod common;
mod support;

use std::time::{Duration, Instant};

use client_support::c;
use support::*;
use xenstore::ffi::*;

const CASE_LIMIT: Duration = Duration::from_secs(30);
/// What a request may fail with when the daemon dies: EOF reads as EBADF; a socket closed with
/// our request still unread in it reads as ECONNRESET; a write after that is EPIPE.
const DEATH_ERRNOS: &[i32] = &[libc::EBADF, libc::ECONNRESET, libc::EPIPE];

fn skipped() -> String {
    format!("{SKIPPED}the C xenstored cannot run here (needs Debian's packages; see scripts/reference/fetch.sh)")
}

/// Starts the daemon, or says why the case is skipped.
fn daemon(kind: DaemonKind, case: &str) -> Option<RealDaemon> {
    match RealDaemon::start(kind, case) {
        Ok(d) => Some(d),
        Err(why) if kind == DaemonKind::C && !reference_required() => {
            eprintln!("the C xenstored cannot run here: {why}");
            None
        }
        Err(why) => panic!("{} cannot start: {why}", kind.name()),
    }
}

/// A handle on `d` that watches `/fk` with its initial event already consumed.
fn watching_handle(d: &RealDaemon) -> Shared {
    let h = Shared::open(&d.os_path(), 0);
    // SAFETY: live handle, NUL-terminated strings; the event block is freed.
    unsafe {
        assert!(xs_write(h.p(), 0, c("/fk").as_ptr(), b"".as_ptr().cast(), 0), "write /fk");
        assert!(xs_watch(h.p(), c("/fk").as_ptr(), c("tok").as_ptr()), "xs_watch");
        let mut n = 0;
        let ev = xs_read_watch(h.p(), &mut n);
        assert!(!ev.is_null(), "no initial watch event");
        libc::free(ev.cast());
    }
    h
}

/// Requests in flight (the daemon stopped), a watch reader and a poller; then SIGKILL.
fn killed_mid_request(kind: DaemonKind) {
    let name = format!("kill/{}/mid_request", kind.name());
    support::case(&name.clone(), CASE_LIMIT, move || {
        let Some(d) = daemon(kind, "midreq") else { return skipped() };
        let before = Resources::now();
        let h = watching_handle(&d);
        d.signal(libc::SIGSTOP);
        let waiters = Waiters::park(h, 4, "/fk/r");
        std::thread::sleep(Duration::from_millis(150));
        assert!(waiters.all_blocked(), "a call returned while the daemon was stopped");
        let kill_at = Instant::now();
        d.signal(libc::SIGKILL);
        let woken = waiters.expect_woken(kill_at, DEATH_ERRNOS);
        d.wait_gone(Duration::from_secs(5));
        let closed = expect_dead_then_close(h);
        before.expect_back(&name);
        drop(d);
        format!("4 requests in flight (daemon stopped), then SIGKILL: {woken}; {closed}")
    });
}

/// Idle handle: one thread in xs_read_watch, one in poll(xs_fileno); then SIGKILL.
fn killed_while_waiting_for_events(kind: DaemonKind) {
    let name = format!("kill/{}/blocked_in_read_watch_and_poll", kind.name());
    support::case(&name.clone(), CASE_LIMIT, move || {
        let Some(d) = daemon(kind, "idle") else { return skipped() };
        let before = Resources::now();
        let h = watching_handle(&d);
        let waiters = Waiters::park(h, 0, "/unused");
        std::thread::sleep(Duration::from_millis(100));
        assert!(waiters.all_blocked(), "xs_read_watch or poll returned with nothing to report");
        let kill_at = Instant::now();
        d.signal(libc::SIGKILL);
        let woken = waiters.expect_woken(kill_at, DEATH_ERRNOS);
        let closed = expect_dead_then_close(h);
        before.expect_back(&name);
        drop(d);
        format!("SIGKILL while idle: {woken}; {closed}")
    });
}

/// Four threads write and read back their own node in a loop; SIGKILL after 300 ms.
fn killed_under_load(kind: DaemonKind) {
    let name = format!("kill/{}/under_load", kind.name());
    support::case(&name.clone(), CASE_LIMIT, move || {
        let Some(d) = daemon(kind, "load") else { return skipped() };
        let before = Resources::now();
        let h = watching_handle(&d);
        let workers: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    // Outside the watched /fk, so the watch reader stays blocked.
                    let path = c(&format!("/fkload/{i}"));
                    let mut ops = 0u64;
                    // SAFETY: live handle, NUL-terminated strings; blocks are freed.
                    loop {
                        let val = format!("{i}-{ops}");
                        let ok = unsafe { xs_write(h.p(), 0, path.as_ptr(), val.as_ptr().cast(), val.len() as u32) };
                        if !ok {
                            return (ops, errno_now(), Instant::now());
                        }
                        let mut len = 0;
                        let v = unsafe { xs_read(h.p(), 0, path.as_ptr(), &mut len) };
                        if v.is_null() {
                            return (ops, errno_now(), Instant::now());
                        }
                        let got = unsafe { std::slice::from_raw_parts(v.cast::<u8>(), len as usize) }.to_vec();
                        unsafe { libc::free(v) };
                        assert_eq!(got, val.as_bytes(), "thread {i} read back another value");
                        ops += 1;
                    }
                })
            })
            .collect();
        let watcher = Waiters::park(h, 0, "/unused");
        std::thread::sleep(Duration::from_millis(300));
        let kill_at = Instant::now();
        d.signal(libc::SIGKILL);
        let mut total = 0;
        let mut slowest = Duration::ZERO;
        let mut errs = Vec::new();
        for (i, w) in workers.into_iter().enumerate() {
            while !w.is_finished() {
                assert!(kill_at.elapsed() < WAKE_LIMIT, "worker {i} still running {WAKE_LIMIT:?} after SIGKILL");
                std::thread::sleep(Duration::from_millis(1));
            }
            let (ops, e, at) = w.join().expect("worker panicked");
            assert!(ops > 0, "worker {i} made no progress before the kill");
            assert!(DEATH_ERRNOS.contains(&e), "worker {i} errno {}", errname(e));
            total += ops;
            slowest = slowest.max(at.saturating_duration_since(kill_at));
            if !errs.contains(&errname(e)) {
                errs.push(errname(e));
            }
        }
        let woken = watcher.expect_woken(kill_at, DEATH_ERRNOS);
        let closed = expect_dead_then_close(h);
        before.expect_back(&name);
        drop(d);
        format!(
            "4 threads, {total} write+read-back pairs verified, SIGKILL at 300 ms: all stopped with {} within {:.1} ms; {woken}; {closed}",
            errs.join("/"),
            slowest.as_secs_f64() * 1000.0
        )
    });
}

#[test]
fn ours_killed_mid_request() {
    killed_mid_request(DaemonKind::Ours);
}

#[test]
fn ours_killed_while_waiting_for_events() {
    killed_while_waiting_for_events(DaemonKind::Ours);
}

#[test]
fn ours_killed_under_load() {
    killed_under_load(DaemonKind::Ours);
}

#[test]
fn c_xenstored_killed_mid_request() {
    killed_mid_request(DaemonKind::C);
}

#[test]
fn c_xenstored_killed_while_waiting_for_events() {
    killed_while_waiting_for_events(DaemonKind::C);
}

#[test]
fn c_xenstored_killed_under_load() {
    killed_under_load(DaemonKind::C);
}
