//! The xenbus-device transport, with a raw-mode pseudo-terminal standing in for
//! /dev/xen/xenbus: the library opens the slave path, the test's store serves the master side.

mod util;
use util::client_support;

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use client_support::*;
use xenstore::client::{Errno, StreamKind, StreamTransport};
use xenstore::wire::MsgType;

/// A raw pty pair: (master as a File, slave path). The slave fd opened here stays open (leaked
/// into the returned guard) so the line survives while the library reopens it by path.
struct Pty {
    master: File,
    slave_path: String,
    _slave: File,
}

fn pty() -> Pty {
    let (mut m, mut s) = (0, 0);
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: for every call here, the out-pointers are locals of this frame; `name` has the
    // 128 bytes openpty may write (it NUL-terminates); a zeroed termios is a valid value for
    // tcgetattr to fill; `m` and `s` are the descriptors openpty just gave us, each handed to
    // exactly one File that owns it from then on.
    unsafe {
        assert_eq!(
            libc::openpty(
                &mut m,
                &mut s,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null()
            ),
            0
        );
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(s, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(s, libc::TCSANOW, &t), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        Pty {
            master: File::from_raw_fd(m),
            slave_path: path,
            _slave: File::from_raw_fd(s),
        }
    }
}

/// Serves requests on the master side: READ answers "dev:<path>", WATCH fires once, anything
/// else is ENOSYS. Records the largest number of requests seen before a reply was sent.
fn serve_master(master: File) {
    std::thread::spawn(move || {
        let mut p = Peer { s: master };
        while let Some(r) = p.recv() {
            match r.ty() {
                Some(MsgType::XS_READ) => {
                    let v = format!("dev:{}", r.strings()[0]);
                    p.reply(&r, v.as_bytes());
                }
                Some(MsgType::XS_WATCH) => {
                    p.reply(&r, b"OK\0");
                    let s = r.strings();
                    p.event(&s[0], &s[1]);
                }
                _ => p.error(&r, "ENOSYS"),
            }
        }
    });
}

#[test]
fn device_transport_over_a_pty() {
    let pty = pty();
    serve_master(pty.master.try_clone().unwrap());
    let path = std::ffi::CString::new(pty.slave_path.clone()).unwrap();
    let t = StreamTransport::connect(&path).unwrap();
    assert_eq!(
        t.kind(),
        StreamKind::Device,
        "a character device is not a socket"
    );
    let h = Arc::new(Handle::with_transport(Box::new(t), 0));

    assert_eq!(h.read(0, b"/a").unwrap(), b"dev:/a");
    assert_eq!(h.mkdir(0, b"/a"), Err(Errno(libc::ENOSYS)));

    // Watches work over the device too, with the watch thread reading when idle.
    h.watch(b"/w", b"tok").unwrap();
    let ev = within(5, {
        let h = h.clone();
        move || h.read_watch()
    })
    .unwrap();
    assert_eq!((ev.path(), ev.token()), (&b"/w"[..], &b"tok"[..]));

    // Several threads at once: the device path serialises them, each still gets its reply.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let h = h.clone();
            std::thread::spawn(move || {
                for j in 0..20 {
                    let p = format!("/t{i}/{j}");
                    assert_eq!(
                        h.read(0, p.as_bytes()).unwrap(),
                        format!("dev:{p}").into_bytes()
                    );
                }
            })
        })
        .collect();
    within(30, move || {
        threads.into_iter().for_each(|t| t.join().unwrap())
    });
}

/// Every message goes to the device in one write: the master sees whole messages per read.
#[test]
fn device_messages_are_written_whole() {
    let pty = pty();
    let path = std::ffi::CString::new(pty.slave_path.clone()).unwrap();
    let h = Handle::with_transport(Box::new(StreamTransport::connect(&path).unwrap()), 0);
    let mut master = pty.master.try_clone().unwrap();
    let payload = vec![b'v'; 3000];
    let w = std::thread::spawn(move || {
        let _ = h.write(0, b"/big", &payload);
    });
    // One read returns the whole 16 + 5 + 3000 byte message.
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = vec![0u8; 8192];
    let n = std::io::Read::read(&mut master, &mut buf).unwrap();
    assert_eq!(n, 16 + 5 + 3000);
    // Answer so the writer finishes.
    let hdr = xenstore::wire::Header::parse(buf[..16].try_into().unwrap()).unwrap();
    let mut p = Peer { s: master };
    p.send_raw(hdr.ty, hdr.req_id, 0, b"OK\0");
    within(5, move || w.join().unwrap());
}

/// A message the kernel's device cannot buffer (header and payload over 4096 bytes) is refused
/// with E2BIG, as the C library gets from the kernel, without a byte written; the handle
/// stays usable.
#[test]
fn device_messages_over_the_kernels_buffer_get_e2big() {
    let pty = pty();
    serve_master(pty.master.try_clone().unwrap());
    let path = std::ffi::CString::new(pty.slave_path.clone()).unwrap();
    let h = Handle::with_transport(Box::new(StreamTransport::connect(&path).unwrap()), 0);
    // "/big\0" and 4076 bytes: a 4081-byte payload, within PAYLOAD_MAX, 4097 bytes in all.
    assert_eq!(h.write(0, b"/big", &[b'v'; 4076]), Err(Errno(libc::E2BIG)));
    assert_eq!(h.write(0, b"/small", b"v"), Err(Errno(libc::ENOSYS)));
    assert_eq!(h.read(0, b"/a").unwrap(), b"dev:/a");
}

/// xs_open with XENSTORED_PATH naming the device: it is opened as a device, through the C ABI.
/// (Only this test in this binary touches the environment.)
#[test]
fn xs_open_uses_xenstored_path_for_the_device() {
    let pty = pty();
    serve_master(pty.master.try_clone().unwrap());
    std::env::set_var("XENSTORED_PATH", &pty.slave_path);
    let h = ffi::xs_open(0);
    assert!(!h.is_null(), "errno {}", errno());
    let mut len = 0;
    // SAFETY: `h` is live; the path is a CString that lives to the end of the statement.
    let v = unsafe { ffi::xs_read(h, 0, c("/x").as_ptr(), &mut len) };
    assert!(!v.is_null(), "errno {}", errno());
    // SAFETY: a non-NULL xs_read result is a malloc'd block of `len` bytes (and a NUL).
    let got = unsafe { std::slice::from_raw_parts(v as *const u8, len as usize) }.to_vec();
    // SAFETY: `v` came from the library's malloc and `got` is a copy.
    unsafe { libc::free(v) };
    assert_eq!(got, b"dev:/x");
    // SAFETY: `h` is live and not used again.
    unsafe { ffi::xs_close(h) };
    std::env::remove_var("XENSTORED_PATH");
}
