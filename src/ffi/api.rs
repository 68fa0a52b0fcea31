//! The exports, in the order of xenstore.h. Each converts its arguments, calls the client and
//! shapes the result for C; the module comment of `ffi` states the pointer contract, once for
//! all of them (hence no per-function safety sections).
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use super::{
    bytes, guard, guard_io, handle, malloc_array, malloc_string_array, malloc_text, put,
    static_text, text,
};
use super::{into_raw, xs_handle, EINVAL};
use crate::client::{paths, perms, Errno, Permission};
use crate::embedded;

/// `struct xs_permissions`.
pub type xs_permissions = Permission;

/// Transaction id type.
pub type xs_transaction_t = u32;

/// With XENSTORE_EMBEDDED=1, a handle on the process's embedded store (see `crate::embedded`).
pub extern "C" fn xs_open(flags: c_ulong) -> *mut xs_handle {
    guard(std::ptr::null_mut(), || {
        Ok(into_raw(embedded::open_from_env(flags)?))
    })
}

pub unsafe extern "C" fn xs_close(h: *mut xs_handle) {
    guard((), || {
        if !h.is_null() {
            // SAFETY: per the contract `h` came from into_raw and is not used after this.
            drop(unsafe { Box::from_raw(h) });
        }
        Ok(())
    })
}

pub extern "C" fn xs_daemon_open() -> *mut xs_handle {
    xs_open(0)
}

pub extern "C" fn xs_domain_open() -> *mut xs_handle {
    xs_open(0)
}

pub extern "C" fn xs_daemon_open_readonly() -> *mut xs_handle {
    xs_open(0)
}

pub unsafe extern "C" fn xs_daemon_close(h: *mut xs_handle) {
    // SAFETY: same contract.
    unsafe { xs_close(h) }
}

pub unsafe extern "C" fn xs_daemon_destroy_postfork(h: *mut xs_handle) {
    guard((), || {
        if !h.is_null() {
            // SAFETY: per the contract `h` came from into_raw and is not used after this.
            unsafe { Box::from_raw(h) }.h.destroy_postfork();
        }
        Ok(())
    })
}

pub unsafe extern "C" fn xs_directory(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
    num: *mut c_uint,
) -> *mut *mut c_char {
    guard_io(std::ptr::null_mut(), || {
        // SAFETY (all unsafe calls in these bodies): the module's pointer contract.
        let list = unsafe { handle(h)?.directory(t, text(path)?)? };
        let (block, n) = malloc_string_array(list.iter().map(|s| s.as_slice()))?;
        unsafe { put(num, n) };
        Ok(block)
    })
}

pub unsafe extern "C" fn xs_read(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
    len: *mut c_uint,
) -> *mut c_void {
    guard_io(std::ptr::null_mut(), || {
        let value = unsafe { handle(h)?.read(t, text(path)?)? };
        let block = malloc_text(&value)?;
        unsafe { put(len, value.len() as c_uint) };
        Ok(block.cast())
    })
}

pub unsafe extern "C" fn xs_write(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
    data: *const c_void,
    len: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.write(t, text(path)?, bytes(data, len)?) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_mkdir(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.mkdir(t, text(path)?) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_rm(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.rm(t, text(path)?) }.map(|_| true)
    })
}

/// Removed from the protocol long ago; always false, errno untouched, as in the C library.
pub extern "C" fn xs_restrict(_h: *mut xs_handle, _domid: c_uint) -> bool {
    false
}

pub unsafe extern "C" fn xs_get_permissions(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
    num: *mut c_uint,
) -> *mut xs_permissions {
    guard_io(std::ptr::null_mut(), || {
        let list = unsafe { handle(h)?.get_permissions(t, text(path)?)? };
        let block = malloc_array(&list)?;
        unsafe { put(num, list.len() as c_uint) };
        Ok(block)
    })
}

pub unsafe extern "C" fn xs_set_permissions(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
    perms: *mut xs_permissions,
    num_perms: c_uint,
) -> bool {
    guard_io(false, || {
        let h = unsafe { handle(h)? };
        let path = unsafe { text(path)? };
        // Each entry takes at least 3 bytes ("n0\0"): more cannot fit in one message.
        if num_perms as usize > crate::wire::PAYLOAD_MAX / 3 {
            return Err(Errno(libc::E2BIG));
        }
        let list: &[Permission] = if num_perms == 0 {
            &[]
        } else if perms.is_null() {
            return Err(EINVAL);
        } else {
            unsafe { std::slice::from_raw_parts(perms, num_perms as usize) }
        };
        h.set_permissions(t, path, list).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.watch(text(path)?, text(token)?) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch_depth(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
    depth: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.watch_depth(text(path)?, text(token)?, depth) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch_try_depth(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
    depth: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.watch_try_depth(text(path)?, text(token)?, depth) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_fileno(h: *mut xs_handle) -> c_int {
    guard(-1, || unsafe { handle(h)?.fileno() })
}

/// One fired watch in the C shape: ret[XS_WATCH_PATH], ret[XS_WATCH_TOKEN], one block.
fn event_block(ev: &crate::client::WatchEvent) -> Result<(*mut *mut c_char, u32), Errno> {
    malloc_string_array(ev.strings())
}

pub unsafe extern "C" fn xs_check_watch(h: *mut xs_handle) -> *mut *mut c_char {
    guard(std::ptr::null_mut(), || {
        match unsafe { handle(h)?.check_watch()? } {
            Some(ev) => Ok(event_block(&ev)?.0),
            None => Err(Errno(libc::EAGAIN)),
        }
    })
}

pub unsafe extern "C" fn xs_read_watch(h: *mut xs_handle, num: *mut c_uint) -> *mut *mut c_char {
    guard(std::ptr::null_mut(), || {
        let ev = unsafe { handle(h)?.read_watch()? };
        let (block, n) = event_block(&ev)?;
        unsafe { put(num, n) };
        Ok(block)
    })
}

pub unsafe extern "C" fn xs_unwatch(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.unwatch(text(path)?, text(token)?) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_transaction_start(h: *mut xs_handle) -> xs_transaction_t {
    guard_io(0, || unsafe { handle(h)?.transaction_start() })
}

pub unsafe extern "C" fn xs_transaction_end(
    h: *mut xs_handle,
    t: xs_transaction_t,
    abort: bool,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.transaction_end(t, abort) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_introduce_domain(
    h: *mut xs_handle,
    domid: c_uint,
    mfn: c_ulong,
    eventchn: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.introduce_domain(domid, mfn, eventchn) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_set_target(h: *mut xs_handle, domid: c_uint, target: c_uint) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.set_target(domid, target) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_resume_domain(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.resume_domain(domid) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_release_domain(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.release_domain(domid) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_domain_path(h: *mut xs_handle, domid: c_uint) -> *mut c_char {
    guard_io(std::ptr::null_mut(), || {
        malloc_text(&unsafe { handle(h)?.get_domain_path(domid)? })
    })
}

pub unsafe extern "C" fn xs_path_is_subpath(parent: *const c_char, child: *const c_char) -> bool {
    guard(false, || {
        Ok(paths::is_subpath(unsafe { text(parent)? }, unsafe {
            text(child)?
        }))
    })
}

pub unsafe extern "C" fn xs_is_domain_introduced(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || unsafe { handle(h)?.is_domain_introduced(domid) })
}

pub unsafe extern "C" fn xs_get_features_supported(
    h: *mut xs_handle,
    features: *mut c_uint,
) -> bool {
    guard_io(false, || {
        let f = unsafe { handle(h)?.features_supported()? };
        unsafe { put(features, f) };
        Ok(true)
    })
}

pub unsafe extern "C" fn xs_get_features_domain(
    h: *mut xs_handle,
    domid: c_uint,
    features: *mut c_uint,
) -> bool {
    guard_io(false, || {
        let f = unsafe { handle(h)?.features_domain(domid)? };
        unsafe { put(features, f) };
        Ok(true)
    })
}

pub unsafe extern "C" fn xs_set_features_domain(
    h: *mut xs_handle,
    domid: c_uint,
    features: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.set_features_domain(domid, features) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_quota_names(
    h: *mut xs_handle,
    num: *mut c_uint,
) -> *mut *const c_char {
    guard_io(std::ptr::null_mut(), || {
        let names = unsafe { handle(h)?.quota_names()? };
        let (block, n) = malloc_string_array(names.iter().map(|s| s.as_slice()))?;
        unsafe { put(num, n) };
        Ok(block.cast())
    })
}

pub unsafe extern "C" fn xs_get_global_quota(
    h: *mut xs_handle,
    quota: *const c_char,
    value: *mut c_uint,
) -> bool {
    guard_io(false, || {
        let v = unsafe { handle(h)?.global_quota(text(quota)?)? };
        unsafe { put(value, v) };
        Ok(true)
    })
}

pub unsafe extern "C" fn xs_set_global_quota(
    h: *mut xs_handle,
    quota: *const c_char,
    value: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.set_global_quota(text(quota)?, value) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_domain_quota(
    h: *mut xs_handle,
    domid: c_uint,
    quota: *const c_char,
    value: *mut c_uint,
) -> bool {
    guard_io(false, || {
        let v = unsafe { handle(h)?.domain_quota(domid, text(quota)?)? };
        unsafe { put(value, v) };
        Ok(true)
    })
}

pub unsafe extern "C" fn xs_set_domain_quota(
    h: *mut xs_handle,
    domid: c_uint,
    quota: *const c_char,
    value: c_uint,
) -> bool {
    guard_io(false, || {
        unsafe { handle(h)?.set_domain_quota(domid, text(quota)?, value) }.map(|_| true)
    })
}

pub unsafe extern "C" fn xs_control_command(
    h: *mut xs_handle,
    cmd: *const c_char,
    data: *mut c_void,
    len: c_uint,
) -> *mut c_char {
    guard_io(std::ptr::null_mut(), || {
        malloc_text(&unsafe { handle(h)?.control(text(cmd)?, bytes(data, len)?)? })
    })
}

pub unsafe extern "C" fn xs_debug_command(
    h: *mut xs_handle,
    cmd: *const c_char,
    data: *mut c_void,
    len: c_uint,
) -> *mut c_char {
    // SAFETY: same contract.
    unsafe { xs_control_command(h, cmd, data, len) }
}

/// Reads /local/domain/<domid>/device/suspend/event-channel over a connection of its own;
/// -1 if that fails or the value is empty.
pub extern "C" fn xs_suspend_evtchn_port(domid: c_int) -> c_int {
    guard(-1, || {
        let path = format!("/local/domain/{domid}/device/suspend/event-channel");
        let value = embedded::open_from_env(0)?.read(0, path.as_bytes())?;
        Ok(if value.is_empty() {
            -1
        } else {
            crate::client::cnum::atoi(&value)
        })
    })
}

pub extern "C" fn xs_daemon_rundir() -> *const c_char {
    guard(std::ptr::null(), || Ok(static_text(paths::daemon_rundir())))
}

pub extern "C" fn xs_daemon_socket() -> *const c_char {
    guard(std::ptr::null(), || {
        Ok(paths::daemon_socket().map_or(std::ptr::null(), static_text))
    })
}

/// The same path as xs_daemon_socket: the read-only socket is gone from current daemons.
pub extern "C" fn xs_daemon_socket_ro() -> *const c_char {
    xs_daemon_socket()
}

/// write(2) until `len` bytes are out (EINTR retried); false with errno on error.
pub unsafe extern "C" fn xs_write_all(fd: c_int, data: *const c_void, len: c_uint) -> bool {
    guard(false, || {
        let mut rest = unsafe { bytes(data, len)? };
        while !rest.is_empty() {
            // SAFETY: `rest` is readable (contract); a bad fd merely fails.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                // errno is already what write left (untouched for a 0-byte write, as in C).
                return Ok(false);
            }
            rest = &rest[n as usize..];
        }
        Ok(true)
    })
}

/// Parses `num` consecutive NUL-terminated entries ("r0", "b5", ...) into `perms`.
pub unsafe extern "C" fn xs_strings_to_perms(
    perms: *mut xs_permissions,
    num: c_uint,
    strings: *const c_char,
) -> bool {
    guard(false, || {
        if num == 0 {
            return Ok(true);
        }
        if perms.is_null() || strings.is_null() {
            return Err(EINVAL);
        }
        let mut at = strings;
        for i in 0..num as usize {
            // SAFETY: the caller provides `num` NUL-terminated strings back to back.
            let s = unsafe { text(at)? };
            let p = perms::Permission::parse(s)?;
            // SAFETY: `perms` has room for `num` entries.
            unsafe { *perms.add(i) = p };
            // SAFETY: moves past this string's NUL to the next one.
            at = unsafe { at.add(s.len() + 1) };
        }
        Ok(true)
    })
}

/// xenstore_embedded.h: a guest's handle on the embedded store, acting as `domid` through its
/// ring. NULL with ENOENT when the domain is not introduced (or the embedded mode is off),
/// EINVAL for domain 0.
pub extern "C" fn xs_embedded_open_domain(domid: c_uint) -> *mut xs_handle {
    guard(std::ptr::null_mut(), || {
        Ok(into_raw(embedded::open_domain_from_env(domid, 0)?))
    })
}
