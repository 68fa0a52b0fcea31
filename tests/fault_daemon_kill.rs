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

mod util;
use util::{client_support, support};

use std::time::{Duration, Instant};

use client_support::{c, set_errno};
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
        assert!(
            xs_write(h.p(), 0, c("/fk").as_ptr(), b"".as_ptr().cast(), 0),
            "write /fk"
        );
        assert!(
            xs_watch(h.p(), c("/fk").as_ptr(), c("tok").as_ptr()),
            "xs_watch"
        );
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
        let Some(d) = daemon(kind, "midreq") else {
            return skipped();
        };
        let before = Resources::now();
        let h = watching_handle(&d);
        d.signal(libc::SIGSTOP);
        let waiters = Waiters::park(h, 4, "/fk/r");
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            waiters.all_blocked(),
            "a call returned while the daemon was stopped"
        );
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
        let Some(d) = daemon(kind, "idle") else {
            return skipped();
        };
        let before = Resources::now();
        let h = watching_handle(&d);
        let waiters = Waiters::park(h, 0, "/unused");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            waiters.all_blocked(),
            "xs_read_watch or poll returned with nothing to report"
        );
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
        let Some(d) = daemon(kind, "load") else {
            return skipped();
        };
        let before = Resources::now();
        let h = watching_handle(&d);
        let workers: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    // Outside the watched /fk, so the watch reader stays blocked.
                    let path = c(&format!("/fkload/{i}"));
                    let mut ops = 0u64;
                    // `h` stays open until every worker has been joined.
                    loop {
                        let val = format!("{i}-{ops}");
                        // SAFETY: `h` is live; `path` and `val` outlive the call, `val` has the
                        // length given.
                        let ok = unsafe {
                            xs_write(
                                h.p(),
                                0,
                                path.as_ptr(),
                                val.as_ptr().cast(),
                                val.len() as u32,
                            )
                        };
                        if !ok {
                            return (ops, errno_now(), Instant::now());
                        }
                        let mut len = 0;
                        // SAFETY: `h` is live; `path` outlives the call; `len` is a local.
                        let v = unsafe { xs_read(h.p(), 0, path.as_ptr(), &mut len) };
                        if v.is_null() {
                            return (ops, errno_now(), Instant::now());
                        }
                        // SAFETY: a non-NULL xs_read result is a malloc'd block of `len` bytes.
                        let got =
                            unsafe { std::slice::from_raw_parts(v.cast::<u8>(), len as usize) }
                                .to_vec();
                        // SAFETY: `v` came from the library's malloc; `got` is a copy.
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
                assert!(
                    kill_at.elapsed() < WAKE_LIMIT,
                    "worker {i} still running {WAKE_LIMIT:?} after SIGKILL"
                );
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

/// The C library's side of the same story, for comparison (and to check what the module
/// comment says about it): Debian's libxenstore 4.17, loaded beside ours, with a thread in
/// poll() on its xs_fileno when the C xenstored is killed. Its pipe is written only when an
/// event is queued, so the poller is never woken; xs_read_watch does return.
#[test]
fn c_library_leaves_the_poller_asleep() {
    support::case(
        "kill/cxenstored/reference_library_poller",
        CASE_LIMIT,
        || {
            use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".reference/root/usr/lib/x86_64-linux-gnu");
            let lib = dir.join("libxenstore.so.4");
            if !lib.exists() {
                return format!("{SKIPPED}Debian's libxenstore is not unpacked in .reference (scripts/reference/fetch.sh)");
            }
            let Some(d) = daemon(DaemonKind::C, "reflib") else {
                return skipped();
            };
            type Open = unsafe extern "C" fn(c_ulong) -> *mut c_void;
            type Close = unsafe extern "C" fn(*mut c_void);
            type Write = unsafe extern "C" fn(
                *mut c_void,
                u32,
                *const c_char,
                *const c_void,
                c_uint,
            ) -> bool;
            type Watch = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> bool;
            type ReadWatch = unsafe extern "C" fn(*mut c_void, *mut c_uint) -> *mut *mut c_char;
            type CheckWatch = unsafe extern "C" fn(*mut c_void) -> *mut *mut c_char;
            type Fileno = unsafe extern "C" fn(*mut c_void) -> c_int;
            // SAFETY: loading Debian's library by full path (its libxentoolcore first, from the
            // same directory); the symbols are the 4.17 functions with the types declared above.
            let (open, close, write, watch, read_watch, check_watch, fileno) = unsafe {
                let tc = c(&dir.join("libxentoolcore.so.1").to_string_lossy());
                assert!(!libc::dlopen(tc.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL).is_null());
                let h = libc::dlopen(
                    c(&lib.to_string_lossy()).as_ptr(),
                    libc::RTLD_NOW | libc::RTLD_LOCAL,
                );
                assert!(!h.is_null(), "dlopen {}", lib.display());
                let sym = |n: &str| {
                    let p = libc::dlsym(h, c(n).as_ptr());
                    assert!(!p.is_null(), "{n}");
                    p
                };
                (
                    std::mem::transmute::<*mut c_void, Open>(sym("xs_open")),
                    std::mem::transmute::<*mut c_void, Close>(sym("xs_close")),
                    std::mem::transmute::<*mut c_void, Write>(sym("xs_write")),
                    std::mem::transmute::<*mut c_void, Watch>(sym("xs_watch")),
                    std::mem::transmute::<*mut c_void, ReadWatch>(sym("xs_read_watch")),
                    std::mem::transmute::<*mut c_void, CheckWatch>(sym("xs_check_watch")),
                    std::mem::transmute::<*mut c_void, Fileno>(sym("xs_fileno")),
                )
            };
            // The C library finds the daemon only through the environment. Cases run one at a
            // time and nothing else in this process reads it meanwhile.
            std::env::set_var("XENSTORED_PATH", &d.socket);
            // SAFETY: the C library's xs_open, which takes no pointers.
            let h = unsafe { open(0) } as usize;
            std::env::remove_var("XENSTORED_PATH");
            assert_ne!(h, 0, "the C library could not connect");
            // SAFETY: `h` is the C library's live handle (closed at the end, after the threads
            // using it are joined); paths and tokens are CStrings that live to the end of their
            // statements; the event block is non-NULL (asserted) and freed once.
            let fd = unsafe {
                let h = h as *mut c_void;
                assert!(write(h, 0, c("/fk").as_ptr(), b"".as_ptr().cast(), 0));
                assert!(watch(h, c("/fk").as_ptr(), c("tok").as_ptr()));
                let mut n = 0;
                let ev = read_watch(h, &mut n);
                assert!(!ev.is_null());
                libc::free(ev.cast());
                fileno(h)
            };
            assert!(fd >= 0);
            let poller = std::thread::spawn(move || {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: polling a descriptor the C library keeps open until xs_close.
                unsafe { libc::poll(&mut p, 1, 1500) == 1 }
            });
            let reader = std::thread::spawn(move || {
                let mut n = 0;
                // SAFETY: `h` is live until the close below, which waits for this thread; `n`
                // is a local. (An event block, not expected, would be leaked, not misused.)
                let ev = unsafe { read_watch(h as *mut c_void, &mut n) };
                (ev.is_null(), errno_now(), Instant::now())
            });
            std::thread::sleep(Duration::from_millis(100));
            let kill_at = Instant::now();
            d.signal(libc::SIGKILL);
            let woken = poller.join().unwrap();
            let (null, e, at) = run_for(Duration::from_secs(5), move || reader.join().unwrap())
                .expect("the C library's xs_read_watch did not return after the daemon died");
            assert!(
                !woken,
                "the C library's pipe woke the poller: the comparison in the docs is wrong"
            );
            assert!(null, "xs_read_watch returned an event");
            set_errno(0);
            // SAFETY: `h` is live and no other thread uses it any more. (An event block, not
            // expected, would be leaked, not misused.)
            let ev = unsafe { check_watch(h as *mut c_void) };
            let (check_null, check_errno) = (ev.is_null(), errno_now());
            run_for(Duration::from_secs(5), move || {
                // SAFETY: `h` is live, and this is its last use on any thread.
                unsafe { close(h as *mut c_void) }
            })
            .expect("the C library's xs_close hung");
            drop(d);
            format!(
            "Debian's libxenstore 4.17: poller on xs_fileno NOT woken within 1.5 s of SIGKILL; xs_read_watch returned NULL ({}) after {:.1} ms; xs_check_watch {} ({})",
            errname(e),
            at.saturating_duration_since(kill_at).as_secs_f64() * 1000.0,
            if check_null { "NULL" } else { "an event" },
            errname(check_errno)
        )
        },
    );
}
