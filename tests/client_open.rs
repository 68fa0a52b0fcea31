//! How xs_open finds the store: the daemon socket ($XENSTORED_PATH, else
//! $XENSTORED_RUNDIR/socket), then the xenbus device. One test function: it sets the
//! environment.

mod util;
use util::client_support;

use client_support::*;

#[test]
fn open_follows_the_c_library_search_order() {
    let store = MiniStore::new();
    let srv = store.serve();
    let rundir = srv.path.parent().unwrap().to_owned(); // the server's socket is <dir>/socket
                                                        // SAFETY: for every call here, each handle is checked non-NULL before use and closed once,
                                                        // by the close function matching its opener; paths are CStrings that live to the end of
                                                        // their statements. Only this test in this binary touches the environment.
    unsafe {
        // The run directory's socket.
        std::env::remove_var("XENSTORED_PATH");
        std::env::set_var("XENSTORED_RUNDIR", &rundir);
        let h = ffi::xs_open(0);
        assert!(!h.is_null(), "errno {}", errno());
        assert!(ffi::xs_mkdir(h, 0, c("/via-rundir").as_ptr()));
        ffi::xs_close(h);
        let h = ffi::xs_daemon_open();
        assert!(!h.is_null());
        ffi::xs_daemon_close(h);

        // XENSTORED_PATH wins over the run directory.
        std::env::set_var("XENSTORED_RUNDIR", "/nonexistent-rundir");
        std::env::set_var("XENSTORED_PATH", &srv.path);
        let h = ffi::xs_domain_open();
        assert!(!h.is_null());
        ffi::xs_close(h);

        // Nothing there: the socket fails, then the device path (same variable) fails too.
        std::env::set_var("XENSTORED_PATH", "/nonexistent-xenstore-path");
        set_errno(0);
        assert!(ffi::xs_open(0).is_null());
        assert_eq!(errno(), libc::ENOENT);

        // Without overrides, the defaults; on a machine without Xen both are absent.
        std::env::remove_var("XENSTORED_PATH");
        std::env::remove_var("XENSTORED_RUNDIR");
        let default_exists = std::path::Path::new("/var/run/xenstored/socket").exists()
            || std::path::Path::new("/dev/xen/xenbus").exists()
            || std::path::Path::new("/proc/xen/xenbus").exists();
        if !default_exists {
            set_errno(0);
            assert!(ffi::xs_open(0).is_null());
            assert_eq!(errno(), libc::ENOENT);
        }
    }
    let made = store
        .log()
        .iter()
        .filter(|r| r.body.starts_with(b"/via-rundir"))
        .count();
    assert_eq!(made, 1);
}
