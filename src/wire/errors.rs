//! Errors travel as their errno *names* ("ENOENT"), never numbers, so that domains with other
//! errno numberings interoperate. This table is the one both directions use, and the one the C
//! header's `xsd_errors[]` is generated from (same entries, same order).

/// (errno value on this platform, name on the wire), in the order of the C table.
pub const XSD_ERRORS: &[(i32, &str)] = &[
    (libc::EINVAL, "EINVAL"),
    (libc::EACCES, "EACCES"),
    (libc::EEXIST, "EEXIST"),
    (libc::EISDIR, "EISDIR"),
    (libc::ENOENT, "ENOENT"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::EIO, "EIO"),
    (libc::ENOTEMPTY, "ENOTEMPTY"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::EROFS, "EROFS"),
    (libc::EBUSY, "EBUSY"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::EISCONN, "EISCONN"),
    (libc::E2BIG, "E2BIG"),
    (libc::EPERM, "EPERM"),
];

/// The errno a client reports for an XS_ERROR payload. Unknown names map to EINVAL, as the C
/// library does. The payload may or may not carry its trailing NUL.
pub fn errno_from_name(name: &[u8]) -> i32 {
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    XSD_ERRORS
        .iter()
        .find(|(_, n)| n.as_bytes() == name)
        .map_or(libc::EINVAL, |(e, _)| *e)
}

/// The wire name of an errno, for a server's XS_ERROR reply. Errnos the table lacks are sent
/// as "EINVAL" (the C daemon does the same).
pub fn name_from_errno(errno: i32) -> &'static str {
    XSD_ERRORS
        .iter()
        .find(|(e, _)| *e == errno)
        .map_or("EINVAL", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_entry() {
        for &(e, n) in XSD_ERRORS {
            assert_eq!(errno_from_name(n.as_bytes()), e);
            assert_eq!(name_from_errno(e), n);
        }
    }

    #[test]
    fn unknown_and_nul_terminated() {
        assert_eq!(errno_from_name(b"EWHATEVER\0"), libc::EINVAL);
        assert_eq!(errno_from_name(b"ENOENT\0"), libc::ENOENT);
        assert_eq!(name_from_errno(libc::ETIMEDOUT), "EINVAL");
    }
}
