//! Side by side with Debian's C library (Xen 4.17), as scripts/reference/fetch.sh unpacks it
//! into .reference/: the same calls through both must put the same bytes on the wire and return
//! the same results. Skipped (with a note) when the reference library is not there, unless
//! XS_REQUIRE_REFERENCE=1 (as the full test run sets), which makes that a failure.
//!
//! Everything runs in one test function because it sets environment variables.

mod util;
use util::client_support;

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};

use client_support::*;
use ffi::{xs_handle, xs_permissions};
use xenstore::wire::MsgType;

const REF_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/.reference/root/usr/lib/x86_64-linux-gnu"
);

/// The VERS_4.0 functions, from one library or the other.
#[allow(clippy::type_complexity)] // C function pointer types, spelt as the header does
struct Api {
    open: unsafe extern "C" fn(c_ulong) -> *mut xs_handle,
    close: unsafe extern "C" fn(*mut xs_handle),
    read: unsafe extern "C" fn(*mut xs_handle, u32, *const c_char, *mut c_uint) -> *mut c_void,
    write: unsafe extern "C" fn(*mut xs_handle, u32, *const c_char, *const c_void, c_uint) -> bool,
    mkdir: unsafe extern "C" fn(*mut xs_handle, u32, *const c_char) -> bool,
    rm: unsafe extern "C" fn(*mut xs_handle, u32, *const c_char) -> bool,
    directory:
        unsafe extern "C" fn(*mut xs_handle, u32, *const c_char, *mut c_uint) -> *mut *mut c_char,
    get_perms: unsafe extern "C" fn(
        *mut xs_handle,
        u32,
        *const c_char,
        *mut c_uint,
    ) -> *mut xs_permissions,
    set_perms: unsafe extern "C" fn(
        *mut xs_handle,
        u32,
        *const c_char,
        *mut xs_permissions,
        c_uint,
    ) -> bool,
    watch: unsafe extern "C" fn(*mut xs_handle, *const c_char, *const c_char) -> bool,
    read_watch: unsafe extern "C" fn(*mut xs_handle, *mut c_uint) -> *mut *mut c_char,
    check_watch: unsafe extern "C" fn(*mut xs_handle) -> *mut *mut c_char,
    unwatch: unsafe extern "C" fn(*mut xs_handle, *const c_char, *const c_char) -> bool,
    fileno: unsafe extern "C" fn(*mut xs_handle) -> c_int,
    tx_start: unsafe extern "C" fn(*mut xs_handle) -> u32,
    tx_end: unsafe extern "C" fn(*mut xs_handle, u32, bool) -> bool,
    introduce: unsafe extern "C" fn(*mut xs_handle, c_uint, c_ulong, c_uint) -> bool,
    set_target: unsafe extern "C" fn(*mut xs_handle, c_uint, c_uint) -> bool,
    resume: unsafe extern "C" fn(*mut xs_handle, c_uint) -> bool,
    release: unsafe extern "C" fn(*mut xs_handle, c_uint) -> bool,
    domain_path: unsafe extern "C" fn(*mut xs_handle, c_uint) -> *mut c_char,
    introduced: unsafe extern "C" fn(*mut xs_handle, c_uint) -> bool,
    control:
        unsafe extern "C" fn(*mut xs_handle, *const c_char, *mut c_void, c_uint) -> *mut c_char,
    suspend_port: unsafe extern "C" fn(c_int) -> c_int,
    rundir: unsafe extern "C" fn() -> *const c_char,
    socket: unsafe extern "C" fn() -> *const c_char,
    socket_ro: unsafe extern "C" fn() -> *const c_char,
    strings_to_perms: unsafe extern "C" fn(*mut xs_permissions, c_uint, *const c_char) -> bool,
    subpath: unsafe extern "C" fn(*const c_char, *const c_char) -> bool,
}

fn ours() -> Api {
    use ffi::*;
    Api {
        open: xs_open,
        close: xs_close,
        read: xs_read,
        write: xs_write,
        mkdir: xs_mkdir,
        rm: xs_rm,
        directory: xs_directory,
        get_perms: xs_get_permissions,
        set_perms: xs_set_permissions,
        watch: xs_watch,
        read_watch: xs_read_watch,
        check_watch: xs_check_watch,
        unwatch: xs_unwatch,
        fileno: xs_fileno,
        tx_start: xs_transaction_start,
        tx_end: xs_transaction_end,
        introduce: xs_introduce_domain,
        set_target: xs_set_target,
        resume: xs_resume_domain,
        release: xs_release_domain,
        domain_path: xs_get_domain_path,
        introduced: xs_is_domain_introduced,
        control: xs_control_command,
        suspend_port: xs_suspend_evtchn_port,
        rundir: xs_daemon_rundir,
        socket: xs_daemon_socket,
        socket_ro: xs_daemon_socket_ro,
        strings_to_perms: xs_strings_to_perms,
        subpath: xs_path_is_subpath,
    }
}

#[allow(clippy::missing_transmute_annotations)] // each target type is the field it fills
fn reference() -> Option<Api> {
    let lib = format!("{REF_DIR}/libxenstore.so.4");
    if !std::path::Path::new(&lib).exists() {
        return None;
    }
    // SAFETY: for every call here, dlopen/dlsym get CStrings that live to the end of their
    // statements; the libraries are Debian's libxentoolcore and libxenstore 4.17, loaded by full
    // path and never unloaded, so the symbols stay valid; each symbol is transmuted to the field
    // of its own name, whose type is the function's prototype in the 4.17 header.
    unsafe {
        // Its NEEDED libxentoolcore.so.1 is found by soname once loaded by full path.
        let tc = libc::dlopen(
            c(&format!("{REF_DIR}/libxentoolcore.so.1")).as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        assert!(!tc.is_null());
        let h = libc::dlopen(c(&lib).as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null());
        macro_rules! sym {
            ($name:literal) => {{
                let p = libc::dlsym(h, c($name).as_ptr());
                assert!(!p.is_null(), $name);
                std::mem::transmute::<*mut c_void, _>(p)
            }};
        }
        Some(Api {
            open: sym!("xs_open"),
            close: sym!("xs_close"),
            read: sym!("xs_read"),
            write: sym!("xs_write"),
            mkdir: sym!("xs_mkdir"),
            rm: sym!("xs_rm"),
            directory: sym!("xs_directory"),
            get_perms: sym!("xs_get_permissions"),
            set_perms: sym!("xs_set_permissions"),
            watch: sym!("xs_watch"),
            read_watch: sym!("xs_read_watch"),
            check_watch: sym!("xs_check_watch"),
            unwatch: sym!("xs_unwatch"),
            fileno: sym!("xs_fileno"),
            tx_start: sym!("xs_transaction_start"),
            tx_end: sym!("xs_transaction_end"),
            introduce: sym!("xs_introduce_domain"),
            set_target: sym!("xs_set_target"),
            resume: sym!("xs_resume_domain"),
            release: sym!("xs_release_domain"),
            domain_path: sym!("xs_get_domain_path"),
            introduced: sym!("xs_is_domain_introduced"),
            control: sym!("xs_control_command"),
            suspend_port: sym!("xs_suspend_evtchn_port"),
            rundir: sym!("xs_daemon_rundir"),
            socket: sym!("xs_daemon_socket"),
            socket_ro: sym!("xs_daemon_socket_ro"),
            strings_to_perms: sym!("xs_strings_to_perms"),
            subpath: sym!("xs_path_is_subpath"),
        })
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// # Safety
/// `p` is NULL or a NUL-terminated string the library malloc'd and handed over.
unsafe fn take_text(p: *mut c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    let t = unsafe { text(p) };
    // SAFETY: the caller's contract; `t` is a copy.
    unsafe { libc::free(p.cast()) };
    t
}

/// A request as the store received it: type, transaction and payload.
type Received = (u32, u32, Vec<u8>);

/// Runs the same calls through `api` against a fresh recording store; returns what the
/// calls returned (as text) and what the store received.
fn scenario(api: &Api) -> (Vec<String>, Vec<Received>) {
    let store = MiniStore::new();
    let srv = store.serve();
    std::env::set_var("XENSTORED_PATH", &srv.path);
    let mut out = Vec::new();
    // SAFETY: for every call here, the functions are `api`'s, of the prototypes declared in `Api`;
    // `h` is checked non-NULL and live until the close at the end; paths, values and tokens are
    // CStrings or byte strings that live to the end of their statements, with the counts given;
    // out-parameters are locals; every block handed over is freed once, after its last read;
    // the control data is only read by the library, despite its `void *`.
    unsafe {
        let h = (api.open)(0);
        assert!(!h.is_null());
        let mut n: c_uint = 0;
        let mut len: c_uint = 0;
        set_errno(libc::EINTR);
        out.push(format!(
            "write {}",
            (api.write)(h, 0, c("/a").as_ptr(), b"hello".as_ptr().cast(), 5)
        ));
        // The C library leaves errno 0 after a successful exchange (test-xenstore relies on it).
        out.push(format!("errno after success {}", errno()));
        let v = (api.read)(h, 0, c("/a").as_ptr(), &mut len);
        out.push(format!("read {:?} {len}", take_text(v.cast())));
        set_errno(0);
        let v = (api.read)(h, 0, c("/missing").as_ptr(), &mut len);
        out.push(format!("read-missing {} {}", v.is_null(), errno()));
        set_errno(libc::EINTR);
        out.push(format!(
            "mkdir {} {}",
            (api.mkdir)(h, 0, c("/d").as_ptr()),
            errno()
        ));
        for k in ["x", "y"] {
            (api.write)(
                h,
                0,
                c(&format!("/d/{k}")).as_ptr(),
                b"1".as_ptr().cast(),
                1,
            );
        }
        let d = (api.directory)(h, 0, c("/d").as_ptr(), &mut n);
        out.push(format!("dir {:?} {n}", take_strings(d, n)));
        let p = (api.get_perms)(h, 0, c("/d").as_ptr(), &mut n);
        let perms: Vec<(u32, u32)> = std::slice::from_raw_parts(p, n as usize)
            .iter()
            .map(|p| (p.id, p.perms))
            .collect();
        libc::free(p.cast());
        out.push(format!("perms {perms:?}"));
        let mut set = [
            xs_permissions { id: 0, perms: 0 },
            xs_permissions { id: 5, perms: 1 },
            xs_permissions {
                id: 7,
                perms: 3 | 0x10,
            },
            xs_permissions {
                id: u32::MAX,
                perms: 2,
            },
        ];
        out.push(format!(
            "setperms {}",
            (api.set_perms)(h, 0, c("/d").as_ptr(), set.as_mut_ptr(), 4)
        ));
        let t = (api.tx_start)(h);
        out.push(format!("tx {t}"));
        (api.write)(h, t, c("/t").as_ptr(), b"v".as_ptr().cast(), 1);
        out.push(format!("commit {}", (api.tx_end)(h, t, false)));
        out.push(format!("abort {}", (api.tx_end)(h, t, true)));
        out.push(format!(
            "introduce {}",
            (api.introduce)(h, 5, 0xfeed_beef_1234, 7)
        ));
        out.push(format!("target {}", (api.set_target)(h, 5, 6)));
        out.push(format!("resume {}", (api.resume)(h, 5)));
        out.push(format!("release {}", (api.release)(h, 5)));
        out.push(format!("dompath {:?}", take_text((api.domain_path)(h, 12))));
        out.push(format!(
            "introduced {} {}",
            (api.introduced)(h, 0),
            (api.introduced)(h, 3)
        ));
        let r = (api.control)(h, c("log").as_ptr(), b"on".as_ptr() as *mut c_void, 2);
        out.push(format!("control {:?}", take_text(r)));
        let fd = (api.fileno)(h);
        out.push(format!("fileno {}", fd >= 0));
        set_errno(0);
        let w = (api.check_watch)(h);
        out.push(format!("check-empty {} {}", w.is_null(), errno()));
        out.push(format!(
            "watch {}",
            (api.watch)(h, c("/w").as_ptr(), c("tok").as_ptr())
        ));
        let ev = (api.read_watch)(h, &mut n);
        out.push(format!("event {:?} {n}", take_strings(ev, n)));
        out.push(format!(
            "unwatch {}",
            (api.unwatch)(h, c("/w").as_ptr(), c("tok").as_ptr())
        ));
        set_errno(0);
        out.push(format!(
            "unwatch-again {} {}",
            (api.unwatch)(h, c("/w").as_ptr(), c("tok").as_ptr()),
            errno()
        ));
        out.push(format!("rm {}", (api.rm)(h, 0, c("/d").as_ptr())));
        (api.write)(
            h,
            0,
            c("/local/domain/3/device/suspend/event-channel").as_ptr(),
            b"17x".as_ptr().cast(),
            3,
        );
        out.push(format!(
            "suspend {} {}",
            (api.suspend_port)(3),
            (api.suspend_port)(4)
        ));
        (api.close)(h);
    }
    std::env::remove_var("XENSTORED_PATH");
    let log = store
        .log()
        .into_iter()
        .map(|r| (r.hdr.ty, r.hdr.tx_id, r.body))
        .collect();
    (out, log)
}

/// Library functions that need no connection.
fn offline(api: &Api) -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: for every call here, the functions are `api`'s, of the prototypes declared in `Api`;
    // the socket-path functions return NULL or a NUL-terminated string the library keeps; the
    // permission strings are NUL-terminated and `p` has room for the count given; paths
    // are CStrings that live to the end of their statements. Only this test in this binary
    // touches the environment.
    unsafe {
        for (rundir, path) in [
            (None, None),
            (Some("/tmp/rd"), None),
            (Some("/tmp/rd"), Some("/x/sock")),
            (Some(""), None),
        ] {
            match rundir {
                Some(r) => std::env::set_var("XENSTORED_RUNDIR", r),
                None => std::env::remove_var("XENSTORED_RUNDIR"),
            }
            match path {
                Some(p) => std::env::set_var("XENSTORED_PATH", p),
                None => std::env::remove_var("XENSTORED_PATH"),
            }
            out.push(format!(
                "{:?} {:?} {:?}",
                text((api.rundir)()),
                text((api.socket)()),
                text((api.socket_ro)())
            ));
        }
        std::env::set_var("XENSTORED_RUNDIR", "/r".repeat(3000));
        std::env::remove_var("XENSTORED_PATH");
        out.push(format!("long {:?}", text((api.socket)())));
        std::env::remove_var("XENSTORED_RUNDIR");
        for s in [
            &b"r1\0"[..],
            b"b0x10\0",
            b"w010\0",
            b"n-1\0",
            b"n 7\0",
            b"r\0",
            b"x1\0",
            b"r1a\0",
            b"r0x\0",
            b"R1\0",
            b"r+3\0",
        ] {
            let mut p = [xs_permissions { id: 99, perms: 99 }];
            set_errno(0);
            let ok = (api.strings_to_perms)(p.as_mut_ptr(), 1, s.as_ptr().cast());
            out.push(format!(
                "perm {:?} {ok} {} {}",
                String::from_utf8_lossy(s),
                if ok { p[0].id } else { 0 },
                if ok { p[0].perms } else { 0 }
            ));
        }
        for (a, b) in [
            ("/a", "/a"),
            ("/a", "/a/b"),
            ("/a", "/ab"),
            ("", "/x"),
            ("/", "/x"),
            ("/a/", "/a/"),
        ] {
            out.push(format!(
                "sub {a} {b} {}",
                (api.subpath)(c(a).as_ptr(), c(b).as_ptr())
            ));
        }
    }
    out
}

#[test]
fn same_behaviour_as_the_c_library() {
    let Some(reference) = reference() else {
        assert!(
            !util::reference_required(),
            "reference library not found in {REF_DIR} (run scripts/reference/fetch.sh)"
        );
        eprintln!("reference library not found in {REF_DIR}: comparison skipped");
        return;
    };
    let ours = ours();
    assert_eq!(offline(&ours), offline(&reference));
    let (our_results, our_wire) = scenario(&ours);
    let (ref_results, ref_wire) = scenario(&reference);
    for (a, b) in our_results.iter().zip(&ref_results) {
        assert_eq!(a, b);
    }
    assert_eq!(our_results.len(), ref_results.len());
    for (i, (a, b)) in our_wire.iter().zip(&ref_wire).enumerate() {
        let name = MsgType::from_u32(a.0).map(|t| t.name()).unwrap_or("?");
        assert_eq!(a, b, "message {i} ({name}) differs");
    }
    assert_eq!(our_wire.len(), ref_wire.len());
    if std::env::var_os("XS_SHOW").is_some() {
        eprintln!(
            "{:#?}\n{:#?}\n{} messages",
            offline(&ours),
            our_results,
            our_wire.len()
        );
    }
}
