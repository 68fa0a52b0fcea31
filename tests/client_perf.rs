//! Request latency with and without a registered watch (the watch thread must not put itself on
//! the path of replies), compared with Debian's C library when it is available.
//!
//! The timing test is lenient (a loaded machine must not fail it); the full comparison prints
//! its numbers: `cargo test --release --test client_perf -- --ignored --nocapture`.

mod util;
use util::client_support;

use std::ffi::{c_char, c_uint, c_ulong, c_void};
use std::time::{Duration, Instant};

use client_support::*;
use ffi::xs_handle;

type Open = unsafe extern "C" fn(c_ulong) -> *mut xs_handle;
type Read = unsafe extern "C" fn(*mut xs_handle, u32, *const c_char, *mut c_uint) -> *mut c_void;
type Watch = unsafe extern "C" fn(*mut xs_handle, *const c_char, *const c_char) -> bool;
type Close = unsafe extern "C" fn(*mut xs_handle);

struct Lib {
    open: Open,
    read: Read,
    watch: Watch,
    close: Close,
}

fn ours() -> Lib {
    Lib {
        open: ffi::xs_open,
        read: ffi::xs_read,
        watch: ffi::xs_watch,
        close: ffi::xs_close,
    }
}

fn debian() -> Option<Lib> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.reference/root/usr/lib/x86_64-linux-gnu"
    );
    if !std::path::Path::new(&format!("{dir}/libxenstore.so.4")).exists() {
        return None;
    }
    unsafe {
        libc::dlopen(
            c(&format!("{dir}/libxentoolcore.so.1")).as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        let h = libc::dlopen(
            c(&format!("{dir}/libxenstore.so.4")).as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        assert!(!h.is_null());
        let f = |n: &str| libc::dlsym(h, c(n).as_ptr());
        Some(Lib {
            open: std::mem::transmute::<*mut c_void, Open>(f("xs_open")),
            read: std::mem::transmute::<*mut c_void, Read>(f("xs_read")),
            watch: std::mem::transmute::<*mut c_void, Watch>(f("xs_watch")),
            close: std::mem::transmute::<*mut c_void, Close>(f("xs_close")),
        })
    }
}

/// Median time per read, without and with a watch set on the handle: two handles measured in
/// alternating rounds of `n` reads, so that drifting machine load hits both alike.
fn time_reads(lib: &Lib, n: usize, rounds: usize) -> (Duration, Duration) {
    unsafe {
        let plain = (lib.open)(0);
        let watched = (lib.open)(0);
        assert!(!plain.is_null() && !watched.is_null());
        assert!((lib.watch)(
            watched,
            c("/elsewhere").as_ptr(),
            c("t").as_ptr()
        ));
        let path = c("/k");
        let round = |h: *mut xs_handle| {
            let t = Instant::now();
            for _ in 0..n {
                let mut len = 0;
                let v = (lib.read)(h, 0, path.as_ptr(), &mut len);
                assert!(!v.is_null());
                libc::free(v);
            }
            t.elapsed() / n as u32
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(round(plain));
            b.push(round(watched));
        }
        (lib.close)(plain);
        (lib.close)(watched);
        a.sort();
        b.sort();
        (a[a.len() / 2], b[b.len() / 2])
    }
}

fn serve() -> (MiniStore, Server) {
    let store = MiniStore::new();
    store
        .state
        .lock()
        .unwrap()
        .nodes
        .insert("/k".into(), b"value".to_vec());
    let srv = store.serve();
    std::env::set_var("XENSTORED_PATH", &srv.path);
    (store, srv)
}

#[test]
fn a_watch_does_not_slow_requests_down() {
    let (_store, _srv) = serve();
    let (plain, watched) = time_reads(&ours(), 200, 15);
    // Generous bound: a thread hop per reply would show as a large factor; scheduling noise on
    // a shared machine must not fail the build.
    assert!(
        watched < plain * 2,
        "with a watch: {watched:?} per read, without: {plain:?}"
    );
}

#[test]
#[ignore]
fn compare_with_the_c_library() {
    let (_store, _srv) = serve();
    let (n, rounds) = (1000, 21);
    let (p, w) = time_reads(&ours(), n, rounds);
    println!("ours   : no watch {p:?}/read, with watch {w:?}/read");
    if let Some(c_lib) = debian() {
        let (p, w) = time_reads(&c_lib, n, rounds);
        println!("debian : no watch {p:?}/read, with watch {w:?}/read");
    }
}
