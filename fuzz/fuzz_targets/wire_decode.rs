//! Arbitrary bytes through the wire module, read as a stream of messages the way a transport
//! reads a socket: header, then as much payload as the header announces.
//!
//! Invariants: nothing panics; a header parses exactly when its `len` is within the limit and
//! re-encodes to the same 16 bytes; payload splitting and joining round-trip; every message
//! rebuilt with `encode` parses back to itself; permission strings and error names that parse
//! re-encode to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::wire::{self, perms::Perm, Header, MsgType, WireError, HEADER_LEN, PAYLOAD_MAX};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let (head, tail) = rest.split_at(HEADER_LEN);
        let raw: &[u8; HEADER_LEN] = head.try_into().unwrap();
        let announced = u32::from_ne_bytes(raw[12..16].try_into().unwrap());
        let hdr = match Header::parse(raw) {
            Ok(h) => h,
            Err(WireError::TooLong(n)) => {
                assert_eq!(n, announced);
                assert!(
                    n as usize > PAYLOAD_MAX,
                    "refused a header within the limit"
                );
                // A transport closes the connection here; keep going one byte later so the
                // rest of the input still gets decoded.
                rest = &rest[1..];
                continue;
            }
        };
        assert!(hdr.len as usize <= PAYLOAD_MAX);
        assert_eq!(hdr.len, announced);
        assert_eq!(
            &hdr.to_bytes(),
            raw,
            "header does not re-encode to its bytes"
        );

        if let Some(t) = hdr.msg_type() {
            assert_eq!(t as u32, hdr.ty);
            assert_eq!(MsgType::from_u32(t as u32), Some(t));
            assert!(!t.name().is_empty());
        } else {
            assert!(!MsgType::ALL.iter().any(|t| *t as u32 == hdr.ty));
        }

        // A truncated final message is decoded with what there is (as a transport would see
        // it so far).
        let n = (hdr.len as usize).min(tail.len());
        let (payload, next) = tail.split_at(n);
        check_payload(payload);

        if let Some(t) = hdr.msg_type() {
            let msg = wire::encode(t, hdr.req_id, hdr.tx_id, payload);
            assert_eq!(msg.len(), HEADER_LEN + payload.len());
            let back =
                Header::parse(msg[..HEADER_LEN].try_into().unwrap()).expect("own header refused");
            assert_eq!(
                back,
                Header {
                    len: payload.len() as u32,
                    ..hdr
                }
            );
            assert_eq!(&msg[HEADER_LEN..], payload);
        }
        rest = next;
    }
    // Whatever is left is too short for a header: treat it as a payload too.
    check_payload(rest);
});

fn check_payload(payload: &[u8]) {
    let parts = wire::split_strings(payload);
    let joined = wire::join_strings(parts.iter().copied());
    if payload.is_empty() {
        assert!(parts.is_empty());
        assert!(joined.is_empty());
    } else if payload.ends_with(b"\0") {
        assert_eq!(joined, payload, "split/join does not round-trip");
        assert_eq!(parts.len(), payload.iter().filter(|&&c| c == 0).count());
    } else {
        assert_eq!(&joined[..payload.len()], payload);
        assert_eq!(joined.len(), payload.len() + 1);
    }
    for p in &parts {
        assert!(!p.contains(&0));
        if let Some(perm) = Perm::parse(p) {
            let again = Perm::parse(&perm.to_bytes()).expect("own permission string refused");
            assert_eq!(again, perm);
            assert_eq!(perm.to_bytes()[0], perm.letter());
        }
        let errno = wire::errno_from_name(p);
        let name = wire::name_from_errno(errno);
        assert_eq!(wire::errno_from_name(name.as_bytes()), errno);
        if wire::XSD_ERRORS.iter().any(|(_, n)| n.as_bytes() == *p) {
            assert_eq!(name.as_bytes(), *p);
        }
    }
}
