//! The C ABI against a small in-memory store: result shapes, errno, payload formats, watches.

mod util;
use util::client_support;

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::ptr::null_mut;

use client_support::*;
use ffi::*;
use xenstore::wire::MsgType;

/// # Safety
/// `p` points to a NUL-terminated string that stays put for `'a`.
unsafe fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p).to_bytes() }
}

/// Checks the C library's string-array shape: the pointers point into the same block, just
/// after the array, consecutively; then frees it.
///
/// # Safety
/// As for `take_strings`: `block` is such an array of `n` strings, handed over by the library.
unsafe fn take_laid_out(block: *mut *mut c_char, n: c_uint) -> Vec<Vec<u8>> {
    assert!(!block.is_null());
    // The pointer arithmetic below is wrapping: it only computes where the C layout puts each
    // string, to compare; what is read is the array's own pointers.
    let mut at = block.wrapping_add(n as usize) as *mut c_char;
    let mut out = Vec::new();
    for i in 0..n as usize {
        // SAFETY: i < n: one of the array's pointers.
        let s = unsafe { *block.add(i) };
        assert_eq!(s, at, "string {i} is not where the C layout puts it");
        // SAFETY: each pointer of the array is a NUL-terminated string in the live block.
        let b = unsafe { cstr(s) }.to_vec();
        at = at.wrapping_add(b.len() + 1);
        out.push(b);
    }
    // SAFETY: the block came from the library's malloc; `out` holds copies.
    unsafe { libc::free(block.cast()) };
    out
}

#[test]
fn read_write_and_shapes() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        assert!(xs_write(
            h,
            0,
            c("/a").as_ptr(),
            b"hello".as_ptr().cast(),
            5
        ));
        let mut len: c_uint = 99;
        let v = xs_read(h, 0, c("/a").as_ptr(), &mut len) as *mut u8;
        assert_eq!(len, 5);
        assert_eq!(std::slice::from_raw_parts(v, 6), b"hello\0");
        libc::free(v.cast());

        // Empty value: a valid, NUL-terminated empty block.
        assert!(xs_write(h, 0, c("/e").as_ptr(), std::ptr::null(), 0));
        let v = xs_read(h, 0, c("/e").as_ptr(), &mut len) as *mut u8;
        assert!(!v.is_null());
        assert_eq!((len, *v), (0, 0));
        libc::free(v.cast());
        // len may be NULL.
        let v = xs_read(h, 0, c("/a").as_ptr(), null_mut());
        libc::free(v);

        assert!(xs_mkdir(h, 0, c("/d").as_ptr()));
        for k in ["x", "yy", "zzz"] {
            assert!(xs_write(
                h,
                0,
                c(&format!("/d/{k}")).as_ptr(),
                b"1".as_ptr().cast(),
                1
            ));
        }
        let mut n: c_uint = 0;
        let d = xs_directory(h, 0, c("/d").as_ptr(), &mut n);
        assert_eq!(n, 3);
        assert_eq!(
            take_laid_out(d, n),
            vec![b"x".to_vec(), b"yy".to_vec(), b"zzz".to_vec()]
        );

        assert!(xs_mkdir(h, 0, c("/empty").as_ptr()));
        let d = xs_directory(h, 0, c("/empty").as_ptr(), &mut n);
        assert!(
            !d.is_null(),
            "an empty directory is an empty list, not a failure"
        );
        assert_eq!(n, 0);
        libc::free(d.cast());

        assert!(xs_rm(h, 0, c("/d").as_ptr()));
        set_errno(0);
        assert!(xs_read(h, 0, c("/d/x").as_ptr(), &mut len).is_null());
        assert_eq!(errno(), libc::ENOENT);
        xs_close(h);
    }
}

#[test]
fn errors_and_bad_arguments() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        let cases: [(&dyn Fn() -> bool, &str); 9] = [
            (
                &|| xs_read(null_mut(), 0, c("/a").as_ptr(), null_mut()).is_null(),
                "NULL handle",
            ),
            (
                &|| xs_read(h, 0, std::ptr::null(), null_mut()).is_null(),
                "NULL path",
            ),
            (
                &|| !xs_watch(h, c("/a").as_ptr(), std::ptr::null()),
                "NULL token",
            ),
            (
                &|| !xs_watch(null_mut(), c("/a").as_ptr(), c("t").as_ptr()),
                "NULL handle watch",
            ),
            (
                &|| !xs_write(h, 0, c("/a").as_ptr(), std::ptr::null(), 3),
                "NULL data",
            ),
            (&|| xs_fileno(null_mut()) == -1, "NULL fileno"),
            (&|| xs_check_watch(null_mut()).is_null(), "NULL check_watch"),
            (
                &|| xs_transaction_start(null_mut()) == 0,
                "NULL transaction_start",
            ),
            (
                &|| !xs_path_is_subpath(std::ptr::null(), c("/a").as_ptr()),
                "NULL subpath",
            ),
        ];
        for (f, name) in cases {
            set_errno(0);
            assert!(f(), "{name}");
            assert_eq!(errno(), libc::EINVAL, "{name}");
        }
        xs_close(null_mut()); // harmless

        set_errno(0);
        assert!(!xs_restrict(h, 1));
        assert_eq!(errno(), 0, "xs_restrict leaves errno alone");

        // Over-long payloads are refused before sending; the connection stays usable.
        let big = vec![b'x'; 4096];
        set_errno(0);
        assert!(!xs_write(
            h,
            0,
            c("/big").as_ptr(),
            big.as_ptr().cast(),
            4096
        ));
        assert_eq!(errno(), libc::E2BIG);
        assert!(xs_write(
            h,
            0,
            c("/big").as_ptr(),
            big.as_ptr().cast(),
            4091
        )); // "/big\0" + 4091 = 4096;
        let long_path = c(&format!("/{}", "p".repeat(5000)));
        assert!(xs_read(h, 0, long_path.as_ptr(), null_mut()).is_null());
        assert_eq!(errno(), libc::E2BIG);
        assert!(xs_mkdir(h, 0, c("/still-ok").as_ptr()));
        assert!(!store.log().iter().any(|r| r.body.len() > 4096));
        xs_close(h);
    }
}

#[test]
fn error_names_become_errno() {
    let srv = Server::start(|mut p| {
        while let Some(r) = p.recv() {
            let name = String::from_utf8_lossy(&r.body[..r.body.len() - 1]).into_owned();
            p.error(&r, &name);
        }
    });
    let h = srv.c_handle(0);
    for (name, e) in [
        ("EACCES", libc::EACCES),
        ("EAGAIN", libc::EAGAIN),
        ("E2BIG", libc::E2BIG),
        ("EWHAT", libc::EINVAL),
        ("EPERM", libc::EPERM),
    ] {
        // SAFETY: `h` is live (closed after the loop); the path is a CString that lives to the
        // end of the statement; `len` may be NULL; a NULL result (asserted) needs no free.
        unsafe {
            set_errno(0);
            // E2BIG on DIRECTORY would switch to DIRECTORY_PART; READ keeps it plain.
            assert!(xs_read(h, 0, c(name).as_ptr(), null_mut()).is_null());
            assert_eq!(errno(), e, "{name}");
        }
    }
    // SAFETY: `h` is live and not used again.
    unsafe { xs_close(h) };
}

#[test]
fn permissions_both_ways() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        assert!(xs_mkdir(h, 0, c("/p").as_ptr()));
        let mut n = 0;
        let p = xs_get_permissions(h, 0, c("/p").as_ptr(), &mut n);
        assert_eq!(n, 2);
        let got = std::slice::from_raw_parts(p, 2).to_vec();
        libc::free(p.cast());
        assert_eq!(
            (got[0].id, got[0].perms, got[1].id, got[1].perms),
            (0, 0, 5, 1)
        );

        let mut set = [
            xs_permissions { id: 0, perms: 0 },
            xs_permissions {
                id: 7,
                perms: 3 | 0x10,
            },
            xs_permissions {
                id: u32::MAX,
                perms: 2,
            },
        ];
        assert!(xs_set_permissions(
            h,
            0,
            c("/p").as_ptr(),
            set.as_mut_ptr(),
            3
        ));
        let last = store
            .log()
            .into_iter()
            .rev()
            .find(|r| r.ty() == Some(MsgType::XS_SET_PERMS))
            .unwrap();
        assert_eq!(last.body, b"/p\0n0\0b7\0w-1\0");
        set[0].perms = 8;
        set_errno(0);
        assert!(!xs_set_permissions(
            h,
            0,
            c("/p").as_ptr(),
            set.as_mut_ptr(),
            3
        ));
        assert_eq!(errno(), libc::EINVAL);

        let mut out = [xs_permissions { id: 9, perms: 9 }; 3];
        // Three strings back to back, each with its NUL.
        let three: &[u8] = b"r1\0b0x10\0n-1\0";
        assert!(xs_strings_to_perms(
            out.as_mut_ptr(),
            3,
            three.as_ptr().cast()
        ));
        assert_eq!((out[0].id, out[0].perms), (1, 1));
        assert_eq!((out[1].id, out[1].perms), (16, 3));
        assert_eq!((out[2].id, out[2].perms), (u32::MAX, 0));
        assert!(!xs_strings_to_perms(out.as_mut_ptr(), 1, c"q1".as_ptr()));
        assert_eq!(errno(), libc::EINVAL);
        assert!(!xs_strings_to_perms(out.as_mut_ptr(), 1, c"r".as_ptr()));
        assert!(xs_strings_to_perms(out.as_mut_ptr(), 0, std::ptr::null()));
        xs_close(h);
    }
}

#[test]
fn message_formats_of_the_domain_calls() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        assert_eq!(xs_transaction_start(h), 1);
        assert!(xs_write(h, 1, c("/t").as_ptr(), b"v".as_ptr().cast(), 1));
        assert!(xs_transaction_end(h, 1, false));
        assert!(xs_transaction_end(h, 1, true));
        assert!(xs_introduce_domain(h, 5, 0x1234_5678_9abc, 7));
        assert!(xs_set_target(h, 5, 6));
        assert!(xs_resume_domain(h, 5));
        assert!(xs_release_domain(h, 5));
        let p = xs_get_domain_path(h, 12);
        assert_eq!(cstr(p), b"/local/domain/12");
        libc::free(p.cast());
        assert!(xs_is_domain_introduced(h, 0));
        assert!(!xs_is_domain_introduced(h, 3));
        let mut f = 0;
        assert!(xs_get_features_supported(h, &mut f));
        assert_eq!(f, 4);
        assert!(xs_get_features_domain(h, 3, &mut f));
        assert_eq!(f, 3);
        assert!(xs_set_features_domain(h, 3, 1));
        let mut n = 0;
        let q = xs_get_quota_names(h, &mut n);
        assert_eq!(
            take_laid_out(q as *mut *mut c_char, n),
            vec![
                b"nodes".to_vec(),
                b"watches".to_vec(),
                b"transactions".to_vec()
            ]
        );
        let mut v = 0;
        assert!(xs_get_global_quota(h, c("nodes").as_ptr(), &mut v));
        assert_eq!(v, 1000);
        assert!(xs_set_global_quota(h, c("nodes").as_ptr(), 5));
        assert!(xs_get_domain_quota(h, 3, c("nodes").as_ptr(), &mut v));
        assert!(xs_set_domain_quota(h, 3, c("nodes").as_ptr(), 6));
        let r = xs_control_command(h, c("log").as_ptr(), c"on".as_ptr() as *mut c_void, 3);
        assert_eq!(cstr(r), b"ctl:log");
        libc::free(r.cast());
        let r = xs_debug_command(h, c("print").as_ptr(), null_mut(), 0);
        libc::free(r.cast());
        xs_close(h);
    }
    let log = store.log();
    let find = |ty: MsgType| {
        log.iter()
            .filter(move |r| r.ty() == Some(ty))
            .map(|r| (r.hdr.tx_id, r.body.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find(MsgType::XS_TRANSACTION_START),
        vec![(0, b"\0".to_vec())]
    );
    assert_eq!(
        find(MsgType::XS_TRANSACTION_END),
        vec![(1, b"T\0".to_vec()), (1, b"F\0".to_vec())]
    );
    assert_eq!(find(MsgType::XS_WRITE), vec![(1, b"/t\0v".to_vec())]);
    assert_eq!(
        find(MsgType::XS_INTRODUCE)[0].1,
        b"5\x0020015998343868\x007\0"
    );
    assert_eq!(find(MsgType::XS_SET_TARGET)[0].1, b"5\x006\0");
    assert_eq!(find(MsgType::XS_RESUME)[0].1, b"5\0");
    assert_eq!(find(MsgType::XS_RELEASE)[0].1, b"5\0");
    assert_eq!(find(MsgType::XS_GET_DOMAIN_PATH)[0].1, b"12\0");
    assert_eq!(
        find(MsgType::XS_GET_FEATURE)
            .iter()
            .map(|x| x.1.clone())
            .collect::<Vec<_>>(),
        vec![b"".to_vec(), b"3\0".to_vec()]
    );
    assert_eq!(find(MsgType::XS_SET_FEATURE)[0].1, b"3\x001\0");
    let quotas: Vec<_> = find(MsgType::XS_GET_QUOTA)
        .into_iter()
        .map(|x| x.1)
        .collect();
    assert_eq!(
        quotas,
        vec![b"".to_vec(), b"nodes\0".to_vec(), b"3\0nodes\0".to_vec()]
    );
    let setq: Vec<_> = find(MsgType::XS_SET_QUOTA)
        .into_iter()
        .map(|x| x.1)
        .collect();
    assert_eq!(
        setq,
        vec![b"nodes\x005\0".to_vec(), b"3\0nodes\x006\0".to_vec()]
    );
    assert_eq!(
        find(MsgType::XS_CONTROL)
            .iter()
            .map(|x| x.1.clone())
            .collect::<Vec<_>>(),
        vec![b"log\0on\0".to_vec(), b"print\0".to_vec()]
    );
}

#[test]
fn watches_through_the_pipe() {
    let store = MiniStore::new();
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        let fd = xs_fileno(h);
        assert!(fd >= 0);
        assert_eq!(xs_fileno(h), fd, "one pipe per handle");
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert!(flags & libc::FD_CLOEXEC != 0);
        set_errno(0);
        assert!(xs_check_watch(h).is_null());
        assert_eq!(errno(), libc::EAGAIN);

        assert!(xs_watch(h, c("/w").as_ptr(), c("tok").as_ptr()));
        // The initial event makes the pipe readable.
        assert!(readable(fd, 5000));
        let ev = xs_check_watch(h);
        assert_eq!(take_laid_out(ev, 2), vec![b"/w".to_vec(), b"tok".to_vec()]);
        assert!(!readable(fd, 0), "drained when the queue empties");
        set_errno(0);
        assert!(xs_check_watch(h).is_null());
        assert_eq!(errno(), libc::EAGAIN);

        // A second handle changes the node; the event arrives while nobody asks.
        let other = srv.c_handle(0);
        assert!(xs_write(
            other,
            0,
            c("/w/child").as_ptr(),
            b"1".as_ptr().cast(),
            1
        ));
        assert!(readable(fd, 5000));
        let mut num = 0;
        let ev = xs_read_watch(h, &mut num);
        assert_eq!(num, 2);
        assert_eq!(
            take_laid_out(ev, num),
            vec![b"/w/child".to_vec(), b"tok".to_vec()]
        );

        // xs_read_watch blocks until an event comes.
        let hp = h as usize;
        let reader = std::thread::spawn(move || {
            let mut num = 0;
            let ev = xs_read_watch(hp as *mut xs_handle, &mut num);
            take_laid_out(ev, num)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished());
        assert!(xs_write(
            other,
            0,
            c("/w").as_ptr(),
            b"2".as_ptr().cast(),
            1
        ));
        assert_eq!(
            reader.join().unwrap(),
            vec![b"/w".to_vec(), b"tok".to_vec()]
        );

        assert!(xs_unwatch(h, c("/w").as_ptr(), c("tok").as_ptr()));
        set_errno(0);
        assert!(!xs_unwatch(h, c("/w").as_ptr(), c("tok").as_ptr()));
        assert_eq!(errno(), libc::ENOENT);
        xs_close(other);
        xs_close(h);
    }
}

#[test]
fn unwatch_filter_drops_queued_events() {
    // The store writes each event before any later reply on the same stream, and the client
    // queues messages in stream order, so by the time xs_unwatch returns every event below is
    // queued: the two initial events and the one caused by `other`.
    let store = MiniStore::new();
    let srv = store.serve();
    for (flags, left) in [(0u64, 3usize), (4, 1)] {
        let h = srv.c_handle(flags);
        let other = srv.c_handle(0);
        // SAFETY: for every call here, `h` and `other` are live until their xs_close; paths and
        // values are CStrings or byte strings that outlive their call; events are freed once.
        unsafe {
            let fd = xs_fileno(h);
            assert!(xs_watch(h, c("/f").as_ptr(), c("a").as_ptr()));
            assert!(xs_watch(h, c("/g").as_ptr(), c("b").as_ptr()));
            assert!(xs_write(
                other,
                0,
                c("/f/x").as_ptr(),
                b"1".as_ptr().cast(),
                1
            ));
            assert!(xs_unwatch(h, c("/f").as_ptr(), c("a").as_ptr()));
            let mut got = 0;
            loop {
                let ev = xs_check_watch(h);
                if ev.is_null() {
                    break;
                }
                libc::free(ev.cast());
                got += 1;
            }
            assert_eq!(got, left, "flags {flags}");
            assert!(!readable(fd, 0));
            xs_close(other);
            xs_close(h);
        }
    }
}

#[test]
fn subpath_rules() {
    // SAFETY: both arguments are CStrings that live to the end of the call.
    unsafe {
        let t = |a: &str, b: &str| xs_path_is_subpath(c(a).as_ptr(), c(b).as_ptr());
        assert!(t("/a", "/a"));
        assert!(t("/a", "/a/b"));
        assert!(!t("/a", "/ab"));
        assert!(!t("/a/b", "/a"));
    }
}

#[test]
fn write_all_and_restrict() {
    let mut fds = [0; 2];
    // SAFETY: for every call here, `fds` has the two ints pipe() fills; the byte strings and
    // `buf` outlive the calls and are as long as the counts say. The last xs_write_all gets -1,
    // a descriptor that cannot be open (EBADF is the point); a number just closed could be
    // reused meanwhile by a test running beside this one.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert!(xs_write_all(fds[1], b"abc".as_ptr().cast(), 3));
        let mut buf = [0u8; 3];
        assert_eq!(libc::read(fds[0], buf.as_mut_ptr().cast(), 3), 3);
        assert_eq!(&buf, b"abc");
        libc::close(fds[0]);
        libc::close(fds[1]);
        set_errno(0);
        assert!(!xs_write_all(-1, b"abc".as_ptr().cast(), 3));
        assert_eq!(errno(), libc::EBADF);
    }
}

#[test]
fn watch_depth_needs_the_feature_and_caches_it_per_handle() {
    let store = MiniStore::new(); // advertises WATCHDEPTH (4)
    let srv = store.serve();
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        assert!(ffi::xs_watch_depth(h, c("/d").as_ptr(), c("t").as_ptr(), 2));
        assert!(ffi::xs_watch_try_depth(
            h,
            c("/e").as_ptr(),
            c("u").as_ptr(),
            0
        ));
        xs_close(h);
    }
    let watches: Vec<_> = store
        .log()
        .into_iter()
        .filter(|r| r.ty() == Some(MsgType::XS_WATCH))
        .map(|r| r.body)
        .collect();
    assert_eq!(
        watches,
        vec![b"/d\0t\x002\0".to_vec(), b"/e\0u\x000\0".to_vec()]
    );
    let asked = store
        .log()
        .iter()
        .filter(|r| r.ty() == Some(MsgType::XS_GET_FEATURE))
        .count();
    assert_eq!(asked, 1, "features asked once per handle");

    // A server without the feature: depth is refused, try_depth falls back to a plain watch,
    // and a new handle asks again (no process-wide cache).
    store.state.lock().unwrap().features = 0;
    let h = srv.c_handle(0);
    // SAFETY: for every call here, `h` is live until the xs_close at the end; paths and values
    // are CStrings or byte strings that outlive their call; out-parameters are locals; each
    // block the library hands over is freed once, after its last read.
    unsafe {
        set_errno(0);
        assert!(!ffi::xs_watch_depth(
            h,
            c("/f").as_ptr(),
            c("t").as_ptr(),
            1
        ));
        assert_eq!(errno(), libc::ENOSYS);
        assert!(ffi::xs_watch_try_depth(
            h,
            c("/g").as_ptr(),
            c("t").as_ptr(),
            1
        ));
        xs_close(h);
    }
    let log = store.log();
    let last = log
        .iter()
        .rev()
        .find(|r| r.ty() == Some(MsgType::XS_WATCH))
        .unwrap();
    assert_eq!(last.body, b"/g\0t\0");
    assert!(!log
        .iter()
        .any(|r| r.ty() == Some(MsgType::XS_WATCH) && r.body.starts_with(b"/f")));
    assert_eq!(
        log.iter()
            .filter(|r| r.ty() == Some(MsgType::XS_GET_FEATURE))
            .count(),
        2
    );
}
