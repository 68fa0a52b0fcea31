//! Corner cases against scripted servers: DIRECTORY_PART, protocol violations, vanishing
//! daemons, replies out of order, fork.

mod util;
use util::client_support;

use std::ptr::null_mut;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use client_support::*;
use ffi::*;
use xenstore::client::Errno;
use xenstore::wire::MsgType;

/// A directory too big for one reply: the store answers DIRECTORY with E2BIG and serves
/// DIRECTORY_PART two children at a time; the client asks from each offset it has reached.
#[test]
fn directory_part_assembles_the_pieces() {
    let offsets = Arc::new(Mutex::new(Vec::new()));
    let seen = offsets.clone();
    let srv = Server::start(move |mut p| {
        let list: &[u8] = b"aa\0bbb\0c\0";
        while let Some(r) = p.recv() {
            match r.ty() {
                Some(MsgType::XS_DIRECTORY) => p.error(&r, "E2BIG"),
                Some(MsgType::XS_DIRECTORY_PART) => {
                    let off: usize = r.strings()[1].parse().unwrap();
                    seen.lock().unwrap().push(off);
                    let chunk = list[off..]
                        .split_inclusive(|&c| c == 0)
                        .take(2)
                        .collect::<Vec<_>>()
                        .concat();
                    let mut body = b"7\0".to_vec();
                    body.extend_from_slice(&chunk);
                    if off + chunk.len() == list.len() {
                        body.push(0); // the end marker: an empty string
                    }
                    p.reply(&r, &body);
                }
                _ => p.error(&r, "ENOSYS"),
            }
        }
    });
    let h = srv.c_handle(0);
    let mut n = 0;
    // SAFETY: `h` is the live handle just opened; the path is a CString that lives to the end
    // of the statement; `n` is a c_uint on this stack.
    let d = unsafe { xs_directory(h, 0, c("/big").as_ptr(), &mut n) };
    assert!(!d.is_null(), "errno {}", errno());
    // SAFETY: `d` is the string array xs_directory handed over, with `n` entries.
    assert_eq!(unsafe { take_strings(d, n) }.unwrap(), ["aa", "bbb", "c"]);
    // SAFETY: `h` is live and not used again.
    unsafe { xs_close(h) };
    assert_eq!(*offsets.lock().unwrap(), vec![0, 7]);
}

#[test]
fn directory_part_restarts_when_generation_changes() {
    let srv = Server::start(move |mut p| {
        let mut calls = 0;
        while let Some(r) = p.recv() {
            match r.ty() {
                Some(MsgType::XS_DIRECTORY) => p.error(&r, "E2BIG"),
                Some(MsgType::XS_DIRECTORY_PART) => {
                    calls += 1;
                    let off = r.strings()[1].clone();
                    let body: &[u8] = match (calls, off.as_str()) {
                        (1, "0") => b"1\0old\0",    // first part, generation 1
                        (2, "4") => b"2\0zzz\0\0",  // node changed: generation 2
                        (3, "0") => b"2\0new1\0",   // restart from 0
                        (4, "5") => b"2\0new2\0\0", // end
                        _ => b"9\0bad\0\0",
                    };
                    p.reply(&r, body);
                }
                _ => p.error(&r, "ENOSYS"),
            }
        }
    });
    let h = srv.handle(0);
    assert_eq!(
        h.directory(0, b"/big").unwrap(),
        vec![b"new1".to_vec(), b"new2".to_vec()]
    );
}

#[test]
fn directory_part_unsupported_is_e2big() {
    let srv = Server::start(|mut p| {
        while let Some(r) = p.recv() {
            match r.ty() {
                Some(MsgType::XS_DIRECTORY) => p.error(&r, "E2BIG"),
                _ => p.error(&r, "ENOSYS"),
            }
        }
    });
    let h = srv.handle(0);
    assert_eq!(h.directory(0, b"/big"), Err(Errno(libc::E2BIG)));
    // The connection is fine afterwards.
    assert_eq!(h.read(0, b"/x"), Err(Errno(libc::ENOSYS)));
}

#[test]
fn wrong_reply_type_closes_the_connection() {
    let srv = Server::start(|mut p| {
        while let Some(r) = p.recv() {
            p.send_raw(MsgType::XS_MKDIR as u32, r.hdr.req_id, 0, b"OK\0");
        }
    });
    let h = srv.c_handle(0);
    set_errno(0);
    // SAFETY: `h` is live; the path is a CString that lives to the end of the statement; `len`
    // may be NULL; a NULL result (asserted) needs no free.
    assert!(unsafe { xs_read(h, 0, c("/a").as_ptr(), null_mut()) }.is_null());
    assert_eq!(errno(), libc::EBADF);
    set_errno(0);
    assert!(
        // SAFETY: `h` is live; the path is a CString that lives to the end of the statement.
        !unsafe { xs_mkdir(h, 0, c("/a").as_ptr()) },
        "closed for good, as the C library does"
    );
    assert_eq!(errno(), libc::EBADF);
    // SAFETY: `h` is live and not used again.
    unsafe { xs_close(h) };
}

#[test]
fn daemon_dying_mid_reply_gives_errors_not_hangs() {
    let srv = Server::start(|mut p| {
        if let Some(r) = p.recv() {
            // Header promising 10 bytes, then only 3, then gone.
            let h = xenstore::wire::Header {
                ty: r.hdr.ty,
                req_id: r.hdr.req_id,
                tx_id: 0,
                len: 10,
            };
            let mut m = h.to_bytes().to_vec();
            m.extend_from_slice(b"abc");
            use std::io::Write;
            let _ = p.s.write_all(&m);
        }
    });
    let h = srv.handle(0);
    let r = within(10, move || {
        let first = h.read(0, b"/a");
        let second = h.read(0, b"/a");
        (first, second)
    });
    assert_eq!(r.0, Err(Errno(libc::EBADF)));
    assert_eq!(r.1, Err(Errno(libc::EBADF)));
}

#[test]
fn oversized_reply_header_kills_the_connection() {
    let srv = Server::start(|mut p| {
        if let Some(r) = p.recv() {
            let h = xenstore::wire::Header {
                ty: r.hdr.ty,
                req_id: r.hdr.req_id,
                tx_id: 0,
                len: 5000,
            };
            use std::io::Write;
            let _ = p.s.write_all(&h.to_bytes());
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let h = srv.handle(0);
    assert_eq!(
        within(10, move || h.read(0, b"/a")),
        Err(Errno(libc::E2BIG))
    );
}

/// Several threads share one handle; the store collects all their requests before answering
/// any, then answers in reverse order. Each thread must get its own reply: only possible if the
/// requests really are in flight together and matched by req_id.
#[test]
fn replies_out_of_order_reach_their_requesters() {
    const N: usize = 6;
    let srv = Server::start(|mut p| loop {
        let mut batch = Vec::new();
        for _ in 0..N {
            match p.recv() {
                Some(r) => batch.push(r),
                None => return,
            }
        }
        let ids: std::collections::HashSet<u32> = batch.iter().map(|r| r.hdr.req_id).collect();
        assert_eq!(ids.len(), N, "req_ids are unique among requests in flight");
        for r in batch.iter().rev() {
            let path = r.strings()[0].clone();
            // An unrelated event in between, as a busy store would send.
            p.event("/ev", "tok");
            p.reply(r, format!("value of {path}").as_bytes());
        }
    });
    let h = Arc::new(srv.handle(0));
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (h, b) = (h.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                let path = format!("/k{i}");
                (path.clone(), h.read(0, path.as_bytes()))
            })
        })
        .collect();
    let results = within(20, move || {
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (path, r) in results {
        assert_eq!(r.unwrap(), format!("value of {path}").into_bytes());
    }
}

/// Same, with the watch thread running: replies still go to their requesters and the events
/// in between land in the watch queue.
#[test]
fn out_of_order_with_watch_thread() {
    const N: usize = 4;
    let srv = Server::start(|mut p| {
        // First: the watch request.
        let w = p.recv().unwrap();
        p.reply(&w, b"OK\0");
        loop {
            let mut batch = Vec::new();
            for _ in 0..N {
                match p.recv() {
                    Some(r) => batch.push(r),
                    None => return,
                }
            }
            for r in batch.iter().rev() {
                p.event("/ev", "tok");
                let path = r.strings()[0].clone();
                p.reply(r, path.as_bytes());
            }
        }
    });
    let h = Arc::new(srv.handle(0));
    h.watch(b"/ev", b"tok").unwrap();
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (h, b) = (h.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                let path = format!("/k{i}");
                (path.clone(), h.read(0, path.as_bytes()))
            })
        })
        .collect();
    let results = within(20, move || {
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (path, r) in results {
        assert_eq!(r.unwrap(), path.into_bytes());
    }
    for _ in 0..N {
        let ev = within(5, {
            let h = h.clone();
            move || h.read_watch()
        })
        .unwrap();
        assert_eq!((ev.path(), ev.token()), (&b"/ev"[..], &b"tok"[..]));
    }
    assert_eq!(h.check_watch(), Ok(None));
}

/// A daemon that never echoes req_id: with one request in flight its reply is still ours.
#[test]
fn peer_not_echoing_req_id() {
    let srv = Server::start(|mut p| {
        while let Some(r) = p.recv() {
            p.send_raw(r.hdr.ty, 0, 0, b"v\0");
        }
    });
    let h = srv.handle(0);
    for _ in 0..3 {
        assert_eq!(h.read(0, b"/a").unwrap(), b"v\0");
    }
}

/// Losing the connection wakes a blocked xs_read_watch, a poller on xs_fileno, and makes
/// xs_check_watch fail with something other than EAGAIN.
#[test]
fn connection_loss_wakes_every_waiter() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let srv = Server::start(move |mut p| {
        let w = p.recv().unwrap();
        p.reply(&w, b"OK\0");
        // Hang up when the test says so.
        let _ = rx.lock().unwrap().recv();
    });
    let h = srv.c_handle(0);
    let hp = h as usize;
    // SAFETY: for every call here, `h` is live until the xs_close at the end, which runs after the
    // reader thread was joined; paths are CStrings that live to the end of their statement;
    // `fd` is the handle's own pipe, open until xs_close.
    unsafe {
        let fd = xs_fileno(h);
        assert!(xs_watch(h, c("/w").as_ptr(), c("t").as_ptr()));
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            set_errno(0);
            let r = xs_read_watch(hp as *mut xs_handle, &mut n);
            (r.is_null(), errno())
        });
        let poller = std::thread::spawn(move || readable(fd, 10_000));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished() && !poller.is_finished());
        tx.send(()).unwrap();
        assert!(poller.join().unwrap(), "poller woken");
        assert_eq!(reader.join().unwrap(), (true, libc::EINVAL));
        set_errno(0);
        assert!(xs_check_watch(h).is_null());
        assert_ne!(errno(), libc::EAGAIN);
        assert!(readable(fd, 0), "stays readable: nothing more will come");
        set_errno(0);
        assert!(!xs_mkdir(h, 0, c("/x").as_ptr()));
        assert_eq!(errno(), libc::EBADF);
        within(5, move || xs_close(hp as *mut xs_handle));
    }
}

/// The watch thread exits on xs_close even while idle in poll, and with events still queued.
#[test]
fn close_stops_the_watch_thread() {
    let store = MiniStore::new();
    let srv = store.serve();
    for _ in 0..20 {
        let h = srv.c_handle(0) as usize;
        // SAFETY: `h` was just opened and only this closure uses it, closing it last; the
        // CStrings live to the end of their statements.
        within(10, move || unsafe {
            let h = h as *mut xs_handle;
            assert!(xs_watch(h, c("/a").as_ptr(), c("t").as_ptr()));
            assert!(xs_watch(h, c("/b").as_ptr(), c("t").as_ptr()));
            xs_close(h);
        });
    }
}

/// In a forked child the handle can be dropped without a thread to join and without touching
/// the parent's connection.
#[test]
fn destroy_postfork_in_a_child() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end (the child only hands
    // it to xs_daemon_destroy_postfork, which exists for that, then _exits); CStrings live to
    // the end of their statements; the event block is freed once.
    unsafe {
        assert!(xs_watch(h, c("/a").as_ptr(), c("t").as_ptr()));
        assert!(xs_fileno(h) >= 0);
        let pid = libc::fork();
        if pid == 0 {
            xs_daemon_destroy_postfork(h);
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
        // The parent's connection is untouched.
        assert!(xs_write(
            h,
            0,
            c("/after").as_ptr(),
            b"1".as_ptr().cast(),
            1
        ));
        let mut n = 0;
        let ev = xs_read_watch(h, &mut n);
        assert!(!ev.is_null());
        libc::free(ev.cast());
        xs_close(h);
    }
}

/// The watch thread runs with every signal blocked, so signals go to the application's threads.
#[test]
fn watch_thread_blocks_all_signals() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.handle(0);
    h.watch(b"/sig", b"t").unwrap();
    // The thread names itself once it runs, which may be after xs_watch returned.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir("/proc/self/task").unwrap().any(|t| {
        std::fs::read_to_string(t.unwrap().path().join("comm"))
            .is_ok_and(|c| c.trim() == "xenstore-watch")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no xenstore-watch thread found"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut found = false;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "xenstore-watch" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .unwrap()
            .trim()
            .to_string();
        let mask = u64::from_str_radix(&blocked, 16).unwrap();
        // SIGKILL and SIGSTOP cannot be blocked; glibc also keeps its two internal signals
        // (32, 33) out of a sigfillset mask.
        let unblockable =
            (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1)) | (1 << 31) | (1 << 32);
        assert_eq!(mask | unblockable, u64::MAX, "SigBlk {blocked}");
        found = true;
    }
    assert!(found, "no xenstore-watch thread found");
}
