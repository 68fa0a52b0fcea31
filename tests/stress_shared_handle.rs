//! Many threads on one handle (through the C ABI) against our daemon, while the watch thread
//! delivers a stream of events and another thread removes one of the watches mid-stream.
//!
//! - 8 workers each write, read back, list and transact on their own nodes (and a shared
//!   counter): every reply must be the one for that thread's request (no lost or crossed
//!   replies), every transaction commits or retries on EAGAIN.
//! - A second handle writes 2 x EVENTS watched nodes, numbered; the consumer thread reads
//!   them with xs_read_watch: the kept watch's events must all arrive, in order, once each.
//! - Half-way, a thread calls xs_unwatch on the other watch (the handle has
//!   XS_UNWATCH_FILTER): no event of that watch may be handed out by a xs_read_watch that began
//!   after xs_unwatch returned.
//! - At the end: the counter equals the number of commits, xs_close releases everything.
//!
//! Prints `PASS stress/shared_handle: ...` or `FAIL ...`.

mod util;
use util::{client_support, common, support};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_support::{c, take_strings};
use support::*;
use xenstore::client::OPEN_UNWATCH_FILTER;
use xenstore::ffi::*;

const WORKERS: usize = 8;
const ROUNDS: usize = 300;
const TX_EVERY: usize = 15;
const EVENTS: usize = 1000;

/// A value that tells whose and which write it was, of varying length (up to ~3 KiB).
fn value(worker: usize, round: usize) -> Vec<u8> {
    let head = format!("w{worker}r{round}:");
    let mut v = head.into_bytes();
    let extra = (round * 37 + worker * 101) % 3000;
    v.extend((0..extra).map(|k| b'a' + ((k + worker + round) % 26) as u8));
    v
}

#[derive(Default, Debug)]
struct WorkerReport {
    requests: usize,
    commits: usize,
    retries: usize,
}

/// One worker: its own nodes under /st/w<i>, plus the shared counter in transactions.
fn worker(h: Shared, i: usize) -> WorkerReport {
    let mut rep = WorkerReport::default();
    let dir = format!("/st/w{i}");
    // SAFETY: for every call here, `h` is live until every worker is joined; paths and values
    // are CStrings or Strings that outlive their call, with the lengths given; out-parameters
    // are locals; each block handed over is freed once, after its last read.
    unsafe {
        for r in 0..ROUNDS {
            let path = c(&format!("{dir}/k{}", r % 5));
            let v = value(i, r);
            assert!(
                xs_write(h.p(), 0, path.as_ptr(), v.as_ptr().cast(), v.len() as u32),
                "worker {i} write: errno {}",
                errname(errno_now())
            );
            let mut len = 0;
            let got = xs_read(h.p(), 0, path.as_ptr(), &mut len);
            assert!(
                !got.is_null(),
                "worker {i} read: errno {}",
                errname(errno_now())
            );
            assert_eq!(
                std::slice::from_raw_parts(got.cast::<u8>(), len as usize),
                &v[..],
                "worker {i} round {r}: wrong reply"
            );
            libc::free(got);
            rep.requests += 2;
            if r % 25 == 24 {
                let mut n = 0;
                let list = xs_directory(h.p(), 0, c(&dir).as_ptr(), &mut n);
                assert!(!list.is_null());
                let mut names = take_strings(list, n).unwrap();
                names.sort();
                assert_eq!(
                    names,
                    ["k0", "k1", "k2", "k3", "k4"],
                    "worker {i}: directory of its own node"
                );
                rep.requests += 1;
            }
            if r % TX_EVERY == TX_EVERY - 1 {
                loop {
                    let t = xs_transaction_start(h.p());
                    assert_ne!(t, 0, "transaction_start: errno {}", errname(errno_now()));
                    let mut len = 0;
                    let cur = xs_read(h.p(), t, c("/st/counter").as_ptr(), &mut len);
                    assert!(!cur.is_null());
                    let n: u64 = std::str::from_utf8(std::slice::from_raw_parts(
                        cur.cast::<u8>(),
                        len as usize,
                    ))
                    .unwrap()
                    .parse()
                    .unwrap();
                    libc::free(cur);
                    let next = (n + 1).to_string();
                    assert!(xs_write(
                        h.p(),
                        t,
                        c("/st/counter").as_ptr(),
                        next.as_ptr().cast(),
                        next.len() as u32
                    ));
                    rep.requests += 4;
                    if xs_transaction_end(h.p(), t, false) {
                        rep.commits += 1;
                        break;
                    }
                    assert_eq!(
                        errno_now(),
                        libc::EAGAIN,
                        "commit failed otherwise than EAGAIN"
                    );
                    rep.retries += 1;
                }
            }
        }
    }
    rep
}

#[derive(Default, Debug)]
struct ConsumerReport {
    kept: usize,
    dropped_before: usize,
    dropped_after: usize,
    /// Highest node number among the removed watch's events.
    last_dropped: Option<usize>,
    other: Vec<String>,
}

#[test]
fn shared_handle_under_load() {
    support::case("stress/shared_handle", Duration::from_secs(120), || {
        let d = common::Daemon::start("stress");
        let sock = d.socket.clone().into_os_string();
        let before = Resources::now();
        let h = Shared::open(&sock, OPEN_UNWATCH_FILTER);
        let h2 = Shared::open(&sock, 0);
        let t0 = Instant::now();
        // SAFETY: `h` and `h2` are live (closed at the end, after every thread is joined);
        // paths, tokens and the value are CStrings or byte strings that outlive their call.
        unsafe {
            for p in ["/st/ev/keep", "/st/ev/drop", "/st/done"] {
                assert!(xs_mkdir(h2.p(), 0, c(p).as_ptr()));
            }
            assert!(xs_write(
                h2.p(),
                0,
                c("/st/counter").as_ptr(),
                b"0".as_ptr().cast(),
                1
            ));
            assert!(xs_watch(h.p(), c("/st/ev/keep").as_ptr(), c("K").as_ptr()));
            assert!(xs_watch(h.p(), c("/st/ev/drop").as_ptr(), c("D").as_ptr()));
            assert!(xs_watch(h.p(), c("/st/done").as_ptr(), c("E").as_ptr()));
        }
        let unwatched = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));

        let consumer = {
            let unwatched = unwatched.clone();
            std::thread::spawn(move || {
                let mut rep = ConsumerReport::default();
                let mut initial = 0;
                loop {
                    // Whether xs_unwatch had returned before this read began.
                    let after = unwatched.load(Ordering::SeqCst);
                    let mut n = 0;
                    // SAFETY: live handle; the block is freed by take_strings.
                    let ev = unsafe { xs_read_watch(h.p(), &mut n) };
                    assert!(
                        !ev.is_null(),
                        "xs_read_watch failed: errno {}",
                        errname(errno_now())
                    );
                    // SAFETY: `ev` is the non-NULL event array of `n` strings just handed over.
                    let s = unsafe { take_strings(ev, n) }.unwrap();
                    let (path, token) = (s[0].as_str(), s[1].as_str());
                    match token {
                        "K" if path == "/st/ev/keep" => initial += 1,
                        "K" => {
                            let k: usize =
                                path.strip_prefix("/st/ev/keep/").unwrap().parse().unwrap();
                            assert_eq!(
                                k, rep.kept,
                                "kept watch: event out of order, lost or repeated"
                            );
                            rep.kept += 1;
                        }
                        "D" if path == "/st/ev/drop" => initial += 1,
                        "D" => {
                            let k: usize =
                                path.strip_prefix("/st/ev/drop/").unwrap().parse().unwrap();
                            rep.last_dropped = rep.last_dropped.max(Some(k));
                            if after {
                                rep.dropped_after += 1;
                            } else {
                                rep.dropped_before += 1;
                            }
                        }
                        "E" if path == "/st/done" => initial += 1,
                        "E" => break,
                        _ => rep.other.push(format!("{path} {token}")),
                    }
                }
                assert_eq!(initial, 3, "one initial event per watch");
                rep
            })
        };
        let writer = {
            let (written, unwatched) = (written.clone(), unwatched.clone());
            std::thread::spawn(move || {
                for k in 0..EVENTS {
                    // The unwatch races with the events written from EVENTS / 2 on; the last
                    // quarter is written only once it has returned, so some surely follow it.
                    while k == EVENTS * 3 / 4 && !unwatched.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    for dir in ["keep", "drop"] {
                        let p = c(&format!("/st/ev/{dir}/{k}"));
                        // SAFETY: live handle, NUL-terminated strings.
                        assert!(unsafe {
                            xs_write(h2.p(), 0, p.as_ptr(), b"x".as_ptr().cast(), 1)
                        });
                    }
                    written.store(k + 1, Ordering::SeqCst);
                }
                // SAFETY: as above.
                assert!(unsafe {
                    xs_write(
                        h2.p(),
                        0,
                        c("/st/done/final").as_ptr(),
                        b"1".as_ptr().cast(),
                        1,
                    )
                });
            })
        };
        let unwatcher = {
            let (unwatched, written) = (unwatched.clone(), written.clone());
            std::thread::spawn(move || {
                while written.load(Ordering::SeqCst) < EVENTS / 2 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                // SAFETY: live handle, NUL-terminated strings.
                let ok = unsafe { xs_unwatch(h.p(), c("/st/ev/drop").as_ptr(), c("D").as_ptr()) };
                unwatched.store(true, Ordering::SeqCst);
                assert!(ok, "xs_unwatch: errno {}", errname(errno_now()));
            })
        };
        let workers: Vec<_> = (0..WORKERS)
            .map(|i| std::thread::spawn(move || worker(h, i)))
            .collect();

        let reports: Vec<WorkerReport> = workers
            .into_iter()
            .map(|w| w.join().expect("worker failed"))
            .collect();
        unwatcher.join().expect("unwatcher failed");
        writer.join().expect("event writer failed");
        let ev = consumer.join().expect("event consumer failed");
        let elapsed = t0.elapsed();

        let commits: usize = reports.iter().map(|r| r.commits).sum();
        let retries: usize = reports.iter().map(|r| r.retries).sum();
        let requests: usize = reports.iter().map(|r| r.requests).sum();
        // SAFETY: live handles; all other users have finished, as xs_close requires.
        unsafe {
            let mut len = 0;
            let v = xs_read(h.p(), 0, c("/st/counter").as_ptr(), &mut len);
            assert!(!v.is_null());
            let counter: usize =
                std::str::from_utf8(std::slice::from_raw_parts(v.cast::<u8>(), len as usize))
                    .unwrap()
                    .parse()
                    .unwrap();
            libc::free(v);
            assert_eq!(counter, commits, "the counter lost or gained increments");
            assert!(xs_check_watch(h.p()).is_null(), "events left over");
            assert!(xs_rm(h2.p(), 0, c("/st").as_ptr()));
            xs_close(h.p());
            xs_close(h2.p());
        }
        assert!(ev.other.is_empty(), "unexpected events: {:?}", ev.other);
        assert_eq!(ev.kept, EVENTS, "kept watch lost events");
        assert_eq!(
            ev.dropped_after, 0,
            "events of the removed watch handed out after xs_unwatch returned"
        );
        assert!(
            ev.last_dropped < Some(EVENTS * 3 / 4),
            "the removed watch fired for a node written after xs_unwatch"
        );
        before.expect_back("stress");
        drop(d);
        format!(
            "{WORKERS} threads x {ROUNDS} rounds: {requests} requests all answered correctly, {commits} commits ({retries} EAGAIN retries), counter exact; \
             {} events of the kept watch in order, {} of the removed one before xs_unwatch, 0 after; {:.2} s",
            ev.kept,
            ev.dropped_before,
            elapsed.as_secs_f64()
        )
    });
}
