//! A daemon that has gone away gives EPIPE, never SIGPIPE, even in a program that keeps the
//! default SIGPIPE action (as C programs do). Alone in its test binary because it changes the
//! process-wide signal disposition.

mod util;
use util::client_support;

use std::time::Duration;

use client_support::*;

#[test]
fn vanished_daemon_is_epipe_not_sigpipe() {
    // SAFETY: restoring the default action; nothing else in this process relies on SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // The daemon hangs up at once.
    let srv = Server::start(drop);
    let h = srv.c_handle(0);
    std::thread::sleep(Duration::from_millis(100));
    set_errno(0);
    // SAFETY: `h` is live; the path is a CString that lives to the end of the statement and the
    // value is one byte of a static string.
    let ok = unsafe { ffi::xs_write(h, 0, c("/a").as_ptr(), b"x".as_ptr().cast(), 1) };
    assert!(!ok);
    assert_eq!(
        errno(),
        libc::EPIPE,
        "the write fails, as the C library's does"
    );
    set_errno(0);
    // SAFETY: `h` is live; the path is a CString that lives to the end of the statement.
    assert!(!unsafe { ffi::xs_mkdir(h, 0, c("/b").as_ptr()) });
    assert_eq!(errno(), libc::EBADF);
    // SAFETY: `h` is live and not used again.
    unsafe { ffi::xs_close(h) };
}
