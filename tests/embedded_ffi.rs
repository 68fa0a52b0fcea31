//! The C ABI in embedded mode: `XENSTORE_EMBEDDED=1` makes every opener use one in-process
//! store whatever `XENSTORED_PATH` says, and `xs_embedded_open_domain` opens guests on it.
//! (This test binary sets the variable for the whole process, so it holds no daemon tests.)

use std::ffi::{c_char, c_uint, CStr, CString};
use std::sync::Once;

use xenstore::ffi::*;

fn embedded_mode() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        std::env::set_var("XENSTORE_EMBEDDED", "1");
        std::env::set_var("XENSTORED_PATH", "/nonexistent/xenstored/socket");
    });
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// # Safety
/// `h` is a live handle (a NULL one fails with EINVAL).
unsafe fn read(h: *mut xs_handle, path: &str) -> Result<Vec<u8>, i32> {
    let mut len: c_uint = 0;
    // SAFETY: `h` per the contract; the path is a CString that lives to the end of the
    // statement; `len` is a local.
    let v = unsafe { xs_read(h, 0, c(path).as_ptr(), &mut len) } as *mut c_char;
    if v.is_null() {
        return Err(errno());
    }
    // SAFETY: a non-NULL xs_read result is a malloc'd value with a NUL after its `len` bytes.
    let out = unsafe { CStr::from_ptr(v) }.to_bytes().to_vec();
    assert_eq!(out.len(), len as usize);
    // SAFETY: the block came from the library's malloc; `out` is a copy.
    unsafe { libc::free(v.cast()) };
    Ok(out)
}

/// # Safety
/// `h` is a live handle (a NULL one fails with EINVAL).
unsafe fn write(h: *mut xs_handle, path: &str, v: &str) -> Result<(), i32> {
    // SAFETY: `h` per the contract; the path is a CString that lives to the end of the
    // statement; `v` has the length given.
    if unsafe { xs_write(h, 0, c(path).as_ptr(), v.as_ptr().cast(), v.len() as c_uint) } {
        Ok(())
    } else {
        Err(errno())
    }
}

#[test]
fn every_opener_shares_the_one_store() {
    embedded_mode();
    // SAFETY: for every call here, the handles are checked non-NULL, live until their xs_close,
    // and not used after it; paths and values are CStrings or strings that outlive their call;
    // out-parameters and the pollfd are locals; each event block is freed once after its last
    // read, and `*ev` (the path) is read only after the block is known non-NULL with 2 strings.
    unsafe {
        let a = xs_open(0);
        let b = xs_daemon_open();
        let c_ = xs_domain_open();
        let d = xs_daemon_open_readonly();
        for h in [a, b, c_, d] {
            assert!(!h.is_null(), "embedded open failed: errno {}", errno());
        }
        write(a, "/ffi/shared", "one").unwrap();
        for h in [b, c_, d] {
            assert_eq!(read(h, "/ffi/shared").unwrap(), b"one");
        }
        write(b, "/local/domain/0/device/suspend/event-channel", "42").unwrap();
        assert_eq!(
            xs_suspend_evtchn_port(0),
            42,
            "its own connection lands in the same store"
        );
        // Watches fire across handles and show up on xs_fileno.
        assert!(xs_watch(a, c("/ffi/w").as_ptr(), c("tok").as_ptr()));
        let fd = xs_fileno(a);
        let mut n: c_uint = 0;
        let ev = xs_read_watch(a, &mut n);
        assert!(!ev.is_null() && n == 2);
        libc::free(ev.cast());
        write(c_, "/ffi/w", "x").unwrap();
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        assert_eq!(libc::poll(&mut p, 1, 5000), 1);
        let ev = xs_check_watch(a);
        assert!(!ev.is_null());
        assert_eq!(CStr::from_ptr(*ev).to_bytes(), b"/ffi/w");
        libc::free(ev.cast());
        for h in [a, b, c_, d] {
            xs_close(h);
        }
        let h = xs_open(0);
        assert_eq!(
            read(h, "/ffi/shared").unwrap(),
            b"one",
            "the store outlives its handles"
        );
        xs_close(h);
    }
}

#[test]
fn guests_open_once_introduced() {
    embedded_mode();
    // SAFETY: for every call here, `h` and `g` are live until their xs_close (a NULL `h` would
    // only make the calls fail with EINVAL); paths are CStrings that live to the end of their
    // statements; `perms` has the one entry the count says.
    unsafe {
        let h = xs_open(0);
        assert!(xs_embedded_open_domain(21).is_null());
        assert_eq!(errno(), libc::ENOENT);
        assert!(xs_embedded_open_domain(0).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(xs_introduce_domain(h, 21, 0x77, 3));
        assert!(xs_mkdir(h, 0, c("/local/domain/21").as_ptr()));
        let mut perms = [xs_permissions { id: 21, perms: 0 }];
        assert!(xs_set_permissions(
            h,
            0,
            c("/local/domain/21").as_ptr(),
            perms.as_mut_ptr(),
            1
        ));
        let g = xs_embedded_open_domain(21);
        assert!(!g.is_null());
        write(g, "name", "guest21").unwrap();
        assert_eq!(read(h, "/local/domain/21/name").unwrap(), b"guest21");
        assert_eq!(read(g, "/tool"), Err(libc::EACCES));
        assert!(xs_release_domain(h, 21));
        assert_eq!(read(g, "name"), Err(libc::EBADF));
        xs_close(g);
        xs_close(h);
        assert!(xs_embedded_open_domain(21).is_null());
        assert_eq!(errno(), libc::ENOENT);
    }
}
