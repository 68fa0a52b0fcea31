//! Access-list entries as the C API shows them (`struct xs_permissions`) and their string form
//! on the wire ("r5", "b0", ...), parsed and printed exactly as the C library does.

use super::cnum;
use super::Errno;

/// No access.
pub const PERM_NONE: u32 = 0x00;
/// May read.
pub const PERM_READ: u32 = 0x01;
/// May write.
pub const PERM_WRITE: u32 = 0x02;
/// A daemon-internal bit, never on the wire, tolerated when printing (as in the C library).
pub const PERM_IGNORE: u32 = 0x10;

/// `struct xs_permissions`: a domain and what it may do (PERM_* bits).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permission {
    pub id: u32,
    pub perms: u32,
}

impl Permission {
    /// Parses one entry ("r5", without its NUL). Like the C library, the domain number is read
    /// with strtol base 0 (so "0x10" and "010" are accepted) and truncated to 32 bits, and
    /// anything left after it is an error.
    pub fn parse(s: &[u8]) -> Result<Permission, Errno> {
        let (&letter, rest) = s.split_first().ok_or(Errno(libc::EINVAL))?;
        let perms = match letter {
            b'r' => PERM_READ,
            b'w' => PERM_WRITE,
            b'b' => PERM_READ | PERM_WRITE,
            b'n' => PERM_NONE,
            _ => return Err(Errno(libc::EINVAL)),
        };
        let (value, used) = cnum::strtol(rest, 0);
        if rest.is_empty() || used != rest.len() {
            return Err(Errno(libc::EINVAL));
        }
        Ok(Permission {
            id: value as u32,
            perms,
        })
    }

    /// The wire form ("r5"). The domain prints as a signed int, as the C library does; the
    /// IGNORE bit is dropped; any other bits beyond read/write are EINVAL.
    pub fn to_wire(&self) -> Result<Vec<u8>, Errno> {
        let letter = match self.perms & !PERM_IGNORE {
            PERM_WRITE => b'w',
            PERM_READ => b'r',
            x if x == PERM_READ | PERM_WRITE => b'b',
            PERM_NONE => b'n',
            _ => return Err(Errno(libc::EINVAL)),
        };
        let mut out = vec![letter];
        out.extend_from_slice((self.id as i32).to_string().as_bytes());
        Ok(out)
    }
}

/// Parses a GET_PERMS reply: one entry per NUL-terminated string.
pub fn parse_list(body: &[u8]) -> Result<Vec<Permission>, Errno> {
    let n = body.iter().filter(|&&c| c == 0).count();
    body.split(|&c| c == 0)
        .take(n)
        .map(Permission::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_c_library() {
        assert_eq!(
            Permission::parse(b"r5"),
            Ok(Permission {
                id: 5,
                perms: PERM_READ
            })
        );
        assert_eq!(
            Permission::parse(b"b0x10"),
            Ok(Permission { id: 16, perms: 3 })
        );
        assert_eq!(
            Permission::parse(b"w010"),
            Ok(Permission {
                id: 8,
                perms: PERM_WRITE
            })
        );
        assert_eq!(
            Permission::parse(b"n-1"),
            Ok(Permission {
                id: u32::MAX,
                perms: 0
            })
        );
        assert_eq!(
            Permission::parse(b"n 7"),
            Ok(Permission { id: 7, perms: 0 })
        );
        for bad in [&b""[..], b"r", b"x1", b"r1a", b"r0x", b"r "] {
            assert_eq!(Permission::parse(bad), Err(Errno(libc::EINVAL)), "{bad:?}");
        }
    }

    #[test]
    fn prints_like_the_c_library() {
        let p = |id, perms| Permission { id, perms }.to_wire();
        assert_eq!(p(0, PERM_NONE).unwrap(), b"n0");
        assert_eq!(p(7, PERM_READ | PERM_WRITE | PERM_IGNORE).unwrap(), b"b7");
        assert_eq!(p(u32::MAX, PERM_WRITE).unwrap(), b"w-1");
        // PERM_OWNER, a daemon-internal bit the C library refuses to print.
        assert_eq!(p(1, 0x08), Err(Errno(libc::EINVAL)));
    }

    #[test]
    fn parses_a_reply() {
        let l = parse_list(b"n0\0r3\0").unwrap();
        assert_eq!(
            l,
            vec![
                Permission { id: 0, perms: 0 },
                Permission { id: 3, perms: 1 }
            ]
        );
        assert!(parse_list(b"").unwrap().is_empty());
        assert!(parse_list(b"n0\0q1\0").is_err());
    }
}
