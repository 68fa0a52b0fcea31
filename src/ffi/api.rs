//! The exports, in the order of xenstore.h. Each converts its arguments, calls the client and
//! shapes the result for C; the module comment of `ffi` states the pointer contract, once for
//! all of them (hence no per-function safety sections).
// The safety contract is stated once, in the module comment of `ffi`.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use super::{
    array, array_mut, bytes, guard, guard_io, handle, malloc_array, malloc_string_array,
    malloc_text, put, static_text, text,
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path) = unsafe { (handle(h)?, text(path)?) };
        let list = h.directory(t, path)?;
        let (block, n) = malloc_string_array(list.iter().map(|s| s.as_slice()))?;
        // SAFETY: the pointer contract: `num` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path) = unsafe { (handle(h)?, text(path)?) };
        let value = h.read(t, path)?;
        let block = malloc_text(&value)?;
        // SAFETY: the pointer contract: `len` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, data) = unsafe { (handle(h)?, text(path)?, bytes(data, len)?) };
        h.write(t, path, data).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_mkdir(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path) = unsafe { (handle(h)?, text(path)?) };
        h.mkdir(t, path).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_rm(
    h: *mut xs_handle,
    t: xs_transaction_t,
    path: *const c_char,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path) = unsafe { (handle(h)?, text(path)?) };
        h.rm(t, path).map(|_| true)
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path) = unsafe { (handle(h)?, text(path)?) };
        let list = h.get_permissions(t, path)?;
        let block = malloc_array(&list)?;
        // SAFETY: the pointer contract: `num` is NULL or writable.
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
        // Each entry takes at least 3 bytes ("n0\0"): more cannot fit in one message.
        if num_perms as usize > crate::wire::PAYLOAD_MAX / 3 {
            return Err(Errno(libc::E2BIG));
        }
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, list) = unsafe { (handle(h)?, text(path)?, array(perms, num_perms)?) };
        h.set_permissions(t, path, list).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, token) = unsafe { (handle(h)?, text(path)?, text(token)?) };
        h.watch(path, token).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch_depth(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
    depth: c_uint,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, token) = unsafe { (handle(h)?, text(path)?, text(token)?) };
        h.watch_depth(path, token, depth).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_watch_try_depth(
    h: *mut xs_handle,
    path: *const c_char,
    token: *const c_char,
    depth: c_uint,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, token) = unsafe { (handle(h)?, text(path)?, text(token)?) };
        h.watch_try_depth(path, token, depth).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_fileno(h: *mut xs_handle) -> c_int {
    guard(-1, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.fileno()
    })
}

/// One fired watch in the C shape: ret[XS_WATCH_PATH], ret[XS_WATCH_TOKEN], one block.
fn event_block(ev: &crate::client::WatchEvent) -> Result<(*mut *mut c_char, u32), Errno> {
    malloc_string_array(ev.strings())
}

pub unsafe extern "C" fn xs_check_watch(h: *mut xs_handle) -> *mut *mut c_char {
    guard(std::ptr::null_mut(), || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        match h.check_watch()? {
            Some(ev) => Ok(event_block(&ev)?.0),
            None => Err(Errno(libc::EAGAIN)),
        }
    })
}

pub unsafe extern "C" fn xs_read_watch(h: *mut xs_handle, num: *mut c_uint) -> *mut *mut c_char {
    guard(std::ptr::null_mut(), || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        let ev = h.read_watch()?;
        let (block, n) = event_block(&ev)?;
        // SAFETY: the pointer contract: `num` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, path, token) = unsafe { (handle(h)?, text(path)?, text(token)?) };
        h.unwatch(path, token).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_transaction_start(h: *mut xs_handle) -> xs_transaction_t {
    guard_io(0, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.transaction_start()
    })
}

pub unsafe extern "C" fn xs_transaction_end(
    h: *mut xs_handle,
    t: xs_transaction_t,
    abort: bool,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.transaction_end(t, abort).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_introduce_domain(
    h: *mut xs_handle,
    domid: c_uint,
    mfn: c_ulong,
    eventchn: c_uint,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.introduce_domain(domid, mfn, eventchn).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_set_target(h: *mut xs_handle, domid: c_uint, target: c_uint) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.set_target(domid, target).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_resume_domain(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.resume_domain(domid).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_release_domain(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.release_domain(domid).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_domain_path(h: *mut xs_handle, domid: c_uint) -> *mut c_char {
    guard_io(std::ptr::null_mut(), || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        malloc_text(&h.get_domain_path(domid)?)
    })
}

pub unsafe extern "C" fn xs_path_is_subpath(parent: *const c_char, child: *const c_char) -> bool {
    guard(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (parent, child) = unsafe { (text(parent)?, text(child)?) };
        Ok(paths::is_subpath(parent, child))
    })
}

pub unsafe extern "C" fn xs_is_domain_introduced(h: *mut xs_handle, domid: c_uint) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.is_domain_introduced(domid)
    })
}

pub unsafe extern "C" fn xs_get_features_supported(
    h: *mut xs_handle,
    features: *mut c_uint,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        let f = h.features_supported()?;
        // SAFETY: the pointer contract: `features` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        let f = h.features_domain(domid)?;
        // SAFETY: the pointer contract: `features` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        h.set_features_domain(domid, features).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_quota_names(
    h: *mut xs_handle,
    num: *mut c_uint,
) -> *mut *const c_char {
    guard_io(std::ptr::null_mut(), || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let h = unsafe { handle(h)? };
        let names = h.quota_names()?;
        let (block, n) = malloc_string_array(names.iter().map(|s| s.as_slice()))?;
        // SAFETY: the pointer contract: `num` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, quota) = unsafe { (handle(h)?, text(quota)?) };
        let v = h.global_quota(quota)?;
        // SAFETY: the pointer contract: `value` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, quota) = unsafe { (handle(h)?, text(quota)?) };
        h.set_global_quota(quota, value).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_get_domain_quota(
    h: *mut xs_handle,
    domid: c_uint,
    quota: *const c_char,
    value: *mut c_uint,
) -> bool {
    guard_io(false, || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, quota) = unsafe { (handle(h)?, text(quota)?) };
        let v = h.domain_quota(domid, quota)?;
        // SAFETY: the pointer contract: `value` is NULL or writable.
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
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, quota) = unsafe { (handle(h)?, text(quota)?) };
        h.set_domain_quota(domid, quota, value).map(|_| true)
    })
}

pub unsafe extern "C" fn xs_control_command(
    h: *mut xs_handle,
    cmd: *const c_char,
    data: *mut c_void,
    len: c_uint,
) -> *mut c_char {
    guard_io(std::ptr::null_mut(), || {
        // SAFETY: the pointer contract (module comment of `ffi`).
        let (h, cmd, data) = unsafe { (handle(h)?, text(cmd)?, bytes(data, len)?) };
        malloc_text(&h.control(cmd, data)?)
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
        // SAFETY: the pointer contract (module comment of `ffi`).
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
        if strings.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: the pointer contract: `perms` has room for `num` entries.
        let out = unsafe { array_mut(perms, num)? };
        let mut at = strings;
        for slot in out {
            // SAFETY: the caller provides `num` NUL-terminated strings back to back.
            let s = unsafe { text(at)? };
            slot.write(perms::Permission::parse(s)?);
            // SAFETY: moves past this string's NUL to the next one, still inside the caller's
            // strings while entries remain.
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
