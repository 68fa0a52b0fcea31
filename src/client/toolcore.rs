//! Registration with libxentoolcore, as the C library does it. A process that deprivileges
//! itself (QEMU's `-xen-domid-restrict`) calls `xentoolcore_restrict_all`, which asks every
//! registered handle of every Xen library to give up its access; a XenStore handle does so by
//! putting /dev/null behind its descriptor, so that its requests fail from then on (EBADF).
//!
//! The C library links libxentoolcore; ours looks its registration functions up in the
//! process when a handle connects, so it has no NEEDED entry on it and works where it is not
//! installed: a process that has not loaded libxentoolcore cannot call
//! `xentoolcore_restrict_all` either.
//!
//! The record libxentoolcore keeps is `struct Xentoolcore__Active_Handle` from its
//! `xentoolcore_internal.h`: the callback, then the list links that libxentoolcore owns. Ours
//! carries the descriptor after those. It stays at one heap address from registration until
//! deregistration, which happens before the descriptor is closed (the handle drops its
//! `Registration` before its connection).

use std::ffi::{c_int, c_void, CStr};
use std::os::fd::RawFd;

use crate::sys;

type RestrictCallback = unsafe extern "C" fn(*mut ActiveHandle, u16) -> c_int;
type RegisterFn = unsafe extern "C" fn(*mut ActiveHandle);

/// libxentoolcore's record, with our descriptor after the part it knows.
#[repr(C)]
struct ActiveHandle {
    restrict_callback: RestrictCallback,
    /// `XEN_TAILQ_ENTRY`: the next record and the address of the previous one's link.
    next: *mut c_void,
    prev: *mut *mut c_void,
    fd: RawFd,
}

/// A handle's registration; dropping it deregisters.
pub(crate) struct Registration {
    record: *mut ActiveHandle,
    deregister: RegisterFn,
}

// SAFETY: the record is only touched by libxentoolcore under its own lock, and by `restrict`,
// which reads the descriptor (immutable after registration).
unsafe impl Send for Registration {}
// SAFETY: as above; `Registration` has no methods taking `&self`.
unsafe impl Sync for Registration {}

/// Called by `xentoolcore_restrict_all`, under libxentoolcore's lock.
unsafe extern "C" fn restrict(record: *mut ActiveHandle, _domid: u16) -> c_int {
    // SAFETY: `record` is one of ours (only `register` hands this callback out), alive until
    // deregistered, and `fd` is not written after registration.
    let fd = unsafe { (*record).fd };
    match sys::replace_with_dev_null(fd) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// The function `name` of libxentoolcore, when the process has it loaded.
fn lookup(name: &CStr) -> Option<RegisterFn> {
    let f = sys::find_symbol(name)?;
    // SAFETY: libxentoolcore defines these two names as `void f(Xentoolcore__Active_Handle *)`.
    Some(unsafe { std::mem::transmute::<*mut c_void, RegisterFn>(f) })
}

/// Registers the handle whose connection is `fd`, if libxentoolcore is loaded.
pub(crate) fn register(fd: RawFd) -> Option<Registration> {
    let register = lookup(c"xentoolcore__register_active_handle")?;
    let deregister = lookup(c"xentoolcore__deregister_active_handle")?;
    let record = Box::into_raw(Box::new(ActiveHandle {
        restrict_callback: restrict,
        next: std::ptr::null_mut(),
        prev: std::ptr::null_mut(),
        fd,
    }));
    // SAFETY: `record` is a valid record that stays at this address until `deregister` (Drop).
    unsafe { register(record) };
    Some(Registration { record, deregister })
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `record` was registered by `register` and is deregistered once, here; after
        // that libxentoolcore holds no pointer to it and it can be freed.
        unsafe {
            (self.deregister)(self.record);
            drop(Box::from_raw(self.record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn rdev(fd: RawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .map(|m| std::os::unix::fs::MetadataExt::rdev(&m))
            .unwrap()
    }

    #[test]
    fn nothing_is_registered_without_libxentoolcore() {
        // The test binary does not load libxentoolcore.
        assert!(register(0).is_none());
    }

    #[test]
    fn the_callback_puts_dev_null_behind_the_descriptor() {
        let (read_end, _write_end) = sys::pipe_cloexec().unwrap();
        let fd = read_end.as_raw_fd();
        let mut record = ActiveHandle {
            restrict_callback: restrict,
            next: std::ptr::null_mut(),
            prev: std::ptr::null_mut(),
            fd,
        };
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_ne!(rdev(fd), rdev(null.as_raw_fd()));
        // SAFETY: `record` is a valid record for the duration of the call.
        assert_eq!(unsafe { (record.restrict_callback)(&mut record, 1) }, 0);
        assert_eq!(rdev(fd), rdev(null.as_raw_fd()));
        // The descriptor number is unchanged and still ours: dropping `read_end` closes it.
    }
}
