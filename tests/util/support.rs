//! Shared by the fault and stress tests (tests/fault_*.rs, tests/stress_*.rs).
//!
//! - [`case`]: runs one named case with a deadline, one case at a time in the process, and
//!   prints a `PASS <name>: <details>` or `FAIL <name>: <why>` line (machine-readable results;
//!   run with `--nocapture` to see them). A case that does not finish in time is a failure,
//!   never a hang of the suite. A case that cannot run here prints `SKIP <name>: <why>`.
//! - [`OneShot`]: a scripted server for exactly one connection, whose thread is joined when the
//!   server is dropped, so a case can check that nothing (descriptor, thread) outlives it.
//! - [`Resources`]: the process's open descriptors and threads, to compare before and after.
//! - [`RealDaemon`]: our xenstored or Debian's C xenstored, to be stopped or killed.
//!

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client_support::{set_errno, Peer, TempDir};

/// Cases run one at a time: they count the process's descriptors and threads, and they time
/// wake-ups, which parallel cases would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` as the case `name`; fails (and prints FAIL) if it panics or takes longer than
/// `deadline`. `body` returns the details printed on the PASS line.
///
/// Every case runs with SIGPIPE at its default action, as in a C program: a write to a dead
/// peer that raised it would kill the test binary instead of failing quietly.
pub fn case(name: &str, deadline: Duration, body: impl FnOnce() -> String + Send + 'static) {
    static SIGPIPE_DEFAULT: Once = Once::new();
    SIGPIPE_DEFAULT.call_once(|| {
        // SAFETY: restores the default action of one signal; nothing here relies on SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    });
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    super::case_runner::run(name, deadline, body);
}

/// See [`super::case_runner::SKIPPED`].
pub use super::case_runner::SKIPPED;
pub use super::reference_required;

/// Runs `f` on its own thread; Err if it has not finished after `limit`. The thread is left
/// running in that case (the caller fails the case).
pub fn run_for<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .map_err(|_| format!("still blocked after {} ms", limit.as_millis()))
}

/// Open descriptors of this process and the library's watch threads in it. (Only the watch
/// threads are counted: the test harness starts threads of its own at any time.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub fds: Vec<String>,
    pub threads: usize,
}

/// How many of this process's threads are the library's watch threads.
pub fn watch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "xenstore-watch")
        })
        .count()
}

impl Resources {
    pub fn now() -> Resources {
        let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{}->{}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect();
        fds.sort();
        Resources {
            fds,
            threads: watch_threads(),
        }
    }

    /// Waits (briefly: threads finish exiting asynchronously) until the process is back to
    /// `self`, else panics with the difference.
    pub fn expect_back(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let now = Resources::now();
            // The descriptor read_dir itself holds is listed only by the call that makes it.
            let same_fds = now.fds.len() == self.fds.len();
            if same_fds && now.threads == self.threads {
                return;
            }
            if Instant::now() > deadline {
                let extra: Vec<_> = now.fds.iter().filter(|f| !self.fds.contains(f)).collect();
                panic!(
                    "{what}: resources not released: {} fds before, {} after (new: {extra:?}); threads {} -> {}",
                    self.fds.len(),
                    now.fds.len(),
                    self.threads,
                    now.threads
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a [`OneShot`] script can do besides talking to its peer.
pub struct Ctl {
    to_test: Mutex<Sender<Instant>>,
    go: Mutex<Receiver<()>>,
    done: Mutex<Receiver<()>>,
}

impl Ctl {
    /// Tells the test a point was reached (e.g. "about to break the connection"), with when.
    pub fn signal(&self) -> Instant {
        let now = Instant::now();
        let _ = self.to_test.lock().unwrap().send(now);
        now
    }

    /// Blocks until the test calls [`OneShot::go`] (at most 30 s).
    pub fn wait_go(&self) {
        let _ = self
            .go
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
    }

    /// Blocks until the test drops the server (at most 30 s), keeping the connection open.
    pub fn hold(&self) {
        let _ = self
            .done
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
    }
}

/// A scripted server on a Unix socket in a temp dir, for one connection. Dropping it ends the
/// script's `hold`, and joins its thread (so the server's side of the connection is closed).
pub struct OneShot {
    pub path: PathBuf,
    signals: Receiver<Instant>,
    go: Sender<()>,
    done: Option<Sender<()>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl OneShot {
    pub fn start(script: impl FnOnce(Peer<UnixStream>, &Ctl) + Send + 'static) -> OneShot {
        let dir = TempDir::new("fault");
        let path = dir.0.join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        let (to_test, signals) = channel();
        let (done, done_rx) = channel();
        let (go, go_rx) = channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::spawn(move || {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            drop(listener);
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let ctl = Ctl {
                to_test: Mutex::new(to_test),
                go: Mutex::new(go_rx),
                done: Mutex::new(done_rx),
            };
            script(Peer { s }, &ctl);
        });
        OneShot {
            path,
            signals,
            go,
            done: Some(done),
            stopping,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Waits for the script's next `signal`.
    pub fn wait_signal(&self, limit: Duration) -> Instant {
        match self.signals.recv_timeout(limit) {
            Ok(t) => t,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the scripted server did not reach its next step in {limit:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the scripted server ended early"),
        }
    }

    /// Lets the script past its `wait_go`.
    pub fn go(&self) {
        let _ = self.go.send(());
    }

    pub fn os_path(&self) -> std::ffi::OsString {
        self.path.clone().into_os_string()
    }
}

impl Drop for OneShot {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.done.take());
        // Unblocks accept() if nobody ever connected.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which daemon a [`RealDaemon`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    /// Our xenstored (the binary cargo built with this test).
    Ours,
    /// Debian's Xen 4.17 C xenstored, through scripts/reference/daemon.sh.
    C,
}

impl DaemonKind {
    pub fn name(self) -> &'static str {
        match self {
            DaemonKind::Ours => "ours",
            DaemonKind::C => "cxenstored",
        }
    }
}

/// A daemon process on a socket in a temp dir, that a case may stop (SIGSTOP) or kill.
pub struct RealDaemon {
    pub kind: DaemonKind,
    pub socket: PathBuf,
    pub pid: libc::pid_t,
    ours: Option<super::common::Daemon>,
    c: Option<super::CDaemon>,
}

impl RealDaemon {
    /// Starts the daemon; Err with the reason when it cannot run on this host (the C daemon
    /// needs Debian's packages).
    pub fn start(kind: DaemonKind, tag: &str) -> Result<RealDaemon, String> {
        match kind {
            DaemonKind::Ours => {
                let d = super::common::Daemon::start(tag);
                Ok(RealDaemon {
                    kind,
                    socket: d.socket.clone(),
                    pid: d.pid() as libc::pid_t,
                    ours: Some(d),
                    c: None,
                })
            }
            DaemonKind::C => {
                let c = super::CDaemon::start(&format!("fault-{tag}"))?;
                Ok(RealDaemon {
                    kind,
                    socket: c.socket.clone(),
                    pid: c.pid()?,
                    ours: None,
                    c: Some(c),
                })
            }
        }
    }

    pub fn os_path(&self) -> std::ffi::OsString {
        self.socket.clone().into_os_string()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill() on the pid of a daemon this test started and has not reaped.
        let r = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// Waits until the process is gone (a zombie counts as gone).
    pub fn wait_gone(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().next())
                        .map(str::to_string)
                });
            if matches!(state.as_deref(), None | Some("Z") | Some("X")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} still alive after {limit:?}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RealDaemon {
    fn drop(&mut self) {
        // Each stops (or reaps) its own daemon.
        drop(self.c.take());
        drop(self.ours.take());
    }
}

/// A C handle pointer that threads may share (the C API allows any number of threads on one
/// handle; xs_close comes only after all of them are done).
#[derive(Clone, Copy)]
pub struct Shared(pub *mut xenstore::ffi::xs_handle);

// SAFETY: the library's handle may be used by several threads at once (xs.c's contract, which
// ours keeps); the pointer is only used while the handle lives.
unsafe impl Send for Shared {}
// SAFETY: as for Send: sharing a `&Shared` only shares the pointer.
unsafe impl Sync for Shared {}

impl Shared {
    /// Opens a C handle on `path` (the safe API's open_path, handed to C as xs_open would).
    pub fn open(path: &std::ffi::OsString, flags: u64) -> Shared {
        Shared(xenstore::ffi::into_raw(
            xenstore::client::Handle::open_path(path, flags).expect("open_path"),
        ))
    }

    /// The pointer (a method, so that closures capture the whole `Shared`, which is Send).
    pub fn p(self) -> *mut xenstore::ffi::xs_handle {
        self.0
    }
}

/// errno as the calling thread sees it.
pub fn errno_now() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The C name of an errno value, for reports.
pub fn errname(e: i32) -> String {
    match e {
        0 => "0".into(),
        libc::EBADF => "EBADF".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::E2BIG => "E2BIG".into(),
        libc::EPIPE => "EPIPE".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::EIO => "EIO".into(),
        libc::ENOENT => "ENOENT".into(),
        e => format!("errno {e}"),
    }
}

/// How one parked thread ended: whether its call succeeded, the errno it saw, and when.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub ok: bool,
    pub errno: i32,
    pub at: Instant,
}

/// Threads parked on one handle before a fault: `n` requesters blocked in xs_read (paths
/// `<prefix><i>`), one thread blocked in xs_read_watch, one in poll() on xs_fileno.
pub struct Waiters {
    requesters: Vec<JoinHandle<Outcome>>,
    reader: JoinHandle<Outcome>,
    poller: JoinHandle<Outcome>,
}

/// How long a parked thread may stay blocked once the fault is visible.
pub const WAKE_LIMIT: Duration = Duration::from_secs(5);

impl Waiters {
    /// Starts the watch reader and the poller (the handle must already watch something and
    /// have no event queued), then the requesters.
    pub fn park(h: Shared, n: usize, prefix: &str) -> Waiters {
        use xenstore::ffi::*;
        // The caller keeps `h` open until the threads below are collected (expect_woken).
        // SAFETY: `h` is a live handle.
        let fd = unsafe { xs_fileno(h.p()) };
        assert!(fd >= 0, "xs_fileno failed");
        assert_eq!(
            // SAFETY: `h` is a live handle; a NULL result (asserted) needs no free.
            unsafe { xs_check_watch(h.p()) },
            std::ptr::null_mut(),
            "an event is already queued"
        );
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            // SAFETY: `h` is a live handle; `n` is a c_uint on this stack.
            let r = unsafe { xs_read_watch(h.p(), &mut n) };
            let e = errno_now();
            let ok = !r.is_null();
            // SAFETY: `r` is NULL or the malloc'd event block xs_read_watch handed over.
            unsafe { libc::free(r.cast()) };
            Outcome {
                ok,
                errno: e,
                at: Instant::now(),
            }
        });
        let poller = std::thread::spawn(move || {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `p` is one pollfd on this stack, as the count says.
            let r = unsafe { libc::poll(&mut p, 1, (WAKE_LIMIT.as_millis() * 4) as i32) };
            Outcome {
                ok: r == 1,
                errno: 0,
                at: Instant::now(),
            }
        });
        std::thread::sleep(Duration::from_millis(30));
        let requesters = (0..n)
            .map(|i| {
                let path = std::ffi::CString::new(format!("{prefix}{i}")).unwrap();
                std::thread::spawn(move || {
                    let mut len = 0;
                    // SAFETY: `h` is a live handle, `path` a CString owned by this thread.
                    let r = unsafe { xs_read(h.p(), 0, path.as_ptr(), &mut len) };
                    let e = errno_now();
                    let ok = !r.is_null();
                    // SAFETY: `r` is NULL or the malloc'd value xs_read handed over.
                    unsafe { libc::free(r) };
                    Outcome {
                        ok,
                        errno: e,
                        at: Instant::now(),
                    }
                })
            })
            .collect();
        Waiters {
            requesters,
            reader,
            poller,
        }
    }

    /// None of the parked threads has returned yet.
    pub fn all_blocked(&self) -> bool {
        !self.reader.is_finished()
            && !self.poller.is_finished()
            && self.requesters.iter().all(|t| !t.is_finished())
    }

    /// Collects every thread (each must be done within WAKE_LIMIT) and checks: every request
    /// failed with one of `req_errnos`, the watch reader failed with EINVAL, the poller was
    /// woken. Returns a one-line summary with the slowest wake-up after `fault_at`.
    pub fn expect_woken(self, fault_at: Instant, req_errnos: &[i32]) -> String {
        let join = |t: JoinHandle<Outcome>, what: &str| -> Outcome {
            let deadline = fault_at + WAKE_LIMIT;
            while !t.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "{what} still blocked {} ms after the fault",
                    WAKE_LIMIT.as_millis()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            t.join().expect("waiter panicked")
        };
        let n = self.requesters.len();
        let mut slowest = Duration::ZERO;
        let mut seen = Vec::new();
        for (i, t) in self.requesters.into_iter().enumerate() {
            let o = join(t, &format!("requester {i}"));
            assert!(!o.ok, "requester {i} got a reply from a broken connection");
            assert!(
                req_errnos.contains(&o.errno),
                "requester {i}: errno {} not in {:?}",
                errname(o.errno),
                req_errnos.iter().map(|&e| errname(e)).collect::<Vec<_>>()
            );
            slowest = slowest.max(o.at.saturating_duration_since(fault_at));
            if !seen.contains(&o.errno) {
                seen.push(o.errno);
            }
        }
        let r = join(self.reader, "xs_read_watch");
        assert!(!r.ok, "xs_read_watch returned an event");
        assert_eq!(
            r.errno,
            libc::EINVAL,
            "xs_read_watch errno {}",
            errname(r.errno)
        );
        slowest = slowest.max(r.at.saturating_duration_since(fault_at));
        let p = join(self.poller, "poll(xs_fileno)");
        assert!(
            p.ok,
            "poll() on xs_fileno timed out: the poller was not woken"
        );
        slowest = slowest.max(p.at.saturating_duration_since(fault_at));
        let names: Vec<String> = seen.iter().map(|&e| errname(e)).collect();
        let requests = if n > 0 {
            format!("{n} requests failed ({}), ", names.join("/"))
        } else {
            String::new()
        };
        format!(
            "{requests}xs_read_watch EINVAL, poller woken; all within {:.1} ms",
            slowest.as_secs_f64() * 1000.0
        )
    }
}

/// After the connection died: xs_check_watch fails with something other than EAGAIN, a new
/// request fails with EBADF, and xs_close returns promptly. Returns a summary.
pub fn expect_dead_then_close(h: Shared) -> String {
    use xenstore::ffi::*;
    // `h` is live until the xs_close below, and no other thread uses it any more.
    set_errno(0);
    // SAFETY: `h` is a live handle; a NULL result (asserted) needs no free.
    let ev = unsafe { xs_check_watch(h.p()) };
    let check_errno = {
        let e = errno_now();
        assert!(ev.is_null(), "xs_check_watch returned an event");
        assert!(
            e != libc::EAGAIN && e != 0,
            "xs_check_watch errno {} (EAGAIN would mean: try later)",
            errname(e)
        );
        let c = std::ffi::CString::new("/after").unwrap();
        assert!(
            // SAFETY: `h` is a live handle, `c` a CString that outlives the call.
            !unsafe { xs_mkdir(h.p(), 0, c.as_ptr()) },
            "a request succeeded on a dead connection"
        );
        let e2 = errno_now();
        assert_eq!(e2, libc::EBADF, "later request errno {}", errname(e2));
        e
    };
    let t = Instant::now();
    run_for(Duration::from_secs(5), move || {
        // SAFETY: `h` is live and this is its last use, on any thread.
        unsafe { xenstore::ffi::xs_close(h.p()) }
    })
    .expect("xs_close hung");
    format!(
        "xs_check_watch {}, next request EBADF, xs_close {:.1} ms",
        errname(check_errno),
        t.elapsed().as_secs_f64() * 1000.0
    )
}
