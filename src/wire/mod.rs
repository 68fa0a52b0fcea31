//! The xenstore wire protocol: one definition shared by the client, the engine, the server and
//! the ring. Nothing here does I/O.
//!
//! A message is a 16-byte [`Header`] (type, req_id, tx_id, len; native byte order) followed by
//! `len <= XENSTORE_PAYLOAD_MAX` bytes of payload, usually NUL-terminated strings.

mod abi;
mod errors;

pub use abi::*;
pub use errors::{errno_from_name, name_from_errno, XSD_ERRORS};

/// Size of the message header on the wire.
pub const HEADER_LEN: usize = 16;
/// Largest payload, as a usize.
pub const PAYLOAD_MAX: usize = XENSTORE_PAYLOAD_MAX as usize;
/// The most domains a domid can name (domid_t is 16 bits; DOMID_FIRST_RESERVED = 0x7FF0).
pub const DOMID_FIRST_RESERVED: u32 = 0x7FF0;

/// Message types as a Rust enum with a checked conversion from the wire number.
pub type MsgType = xsd_sockmsg_type;

impl MsgType {
    /// Every defined type, in numbering order.
    pub const ALL: [MsgType; 26] = {
        use xsd_sockmsg_type::*;
        [
            XS_CONTROL,
            XS_DIRECTORY,
            XS_READ,
            XS_GET_PERMS,
            XS_WATCH,
            XS_UNWATCH,
            XS_TRANSACTION_START,
            XS_TRANSACTION_END,
            XS_INTRODUCE,
            XS_RELEASE,
            XS_GET_DOMAIN_PATH,
            XS_WRITE,
            XS_MKDIR,
            XS_RM,
            XS_SET_PERMS,
            XS_WATCH_EVENT,
            XS_ERROR,
            XS_IS_DOMAIN_INTRODUCED,
            XS_RESUME,
            XS_SET_TARGET,
            XS_RESET_WATCHES,
            XS_DIRECTORY_PART,
            XS_GET_FEATURE,
            XS_SET_FEATURE,
            XS_GET_QUOTA,
            XS_SET_QUOTA,
        ]
    };

    /// The type with this wire number, if it is a real message type.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        MsgType::ALL.iter().copied().find(|t| *t as u32 == v)
    }

    /// The protocol's name for the type, as xenstore.txt and the daemons' logs spell it.
    pub fn name(self) -> &'static str {
        use xsd_sockmsg_type::*;
        match self {
            XS_CONTROL => "CONTROL",
            XS_DIRECTORY => "DIRECTORY",
            XS_READ => "READ",
            XS_GET_PERMS => "GET_PERMS",
            XS_WATCH => "WATCH",
            XS_UNWATCH => "UNWATCH",
            XS_TRANSACTION_START => "TRANSACTION_START",
            XS_TRANSACTION_END => "TRANSACTION_END",
            XS_INTRODUCE => "INTRODUCE",
            XS_RELEASE => "RELEASE",
            XS_GET_DOMAIN_PATH => "GET_DOMAIN_PATH",
            XS_WRITE => "WRITE",
            XS_MKDIR => "MKDIR",
            XS_RM => "RM",
            XS_SET_PERMS => "SET_PERMS",
            XS_WATCH_EVENT => "WATCH_EVENT",
            XS_ERROR => "ERROR",
            XS_IS_DOMAIN_INTRODUCED => "IS_DOMAIN_INTRODUCED",
            XS_RESUME => "RESUME",
            XS_SET_TARGET => "SET_TARGET",
            XS_RESET_WATCHES => "RESET_WATCHES",
            XS_DIRECTORY_PART => "DIRECTORY_PART",
            XS_GET_FEATURE => "GET_FEATURE",
            XS_SET_FEATURE => "SET_FEATURE",
            XS_GET_QUOTA => "GET_QUOTA",
            XS_SET_QUOTA => "SET_QUOTA",
            XS_TYPE_COUNT => "TYPE_COUNT",
            XS_INVALID => "INVALID",
        }
    }
}

/// An errno value (libc numbering): how every failure is reported, by the engine (sent on the
/// wire by name) and by the client (as the C API reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}

/// What the system said: its errno (EIO if it gave none).
impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// A decoded message header.
pub type Header = xsd_sockmsg;

/// Cuts bytes holding messages back to back into one slice per message (header and
/// payload), as their headers say; the last may be cut short.
pub fn split_messages(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let total = match bytes.first_chunk::<HEADER_LEN>() {
            Some(h) => HEADER_LEN + u32::from_ne_bytes([h[12], h[13], h[14], h[15]]) as usize,
            None => bytes.len(),
        };
        let (m, rest) = bytes.split_at(total.min(bytes.len()));
        bytes = rest;
        Some(m)
    })
}

/// Why a header or payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// `len` exceeds XENSTORE_PAYLOAD_MAX.
    TooLong(u32),
}

impl Header {
    pub fn new(ty: MsgType, req_id: u32, tx_id: u32, len: u32) -> Header {
        Header {
            ty: ty as u32,
            req_id,
            tx_id,
            len,
        }
    }

    /// The header's bytes as sent (native endianness, as every xenstore peer uses).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_ne_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_ne_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_ne_bytes());
        b[12..16].copy_from_slice(&self.len.to_ne_bytes());
        b
    }

    /// Parses a header; refuses a payload length over the protocol maximum.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            ty: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        };
        if h.len > XENSTORE_PAYLOAD_MAX {
            return Err(WireError::TooLong(h.len));
        }
        Ok(h)
    }

    /// The message type, if the number is a known one.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_u32(self.ty)
    }
}

/// One whole message (header and payload), as taken off a socket or a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn new(header: Header, payload: Vec<u8>) -> Message {
        Message {
            header: Header {
                len: payload.len() as u32,
                ..header
            },
            payload,
        }
    }

    /// Header and payload as they travel.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Builds one whole message (header + payload) in a single buffer, so it can be written with
/// one system call. The caller guarantees `payload.len() <= PAYLOAD_MAX`.
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= PAYLOAD_MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&Header::new(ty, req_id, tx_id, payload.len() as u32).to_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a payload of NUL-terminated strings into its strings (without the NULs). A final
/// string lacking its NUL is still returned, as peers differ on whether the last one has it.
pub fn split_strings(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    if payload.is_empty() {
        return Vec::new();
    }
    body.split(|&c| c == 0).collect()
}

/// Joins strings into a payload, each followed by a NUL.
pub fn join_strings<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

/// Feature-and-quota helpers shared by client and server: quota names are plain ASCII words.
pub mod perms {
    /// One permission entry: a letter ('n','r','w','b') and a domid, as "r5".
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Perm {
        pub domid: u32,
        pub read: bool,
        pub write: bool,
    }

    impl Perm {
        /// Parses "n0", "r5", "w7", "b3". Returns None for anything else.
        pub fn parse(s: &[u8]) -> Option<Perm> {
            let (&letter, digits) = s.split_first()?;
            let (read, write) = match letter {
                b'n' => (false, false),
                b'r' => (true, false),
                b'w' => (false, true),
                b'b' => (true, true),
                _ => return None,
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let domid = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some(Perm { domid, read, write })
        }

        pub fn letter(&self) -> u8 {
            match (self.read, self.write) {
                (false, false) => b'n',
                (true, false) => b'r',
                (false, true) => b'w',
                (true, true) => b'b',
            }
        }

        /// "r5"
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut v = vec![self.letter()];
            v.extend_from_slice(self.domid.to_string().as_bytes());
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_limit() {
        let h = Header::new(MsgType::XS_READ, 7, 3, 12);
        assert_eq!(Header::parse(&h.to_bytes()), Ok(h));
        let big = Header { len: 4097, ..h };
        assert_eq!(
            Header::parse(&big.to_bytes()),
            Err(WireError::TooLong(4097))
        );
    }

    #[test]
    fn type_numbers_match_the_c_enum() {
        assert_eq!(MsgType::XS_SET_TARGET as u32, 19);
        assert_eq!(MsgType::XS_RESET_WATCHES as u32, 21);
        assert_eq!(MsgType::XS_SET_QUOTA as u32, 26);
        assert_eq!(MsgType::from_u32(20), None);
        for t in MsgType::ALL {
            assert_eq!(MsgType::from_u32(t as u32), Some(t));
        }
        assert_eq!(
            std::mem::size_of::<xenstore_domain_interface>(),
            2048 + 4 * 8
        );
    }

    #[test]
    fn strings_split_and_join() {
        assert_eq!(split_strings(b"a\0bc\0"), vec![&b"a"[..], b"bc"]);
        assert_eq!(split_strings(b"a\0bc"), vec![&b"a"[..], b"bc"]);
        assert!(split_strings(b"").is_empty());
        assert_eq!(split_strings(b"\0"), vec![&b""[..]]);
        assert_eq!(join_strings([&b"x"[..], b"yz"]), b"x\0yz\0");
    }

    #[test]
    fn perm_strings() {
        use perms::Perm;
        let p = Perm::parse(b"b12").unwrap();
        assert_eq!((p.domid, p.read, p.write), (12, true, true));
        assert_eq!(p.to_bytes(), b"b12");
        assert!(Perm::parse(b"x1").is_none());
        assert!(Perm::parse(b"r").is_none());
        assert!(Perm::parse(b"r1a").is_none());
    }
}
