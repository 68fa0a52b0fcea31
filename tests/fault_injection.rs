//! Fault injection: a misbehaving daemon (a scripted server on a Unix socket in a temp dir)
//! breaks the protocol or the connection while threads wait on the handle, driven through the
//! C ABI as C programs use it.
//!
//! For each fault: the call that meets it returns an error at once, every other thread parked on
//! the handle (requests in flight, xs_read_watch, poll() on xs_fileno) is woken with an error,
//! later calls fail cleanly, xs_close returns and the process is left with no extra descriptor
//! or watch thread. Slow answers are waited for and arrive intact. Each case prints a
//! `PASS fault/<case>: ...` or `FAIL ...` line (`cargo test --test fault_injection -- --nocapture`).

mod util;
use util::{client_support, support};

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use client_support::{c, take_strings, Peer, Req};
use support::*;
use xenstore::ffi::*;
use xenstore::wire::{Header, MsgType, PAYLOAD_MAX};

/// Deadline of one case.
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// Requests in flight when a fault strikes.
const IN_FLIGHT: usize = 3;

/// How the server breaks the connection once it holds IN_FLIGHT requests.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Header of a reply promising 100 bytes, 40 of them, then close.
    CloseMidReply,
    /// 7 bytes of a header, then close.
    CloseMidHeader,
    /// Close with every request unanswered.
    CloseSilently,
    /// A reply whose header announces `len` bytes (> 4096), then the bytes; stays connected.
    Oversized(u32),
    /// 16 bytes of 0xff as a header; stays connected.
    GarbageHeader,
    /// A well-formed reply of another type than the request's; stays connected.
    WrongType,
    /// A reply carrying a req_id no request has, with several in flight; stays connected.
    UnknownReqId,
}

fn header(ty: u32, req_id: u32, len: u32) -> Vec<u8> {
    Header {
        ty,
        req_id,
        tx_id: 0,
        len,
    }
    .to_bytes()
    .to_vec()
}

/// The server: answers the watch, collects IN_FLIGHT requests, tells the test, waits for its go,
/// then commits `fault`.
fn faulty_server(fault: Fault) -> impl FnOnce(Peer<UnixStream>, &Ctl) + Send + 'static {
    move |mut p, ctl| {
        let w = p.recv().expect("watch request");
        assert_eq!(w.ty(), Some(MsgType::XS_WATCH));
        p.reply(&w, b"OK\0");
        let held: Vec<Req> = (0..IN_FLIGHT).map_while(|_| p.recv()).collect();
        if held.len() < IN_FLIGHT {
            return;
        }
        ctl.signal();
        ctl.wait_go();
        let first = &held[0];
        ctl.signal();
        match fault {
            Fault::CloseMidReply => {
                let mut m = header(first.hdr.ty, first.hdr.req_id, 100);
                m.extend_from_slice(&[b'x'; 40]);
                let _ = p.s.write_all(&m);
            }
            Fault::CloseMidHeader => {
                let _ =
                    p.s.write_all(&header(first.hdr.ty, first.hdr.req_id, 4)[..7]);
            }
            Fault::CloseSilently => {}
            Fault::Oversized(len) => {
                let mut m = header(first.hdr.ty, first.hdr.req_id, len);
                m.resize(m.len() + len as usize, b'y');
                let _ = p.s.write_all(&m);
                ctl.hold();
            }
            Fault::GarbageHeader => {
                let _ = p.s.write_all(&[0xff; 16]);
                ctl.hold();
            }
            Fault::WrongType => {
                p.send_raw(MsgType::XS_DIRECTORY as u32, first.hdr.req_id, 0, b"a\0b\0");
                ctl.hold();
            }
            Fault::UnknownReqId => {
                let unused = held
                    .iter()
                    .map(|r| r.hdr.req_id)
                    .max()
                    .unwrap()
                    .wrapping_add(1000);
                p.send_raw(first.hdr.ty, unused, 0, b"value\0");
                ctl.hold();
            }
        }
        // Returning closes the server's side.
    }
}

/// One fault case: park the waiters, strike, check that all of them wake with an error, that
/// the dead handle behaves and closes, and that nothing is left behind.
fn fault_case(name: &'static str, fault: Fault, req_errnos: &'static [i32]) {
    support::case(&format!("fault/{name}"), CASE_LIMIT, move || {
        let before = Resources::now();
        let srv = OneShot::start(faulty_server(fault));
        let h = Shared::open(&srv.os_path(), 0);
        assert!(
            // SAFETY: `h` is live (closed by expect_dead_then_close); the CStrings live to the
            // end of the statement.
            unsafe { xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()) },
            "xs_watch"
        );
        let waiters = Waiters::park(h, IN_FLIGHT, "/r");
        srv.wait_signal(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
        assert!(waiters.all_blocked(), "a thread returned before the fault");
        srv.go();
        let fault_at = srv.wait_signal(Duration::from_secs(5));
        let woken = waiters.expect_woken(fault_at, req_errnos);
        let closed = expect_dead_then_close(h);
        drop(srv);
        before.expect_back(name);
        format!("{fault:?}: {woken}; {closed}; no fd or thread left")
    });
}

const EOF_ERRNOS: &[i32] = &[libc::EBADF];

#[test]
fn close_mid_reply() {
    fault_case("close_mid_reply", Fault::CloseMidReply, EOF_ERRNOS);
}

#[test]
fn close_mid_header() {
    fault_case("close_mid_header", Fault::CloseMidHeader, EOF_ERRNOS);
}

#[test]
fn close_with_requests_unanswered() {
    fault_case(
        "close_with_requests_unanswered",
        Fault::CloseSilently,
        EOF_ERRNOS,
    );
}

#[test]
fn reply_longer_than_4096() {
    fault_case(
        "reply_len_4097",
        Fault::Oversized(PAYLOAD_MAX as u32 + 1),
        &[libc::E2BIG],
    );
}

#[test]
fn reply_header_of_garbage() {
    fault_case("reply_header_all_ff", Fault::GarbageHeader, &[libc::E2BIG]);
}

#[test]
fn reply_of_wrong_type() {
    fault_case("reply_wrong_type", Fault::WrongType, &[libc::EBADF]);
}

#[test]
fn reply_with_unknown_req_id() {
    fault_case("reply_unknown_req_id", Fault::UnknownReqId, &[libc::EBADF]);
}

/// Boundary: a reply of exactly 4096 bytes is legal and arrives whole.
#[test]
fn reply_of_exactly_4096() {
    support::case("fault/reply_len_4096_accepted", CASE_LIMIT, || {
        let value: Vec<u8> = (0..PAYLOAD_MAX).map(|i| (i % 251) as u8).collect();
        let expect = value.clone();
        let srv = OneShot::start(move |mut p, _| {
            while let Some(r) = p.recv() {
                p.reply(&r, &value);
            }
        });
        let h = Shared::open(&srv.os_path(), 0);
        let mut len = 0;
        // SAFETY: live handle; the block returned holds len + 1 bytes.
        unsafe {
            let v = xs_read(h.p(), 0, c("/big").as_ptr(), &mut len);
            assert!(!v.is_null(), "errno {}", errname(errno_now()));
            assert_eq!(
                std::slice::from_raw_parts(v.cast::<u8>(), len as usize),
                &expect[..]
            );
            libc::free(v);
            xs_close(h.p());
        }
        format!("{len}-byte reply intact")
    });
}

/// With a single request in flight, a reply carrying another req_id is still that request's:
/// the C library never looks at req_id, and a peer that does not echo it must keep working.
#[test]
fn unknown_req_id_with_one_request_in_flight() {
    support::case("fault/unknown_req_id_single_request", CASE_LIMIT, || {
        let srv = OneShot::start(|mut p, _| {
            while let Some(r) = p.recv() {
                p.send_raw(r.hdr.ty, r.hdr.req_id ^ 0x5555, 0, b"v\0");
            }
        });
        let h = Shared::open(&srv.os_path(), 0);
        // SAFETY: live handle, NUL-terminated strings.
        unsafe {
            for _ in 0..3 {
                let v = xs_read(h.p(), 0, c("/a").as_ptr(), null_mut());
                assert!(!v.is_null(), "errno {}", errname(errno_now()));
                libc::free(v);
            }
            xs_close(h.p());
        }
        "3 replies with foreign req_ids accepted, as the C library does (it ignores req_id)".into()
    });
}

/// The strings of one event block from xs_read_watch / xs_check_watch, then frees it.
///
/// # Safety
/// As for `take_strings`.
unsafe fn event_strings(ev: *mut *mut std::ffi::c_char, n: usize) -> Vec<String> {
    assert!(!ev.is_null(), "no event: errno {}", errname(errno_now()));
    // SAFETY: the caller's contract.
    unsafe { take_strings(ev, n as u32) }.unwrap()
}

/// Watch events with fewer than two strings (or without a final NUL) are handed out with the
/// missing strings empty, and the connection carries on. (The C library counts the strings as
/// they are: its xs_check_watch asserts there are two, its xs_read_watch returns fewer.)
#[test]
fn watch_events_with_missing_strings() {
    support::case("fault/watch_event_short", CASE_LIMIT, || {
        let before = Resources::now();
        let srv = OneShot::start(|mut p, _| {
            let w = p.recv().unwrap();
            p.reply(&w, b"OK\0");
            let ev = MsgType::XS_WATCH_EVENT as u32;
            p.send_raw(ev, 0, 0, b"/one\0");
            p.send_raw(ev, 0, 0, b"/nonul");
            p.send_raw(ev, 0, 0, b"");
            p.send_raw(ev, 0, 0, b"/p\0t\0extra\0");
            p.send_raw(ev, 0, 0, b"/one-more\0");
            while let Some(r) = p.recv() {
                p.reply(&r, b"fine");
            }
        });
        let h = Shared::open(&srv.os_path(), 0);
        let mut got = Vec::new();
        // SAFETY: live handle, NUL-terminated strings; blocks are freed once read.
        unsafe {
            assert!(xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()));
            for _ in 0..4 {
                let (ev, n) = run_for(Duration::from_secs(5), move || {
                    let mut n = 0;
                    let ev = xs_read_watch(h.p(), &mut n);
                    (ev as usize, n)
                })
                .unwrap();
                got.push(event_strings(ev as *mut *mut std::ffi::c_char, n as usize));
            }
            // xs_check_watch (which the C library would abort in on a one-string event).
            let mut waited = 0;
            let mut ev = xs_check_watch(h.p());
            while ev.is_null() && waited < 500 {
                std::thread::sleep(Duration::from_millis(10));
                waited += 1;
                ev = xs_check_watch(h.p());
            }
            got.push(event_strings(ev, 2));
            let v = xs_read(h.p(), 0, c("/x").as_ptr(), null_mut());
            assert!(
                !v.is_null(),
                "the connection broke: errno {}",
                errname(errno_now())
            );
            libc::free(v);
            xs_close(h.p());
        }
        let expect: Vec<Vec<&str>> = vec![
            vec!["/one", ""],
            vec!["/nonul", ""],
            vec!["", ""],
            vec!["/p", "t", "extra"],
            vec!["/one-more", ""],
        ];
        assert_eq!(got, expect);
        drop(srv);
        before.expect_back("watch_event_short");
        "events '/one\\0', '/nonul', '', 3 strings: path+token always present (missing ones empty), connection still usable".into()
    });
}

/// A reply held back by the server is waited for and arrives intact; meanwhile another
/// thread's request on the same handle is answered and an event is delivered. The server holds
/// the slow reply until the test has seen both, so a quick request that waited for the slow
/// one would hang (and fail the case) instead of merely being slow.
#[test]
fn slow_reply_is_waited_for() {
    support::case("fault/slow_reply", CASE_LIMIT, || {
        let value: Vec<u8> = (0..PAYLOAD_MAX).map(|i| b'a' + (i % 26) as u8).collect();
        let expect = value.clone();
        let srv = OneShot::start(move |mut p, ctl| {
            let w = p.recv().unwrap();
            p.reply(&w, b"OK\0");
            let slow = p.recv().unwrap();
            ctl.signal();
            let fast = p.recv().unwrap();
            p.reply(&fast, b"quick");
            ctl.wait_go();
            p.event("/w/mid", "tok");
            ctl.wait_go();
            p.reply(&slow, &value);
            while let Some(r) = p.recv() {
                p.reply(&r, b"later");
            }
        });
        let h = Shared::open(&srv.os_path(), 0);
        // SAFETY: live handle, NUL-terminated strings; blocks are freed once read.
        unsafe {
            assert!(xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()));
            let slow = std::thread::spawn(move || {
                let mut len = 0;
                let v = xs_read(h.p(), 0, c("/slow").as_ptr(), &mut len);
                assert!(
                    !v.is_null(),
                    "slow read failed: errno {}",
                    errname(errno_now())
                );
                let got = std::slice::from_raw_parts(v.cast::<u8>(), len as usize).to_vec();
                libc::free(v);
                got
            });
            srv.wait_signal(Duration::from_secs(5));
            let v = xs_read(h.p(), 0, c("/fast").as_ptr(), null_mut());
            assert!(!v.is_null());
            libc::free(v);
            assert!(!slow.is_finished(), "the slow reply was not sent yet");
            srv.go();
            let mut n = 0;
            let ev = xs_read_watch(h.p(), &mut n);
            assert_eq!(event_strings(ev, n as usize), ["/w/mid", "tok"]);
            assert!(!slow.is_finished(), "the slow reply was not sent yet");
            srv.go();
            let got = slow.join().unwrap();
            assert_eq!(got, expect, "slow reply corrupted");
            let v = xs_read(h.p(), 0, c("/next").as_ptr(), null_mut());
            assert!(!v.is_null());
            libc::free(v);
            xs_close(h.p());
            "4096-byte reply held back by the server: another request on the handle answered and an event delivered meanwhile, then the reply intact".into()
        }
    });
}

/// A reply and an event dribbled out in small pieces (splitting headers too) over about a
/// second are reassembled intact.
#[test]
fn trickled_reply_and_event() {
    support::case("fault/trickled_reply", CASE_LIMIT, || {
        let value: Vec<u8> = (0..PAYLOAD_MAX).map(|i| (i * 7 % 256) as u8).collect();
        let expect = value.clone();
        let srv = OneShot::start(move |mut p, _| {
            let w = p.recv().unwrap();
            p.reply(&w, b"OK\0");
            let r = p.recv().unwrap();
            let mut bytes = header(MsgType::XS_WATCH_EVENT as u32, 0, 9);
            bytes.extend_from_slice(b"/w/x\0tok\0");
            bytes.extend(header(r.hdr.ty, r.hdr.req_id, value.len() as u32));
            bytes.extend_from_slice(&value);
            for chunk in bytes.chunks(61) {
                if p.s.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(12));
            }
            while let Some(r) = p.recv() {
                p.reply(&r, b"ok");
            }
        });
        let h = Shared::open(&srv.os_path(), 0);
        // SAFETY: live handle, NUL-terminated strings; blocks are freed once read.
        unsafe {
            assert!(xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()));
            let t0 = Instant::now();
            let mut len = 0;
            let v = xs_read(h.p(), 0, c("/trickle").as_ptr(), &mut len);
            assert!(!v.is_null(), "errno {}", errname(errno_now()));
            assert_eq!(
                std::slice::from_raw_parts(v.cast::<u8>(), len as usize),
                &expect[..]
            );
            libc::free(v);
            let took = t0.elapsed();
            let mut n = 0;
            let ev = xs_read_watch(h.p(), &mut n);
            assert_eq!(event_strings(ev, n as usize), ["/w/x", "tok"]);
            xs_close(h.p());
            format!(
                "event + 4096-byte reply sent in 61-byte pieces every 12 ms: intact after {:.2} s",
                took.as_secs_f64()
            )
        }
    });
}

/// The daemon hangs up before the request is written: EPIPE from the write, no SIGPIPE (the
/// case runs with SIGPIPE at its default action), then EBADF.
#[test]
fn daemon_gone_before_the_request() {
    support::case("fault/peer_closed_before_write", CASE_LIMIT, || {
        let srv = OneShot::start(|p, ctl| {
            drop(p);
            ctl.signal();
        });
        let h = Shared::open(&srv.os_path(), 0);
        srv.wait_signal(Duration::from_secs(5));
        // SAFETY: live handle, NUL-terminated strings.
        unsafe {
            *libc::__errno_location() = 0;
            let ok = xs_write(h.p(), 0, c("/a").as_ptr(), b"x".as_ptr().cast(), 1);
            let e = errno_now();
            assert!(!ok);
            assert!(
                e == libc::EPIPE || e == libc::ECONNRESET,
                "errno {}",
                errname(e)
            );
            assert!(!xs_mkdir(h.p(), 0, c("/b").as_ptr()));
            assert_eq!(errno_now(), libc::EBADF);
            xs_close(h.p());
            format!("write failed with {} (no SIGPIPE), then EBADF", errname(e))
        }
    });
}

/// Events that arrived before the connection died are still handed out, in order; only then
/// do xs_read_watch and xs_check_watch fail (EINVAL), and the pipe stays readable throughout.
#[test]
fn events_queued_before_death_are_delivered() {
    support::case("fault/events_then_close", CASE_LIMIT, || {
        let before = Resources::now();
        let srv = OneShot::start(|mut p, ctl| {
            let w = p.recv().unwrap();
            p.reply(&w, b"OK\0");
            for i in 0..3 {
                p.event(&format!("/w/{i}"), "tok");
            }
            ctl.signal();
        });
        let h = Shared::open(&srv.os_path(), 0);
        // SAFETY: live handle, NUL-terminated strings; blocks are freed once read.
        let got = unsafe {
            assert!(xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()));
            srv.wait_signal(Duration::from_secs(5));
            let fd = xs_fileno(h.p());
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while got.len() < 3 {
                assert!(Instant::now() < deadline, "events not delivered");
                let mut n = 0;
                let ev = xs_read_watch(h.p(), &mut n);
                got.push(event_strings(ev, n as usize)[0].clone());
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            assert_eq!(
                libc::poll(&mut p, 1, 5000),
                1,
                "pipe not readable once the connection is gone"
            );
            let mut n = 0;
            assert!(xs_read_watch(h.p(), &mut n).is_null());
            assert_eq!(errno_now(), libc::EINVAL);
            got
        };
        assert_eq!(got, ["/w/0", "/w/1", "/w/2"]);
        let closed = expect_dead_then_close(h);
        drop(srv);
        before.expect_back("events_then_close");
        format!(
            "3 events queued before EOF handed out in order, then xs_read_watch EINVAL; {closed}"
        )
    });
}

/// A reply nobody asked for, while no request is in flight (the watch thread reads it): the
/// stream cannot be trusted, so the connection dies and the watch reader and poller wake.
#[test]
fn unsolicited_reply_while_idle() {
    support::case("fault/unsolicited_reply_idle", CASE_LIMIT, || {
        let before = Resources::now();
        let srv = OneShot::start(|mut p, ctl| {
            let w = p.recv().unwrap();
            p.reply(&w, b"OK\0");
            ctl.signal();
            ctl.wait_go();
            ctl.signal();
            p.send_raw(MsgType::XS_READ as u32, 77, 0, b"surprise\0");
            ctl.hold();
        });
        let h = Shared::open(&srv.os_path(), 0);
        // SAFETY: live handle, NUL-terminated strings.
        assert!(unsafe { xs_watch(h.p(), c("/w").as_ptr(), c("tok").as_ptr()) });
        srv.wait_signal(Duration::from_secs(5));
        let waiters = Waiters::park(h, 0, "/unused");
        std::thread::sleep(Duration::from_millis(50));
        assert!(waiters.all_blocked());
        srv.go();
        let at = srv.wait_signal(Duration::from_secs(5));
        let woken = waiters.expect_woken(at, &[]);
        let closed = expect_dead_then_close(h);
        drop(srv);
        before.expect_back("unsolicited_reply_idle");
        format!("{woken}; {closed}")
    });
}

/// The daemon stops reading (its socket buffer fills, so writers block inside send()), then
/// closes: the blocked writers, those queued behind them for the write lock and those waiting
/// for replies all come back with errors, and no SIGPIPE is raised.
#[test]
fn daemon_stops_reading_then_closes() {
    const WRITERS: usize = 80;
    support::case("fault/peer_stops_reading_then_closes", CASE_LIMIT, || {
        let before = Resources::now();
        let srv = OneShot::start(|p, ctl| {
            ctl.wait_go();
            ctl.signal();
            drop(p);
        });
        let h = Shared::open(&srv.os_path(), 0);
        let value = vec![b'v'; 4000];
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let value = value.clone();
                std::thread::spawn(move || {
                    let path = c(&format!("/big{i}"));
                    // SAFETY: live handle, NUL-terminated path, `value` outlives the call.
                    let ok = unsafe {
                        xs_write(
                            h.p(),
                            0,
                            path.as_ptr(),
                            value.as_ptr().cast(),
                            value.len() as u32,
                        )
                    };
                    Outcome {
                        ok,
                        errno: errno_now(),
                        at: Instant::now(),
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            writers.iter().all(|t| !t.is_finished()),
            "a write returned with nobody reading"
        );
        srv.go();
        let at = srv.wait_signal(Duration::from_secs(5));
        let mut slowest = Duration::ZERO;
        let mut seen = Vec::new();
        for (i, t) in writers.into_iter().enumerate() {
            while !t.is_finished() {
                assert!(at.elapsed() < WAKE_LIMIT, "writer {i} still blocked");
                std::thread::sleep(Duration::from_millis(1));
            }
            let o = t.join().unwrap();
            assert!(!o.ok, "writer {i} succeeded");
            assert!(
                [libc::EPIPE, libc::ECONNRESET, libc::EBADF].contains(&o.errno),
                "writer {i}: {}",
                errname(o.errno)
            );
            slowest = slowest.max(o.at.saturating_duration_since(at));
            if !seen.contains(&errname(o.errno)) {
                seen.push(errname(o.errno));
            }
        }
        // SAFETY: no other thread uses the handle any more.
        unsafe { xs_close(h.p()) };
        drop(srv);
        before.expect_back("peer_stops_reading_then_closes");
        format!(
            "{WRITERS} threads writing 4000 bytes each (~{} KiB, more than the socket buffers hold) to a peer that never reads: all failed ({}) within {:.1} ms of its close",
            WRITERS * 4016 / 1024,
            seen.join("/"),
            slowest.as_secs_f64() * 1000.0
        )
    });
}
