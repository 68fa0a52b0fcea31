//! Where the daemon and the xenbus device live, and the path relation watches use. The
//! environment overrides are those of the C library: XENSTORED_RUNDIR moves the run directory,
//! XENSTORED_PATH names the connection outright (socket or device, whichever it is).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::sys;

/// Default run directory (Debian's and upstream's XEN_RUN_STORED).
pub const DEFAULT_RUNDIR: &str = "/var/run/xenstored";
/// The xenbus device, where the C library looks first on Linux.
pub const XENBUS_DEV: &str = "/dev/xen/xenbus";
/// The older procfs location, used when the device node does not exist.
pub const XENBUS_PROC: &str = "/proc/xen/xenbus";

/// Longest path the C library builds (its PATH_MAX buffer, NUL included).
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// `$XENSTORED_RUNDIR`, else the default run directory.
pub fn daemon_rundir() -> OsString {
    std::env::var_os("XENSTORED_RUNDIR").unwrap_or_else(|| DEFAULT_RUNDIR.into())
}

/// `$XENSTORED_PATH`, else `<rundir>/socket`; None when that would not fit PATH_MAX (the C
/// library returns NULL then). The read-only socket is the same path nowadays.
pub fn daemon_socket() -> Option<OsString> {
    if let Some(p) = std::env::var_os("XENSTORED_PATH") {
        return Some(p);
    }
    let mut p = daemon_rundir().into_vec();
    p.extend_from_slice(b"/socket");
    (p.len() < PATH_MAX).then(|| OsString::from_vec(p))
}

/// `$XENSTORED_PATH`, else the xenbus device if it exists, else its procfs location.
pub fn domain_dev() -> OsString {
    if let Some(p) = std::env::var_os("XENSTORED_PATH") {
        return p;
    }
    let dev = CString::new(XENBUS_DEV).expect("constant has no NUL");
    if sys::exists(&dev) {
        XENBUS_DEV
    } else {
        XENBUS_PROC
    }
    .into()
}

/// Whether `child` is `parent` or lies below it, by plain string comparison.
pub fn is_subpath(parent: &[u8], child: &[u8]) -> bool {
    child.starts_with(parent) && (child.len() == parent.len() || child[parent.len()] == b'/')
}

/// An OS string as a C string; None if it holds a NUL (no such path can be opened).
pub fn to_cstring(p: &OsString) -> Option<CString> {
    CString::new(p.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpaths() {
        assert!(is_subpath(b"/a", b"/a"));
        assert!(is_subpath(b"/a", b"/a/b"));
        assert!(!is_subpath(b"/a", b"/ab"));
        assert!(!is_subpath(b"/a/b", b"/a"));
        // As in C: the empty parent is a prefix of everything, "/" only of itself and "//x".
        assert!(is_subpath(b"", b"/x"));
        assert!(!is_subpath(b"/", b"/x"));
    }
}
