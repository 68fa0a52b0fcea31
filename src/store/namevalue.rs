//! A node's name and value packed into 24 bytes: kept inside the node itself when together
//! they are short (most XenStore nodes: "state" = "4", "backend-id" = "0"), otherwise in one
//! heap block holding both. This saves the two separate allocations (and their headers) a
//! node would otherwise need, which dominate memory in big stores of small nodes.

use std::fmt;

/// Bytes of name plus value kept inline.
pub(crate) const INLINE: usize = 21;

#[derive(Clone)]
pub(crate) enum NameValue {
    Inline {
        name_len: u8,
        len: u8,
        buf: [u8; INLINE],
    },
    /// `data` is the name followed by the value.
    Heap { name_len: u32, data: Box<[u8]> },
}

impl NameValue {
    pub fn new(name: &[u8], value: &[u8]) -> NameValue {
        let len = name.len() + value.len();
        if len <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..name.len()].copy_from_slice(name);
            buf[name.len()..len].copy_from_slice(value);
            NameValue::Inline {
                name_len: name.len() as u8,
                len: len as u8,
                buf,
            }
        } else {
            let mut data = Vec::with_capacity(len);
            data.extend_from_slice(name);
            data.extend_from_slice(value);
            // Names are path components, far shorter than 4 GiB (the payload limit is 4 KiB).
            NameValue::Heap {
                name_len: name.len() as u32,
                data: data.into_boxed_slice(),
            }
        }
    }

    fn parts(&self) -> (&[u8], usize) {
        match self {
            NameValue::Inline { name_len, len, buf } => (&buf[..*len as usize], *name_len as usize),
            NameValue::Heap { name_len, data } => (data, *name_len as usize),
        }
    }

    pub fn name(&self) -> &[u8] {
        let (all, n) = self.parts();
        &all[..n]
    }

    pub fn value(&self) -> &[u8] {
        let (all, n) = self.parts();
        &all[n..]
    }

    /// Replaces the value, keeping the name.
    pub fn set_value(&mut self, value: &[u8]) {
        let name_len = self.name().len();
        let len = name_len + value.len();
        match self {
            NameValue::Inline { len: l, buf, .. } if len <= INLINE => {
                buf[name_len..len].copy_from_slice(value);
                *l = len as u8;
            }
            NameValue::Heap { data, .. } if data.len() == len => {
                data[name_len..].copy_from_slice(value)
            }
            _ => {
                let name = self.name().to_vec();
                *self = NameValue::new(&name, value);
            }
        }
    }
}

impl fmt::Debug for NameValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}={:?}",
            String::from_utf8_lossy(self.name()),
            String::from_utf8_lossy(self.value())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_24_bytes() {
        assert_eq!(std::mem::size_of::<NameValue>(), 24);
    }

    #[test]
    fn round_trips_across_the_inline_limit() {
        let name = b"name";
        let mut nv = NameValue::new(name, b"");
        assert!(matches!(nv, NameValue::Inline { .. }));
        assert_eq!((nv.name(), nv.value()), (&name[..], &b""[..]));
        // Grow the value byte by byte past the inline limit and back down again.
        let mut values: Vec<Vec<u8>> = (0..40)
            .map(|n| (0..n).map(|i| b'a' + i as u8 % 26).collect())
            .collect();
        let down: Vec<Vec<u8>> = values.iter().rev().cloned().collect();
        values.extend(down);
        for v in &values {
            nv.set_value(v);
            assert_eq!(nv.name(), name);
            assert_eq!(nv.value(), &v[..]);
            let inline = name.len() + v.len() <= INLINE;
            assert_eq!(
                matches!(nv, NameValue::Inline { .. }),
                inline,
                "{} bytes",
                v.len()
            );
        }
        // Same-length rewrite of a heap value happens in place.
        let long = [b'x'; 30];
        nv.set_value(&long);
        let before = match &nv {
            NameValue::Heap { data, .. } => data.as_ptr(),
            _ => panic!("expected heap"),
        };
        nv.set_value(&[b'y'; 30]);
        match &nv {
            NameValue::Heap { data, .. } => assert_eq!(data.as_ptr(), before),
            _ => panic!("expected heap"),
        }
        assert_eq!(nv.value(), &[b'y'; 30]);
    }

    #[test]
    fn long_names() {
        let name = vec![b'n'; 300];
        let nv = NameValue::new(&name, b"v");
        assert_eq!(nv.name(), &name[..]);
        assert_eq!(nv.value(), b"v");
        let empty = NameValue::new(b"", b"");
        assert!(empty.name().is_empty() && empty.value().is_empty());
    }
}
