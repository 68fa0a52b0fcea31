//! Seed inputs for the corpus: real request sequences (what a guest's libxenstore and a
//! toolstack send) for `dispatch`, and real message streams for `wire_decode`.
//!
//! `cargo test` runs every seed through its harness; with `XSFUZZ_WRITE_CORPUS=1` it also
//! (re)writes fuzz/corpus/<target>/seed-<name>.

use xenstore::wire::{self, MsgType};

use crate::{Op, TxSel, Who};

use xenstore::wire::xsd_sockmsg_type::*;

fn g(ty: MsgType, payload: &[u8]) -> Op {
    Op::Request {
        who: Who::Guest,
        ty: ty as u32,
        tx: TxSel::None,
        payload: payload.to_vec(),
        len_override: None,
    }
}
fn gt(ty: MsgType, payload: &[u8]) -> Op {
    Op::Request {
        who: Who::Guest,
        ty: ty as u32,
        tx: TxSel::Last,
        payload: payload.to_vec(),
        len_override: None,
    }
}
fn d(ty: MsgType, payload: &[u8]) -> Op {
    Op::Request {
        who: Who::Dom0,
        ty: ty as u32,
        tx: TxSel::None,
        payload: payload.to_vec(),
        len_override: None,
    }
}

/// (name, operations) of every `dispatch` seed.
pub fn dispatch_seeds() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "guest-basic",
            vec![
                g(XS_WRITE, b"data/foo\0bar"),
                g(XS_READ, b"data/foo\0"),
                g(XS_DIRECTORY, b"data\0"),
                g(XS_GET_PERMS, b"data/foo\0"),
                g(XS_SET_PERMS, b"data/foo\0n7\0r8\0"),
                g(XS_MKDIR, b"/local/domain/7/device/vif/0\0"),
                g(XS_RM, b"data/foo\0"),
                g(XS_READ, b"data/foo\0"),
                g(XS_GET_DOMAIN_PATH, b"7\0"),
            ],
        ),
        (
            "guest-transaction",
            vec![
                g(XS_TRANSACTION_START, b"\0"),
                gt(XS_WRITE, b"data/t\x001"),
                gt(XS_READ, b"data/t\0"),
                gt(XS_MKDIR, b"data/u\0"),
                gt(XS_DIRECTORY, b"data\0"),
                gt(XS_TRANSACTION_END, b"T\0"),
                g(XS_READ, b"data/t\0"),
            ],
        ),
        (
            "transaction-conflict",
            vec![
                g(XS_WRITE, b"data/c\x000"),
                g(XS_TRANSACTION_START, b"\0"),
                gt(XS_READ, b"data/c\0"),
                d(XS_WRITE, b"/local/domain/7/data/c\x00dom0"),
                gt(XS_WRITE, b"data/c\x001"),
                gt(XS_TRANSACTION_END, b"T\0"),
                g(XS_TRANSACTION_START, b"\0"),
                gt(XS_RM, b"data\0"),
                gt(XS_TRANSACTION_END, b"F\0"),
            ],
        ),
        (
            "watches",
            vec![
                g(XS_WATCH, b"data\0tok\0"),
                g(XS_WATCH, b"/local/domain/8\0other\0"),
                g(XS_WATCH, b"@releaseDomain\0rel\0"),
                g(XS_WATCH, b"@introduceDomain\0intro\0"),
                d(XS_WRITE, b"/local/domain/7/data/w\0v"),
                g(XS_WRITE, b"data/x/y\0z"),
                d(XS_INTRODUCE, b"9\x00100\x003\0"),
                d(XS_RELEASE, b"8\0"),
                g(XS_UNWATCH, b"data\0tok\0"),
                g(XS_RM, b"data\0"),
                g(XS_RESET_WATCHES, b""),
            ],
        ),
        (
            "watch-depth",
            vec![
                g(XS_WATCH, b"/local/domain/7\0d\x001\0"),
                g(XS_WATCH, b"/\0root\0"),
                g(XS_WRITE, b"a/b/c\0v"),
                d(XS_WRITE, b"/x\0v"),
                d(XS_SET_PERMS, b"/x\0n0\0r7\0"),
                d(XS_RM, b"/x\0"),
            ],
        ),
        (
            "guest-attacks",
            vec![
                g(XS_READ, b"/secret\0"),
                g(XS_WRITE, b"/secret\0x"),
                g(XS_SET_PERMS, b"/secret\0n7\0"),
                g(XS_RM, b"/secret\0"),
                g(XS_DIRECTORY, b"/secret\0"),
                g(XS_DIRECTORY_PART, b"/secret\x000\0"),
                g(XS_GET_PERMS, b"/secret/hiddenchild\0"),
                g(XS_SET_PERMS, b"/shared\0n7\0"),
                g(XS_WRITE, b"/readable\0y"),
                g(XS_MKDIR, b"/secret/new\0"),
                g(XS_SET_TARGET, b"7\x000\0"),
                g(XS_INTRODUCE, b"7\x001\x001\0"),
                g(XS_CONTROL, b"check\0"),
                g(XS_SET_QUOTA, b"nodes\x001000000\0"),
                g(XS_SET_PERMS, b"@releaseDomain\0n7\0"),
                g(XS_TRANSACTION_START, b"\0"),
                gt(XS_READ, b"/secret\0"),
                gt(XS_RM, b"/secret/hiddenchild\0"),
                gt(XS_TRANSACTION_END, b"T\0"),
            ],
        ),
        (
            "shared-and-readable",
            vec![
                g(XS_WRITE, b"/shared/mine\0v"),
                g(XS_READ, b"/readable\0"),
                g(XS_DIRECTORY, b"/shared\0"),
                g(XS_GET_PERMS, b"/shared/mine\0"),
                g(XS_SET_PERMS, b"/shared/mine\0n7\0b0\0"),
                g(XS_READ, b"/local/domain/8/device\0"),
                g(XS_WRITE, b"/local/domain/8/device\0x"),
                g(XS_RM, b"/shared\0"),
            ],
        ),
        (
            "toolstack",
            vec![
                d(XS_INTRODUCE, b"9\x00100\x003\0"),
                d(XS_MKDIR, b"/local/domain/9\0"),
                d(XS_SET_PERMS, b"/local/domain/9\0n9\0r0\0"),
                d(XS_GET_DOMAIN_PATH, b"9\0"),
                d(XS_IS_DOMAIN_INTRODUCED, b"9\0"),
                d(XS_SET_TARGET, b"7\x009\0"),
                g(XS_WRITE, b"/local/domain/9/x\0v"),
                g(XS_SET_PERMS, b"/local/domain/9\0n9\0b7\0"),
                d(XS_RESUME, b"9\0"),
                d(XS_RELEASE, b"9\0"),
                g(XS_READ, b"/local/domain/9/x\0"),
                d(XS_RELEASE, b"7\0"),
                g(XS_WRITE, b"/shared/after\0v"),
                d(XS_INTRODUCE, b"7\x001234\x005\0"),
                g(XS_READ, b"data\0"),
            ],
        ),
        (
            "quotas",
            vec![
                d(XS_GET_QUOTA, b""),
                d(XS_SET_QUOTA, b"7\0nodes\x004\0"),
                d(XS_GET_QUOTA, b"7\0nodes\0"),
                g(XS_WRITE, b"q/a\0v"),
                g(XS_WRITE, b"q/b\0v"),
                g(XS_WRITE, b"q/c\0v"),
                g(XS_WRITE, b"q/d\0v"),
                d(XS_SET_QUOTA, b"transactions\x001\0"),
                d(XS_SET_QUOTA, b"7\0transactions\x001\0"),
                g(XS_TRANSACTION_START, b"\0"),
                g(XS_TRANSACTION_START, b"\0"),
                d(XS_SET_QUOTA, b"7\0watches\x001\0"),
                g(XS_WATCH, b"q\0a\0"),
                g(XS_WATCH, b"q\0b\0"),
                d(XS_SET_QUOTA, b"7\0node-size\x008\0"),
                g(XS_WRITE, b"q/a\0a value longer than eight bytes"),
            ],
        ),
        (
            "control",
            vec![
                d(XS_CONTROL, b"check\0"),
                d(XS_CONTROL, b"help\0"),
                d(XS_CONTROL, b"quota\0"),
                d(XS_CONTROL, b"quota\x007\0"),
                d(XS_CONTROL, b"quota\0set\0nodes\x00500\0"),
                d(XS_CONTROL, b"quota\0max\0-r\0"),
                d(XS_CONTROL, b"print\0hello\0"),
            ],
        ),
        (
            "directory-part-and-features",
            vec![
                g(XS_WRITE, b"data/a\0"),
                g(XS_WRITE, b"data/b\0"),
                g(XS_DIRECTORY_PART, b"data\x000\0"),
                g(XS_DIRECTORY_PART, b"/local/domain/8\x000\0"),
                g(XS_GET_FEATURE, b""),
                d(XS_SET_FEATURE, b"9\x000\0"),
                d(XS_GET_FEATURE, b"7\0"),
                d(XS_INTRODUCE, b"9\x00100\x003\0"),
            ],
        ),
        (
            "bad-transactions-and-framing",
            vec![
                Op::Request {
                    who: Who::Guest,
                    ty: XS_READ as u32,
                    tx: TxSel::Raw(12345),
                    payload: b"data\0".to_vec(),
                    len_override: None,
                },
                g(XS_TRANSACTION_START, b"\0"),
                gt(XS_TRANSACTION_START, b"\0"),
                Op::Request {
                    who: Who::Guest,
                    ty: XS_WRITE as u32,
                    tx: TxSel::LastPlusOne,
                    payload: b"data/z\0v".to_vec(),
                    len_override: None,
                },
                Op::Request {
                    who: Who::Guest,
                    ty: XS_READ as u32,
                    tx: TxSel::None,
                    payload: b"data\0".to_vec(),
                    len_override: Some(3),
                },
                g(XS_WRITE, &[b'x'; 4100]),
                g(XS_TRANSACTION_START, b"\0"),
                Op::Reconnect(Who::Guest),
                gt(XS_TRANSACTION_END, b"T\0"),
                Op::Request {
                    who: Who::Guest,
                    ty: 20,
                    tx: TxSel::None,
                    payload: b"\0".to_vec(),
                    len_override: None,
                },
                g(XS_WATCH_EVENT, b"a\0b\0"),
                g(XS_ERROR, b"EINVAL\0"),
            ],
        ),
        (
            "paths",
            vec![
                g(XS_READ, b"\0"),
                g(XS_READ, b"/\0"),
                g(XS_READ, b"data/\0"),
                g(XS_READ, b"a//b\0"),
                g(XS_READ, b"bad char\0"),
                g(
                    XS_WRITE,
                    &[&b"/local/domain/7/"[..], &[b'p'; 2100], b"\0v"].concat(),
                ),
                g(XS_MKDIR, b"@introduceDomain\0"),
                g(XS_GET_PERMS, b"@introduceDomain\0"),
                g(XS_GET_PERMS, b"@nosuch\0"),
            ],
        ),
    ]
}

/// (name, bytes) of every `wire_decode` seed: streams of real messages.
pub fn wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let msg = |t, req, tx, p: &[u8]| wire::encode(t, req, tx, p);
    vec![
        (
            "read-reply",
            [msg(XS_READ, 1, 0, b"data\0"), msg(XS_READ, 1, 0, b"value")].concat(),
        ),
        (
            "watch-event",
            [
                msg(XS_WATCH, 2, 0, b"/a\0tok\0"),
                msg(XS_WATCH_EVENT, 0, 0, b"/a\0tok\0"),
            ]
            .concat(),
        ),
        ("error", msg(XS_ERROR, 3, 5, b"ENOENT\0")),
        ("perms", msg(XS_SET_PERMS, 4, 0, b"/a\0n0\0r5\0b7\0w12\0")),
        ("directory", msg(XS_DIRECTORY, 5, 0, b"a\0bb\0ccc\0")),
        (
            "transaction",
            [
                msg(XS_TRANSACTION_START, 6, 0, b"\0"),
                msg(XS_TRANSACTION_END, 7, 9, b"T\0"),
            ]
            .concat(),
        ),
        (
            "truncated",
            msg(XS_WRITE, 8, 0, b"/path\0value")[..20].to_vec(),
        ),
        ("over-limit", {
            let mut m = msg(XS_READ, 9, 0, b"x\0");
            m[12..16].copy_from_slice(&4097u32.to_ne_bytes());
            m
        }),
        ("max-payload", msg(XS_WRITE, 10, 0, &[b'v'; 4096])),
    ]
}

/// Builds `ring_reader` inputs (see src/ring.rs for the operation bytes).
struct RingSeed(Vec<u8>);

impl RingSeed {
    fn new(idx: u32) -> RingSeed {
        RingSeed([idx.to_le_bytes(); 4].concat())
    }
    fn op(mut self, bytes: &[u8]) -> RingSeed {
        self.0.extend_from_slice(bytes);
        self
    }
    fn set(self, field: u8, v: u32) -> RingSeed {
        self.op(&[0, field]).op(&v.to_le_bytes())
    }
    /// A write of `len` bytes (< 65536) by the server (false) or the client (true).
    fn write(self, client: bool, len: u16) -> RingSeed {
        let l = len.to_le_bytes();
        self.op(&[7, client as u8, 2, l[0], l[1], b'v', 1, 0, 0, 0])
    }
    const SERVER_READ: &'static [u8] = &[5];
    const CLIENT_READ: &'static [u8] = &[6];
    const SERVER_FLUSH: &'static [u8] = &[9];
    const CLIENT_FLUSH: &'static [u8] = &[10];
    const CHECK_RECONNECT: &'static [u8] = &[11];
    const REQUEST_RECONNECT: &'static [u8] = &[12];
}

/// (name, bytes) of every `ring_reader` seed.
pub fn ring_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use RingSeed as R;
    let round_trip = |r: RingSeed| {
        r.write(true, 10)
            .op(R::SERVER_READ)
            .write(false, 3)
            .op(R::CLIENT_READ)
    };
    let mut pump = R::new(0).write(true, 3000);
    for _ in 0..4 {
        pump = pump.op(R::SERVER_READ).op(R::CLIENT_FLUSH);
    }
    pump = pump.write(false, 4096);
    for _ in 0..6 {
        pump = pump.op(R::CLIENT_READ).op(R::SERVER_FLUSH);
    }
    vec![
        ("round-trip", round_trip(R::new(0)).0),
        ("larger-than-ring", pump.0),
        (
            "index-wrap",
            round_trip(R::new(0xFFFF_FF80)).write(true, 300).op(&[14]).0,
        ),
        (
            "bad-req-index-then-reset",
            round_trip(
                R::new(0)
                    .set(1, 5000)
                    .op(R::SERVER_READ)
                    .op(R::CHECK_RECONNECT)
                    .op(R::REQUEST_RECONNECT)
                    .op(R::CHECK_RECONNECT)
                    .op(R::CLIENT_FLUSH),
            )
            .0,
        ),
        (
            "bad-rsp-index",
            R::new(0)
                .op(&[1, 1, 0x4c, 0x04])
                .op(R::CLIENT_READ)
                .write(true, 5)
                .0,
        ),
        ("consumer-ahead", R::new(0).set(0, 10).op(R::SERVER_READ).0),
        (
            "over-long-header",
            R::new(0)
                .op(&[4, 0, 2, 1, 1, 0])
                .op(R::SERVER_READ)
                .op(R::CLIENT_READ)
                .0,
        ),
        (
            "huge-header-to-client",
            R::new(7)
                .op(&[4, 1, 15, 2, 0xff, 0xff, 0xff, 0xff, 0])
                .op(R::CLIENT_READ)
                .0,
        ),
        (
            "scribble-mid-message",
            R::new(0)
                .write(true, 100)
                .op(&[13, 0, 5, 0, 4, b'x', b'y', b'z', b'w'])
                .op(R::SERVER_READ)
                .0,
        ),
        (
            "error-field",
            R::new(0)
                .set(6, 3)
                .op(R::SERVER_READ)
                .op(R::CLIENT_READ)
                .write(false, 4)
                .0,
        ),
        (
            "no-features",
            R::new(0)
                .set(4, 0)
                .set(6, 1)
                .op(R::CLIENT_READ)
                .op(R::REQUEST_RECONNECT)
                .write(true, 8)
                .0,
        ),
        (
            "split-header",
            R::new(0)
                .op(&[3, 0, 10, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0])
                .op(R::SERVER_READ)
                .op(&[3, 0, 9, 0, 0, 3, 0, 0, 0, b'a', b'b', 0])
                .op(R::SERVER_READ)
                .0,
        ),
        (
            "reconnect-mid-write",
            R::new(0)
                .write(true, 2000)
                .op(R::REQUEST_RECONNECT)
                .op(R::CLIENT_FLUSH)
                .op(R::CHECK_RECONNECT)
                .op(R::CLIENT_FLUSH)
                .op(R::SERVER_READ)
                .op(R::CLIENT_FLUSH)
                .op(&[14])
                .0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write_corpus(target: &str, name: &str, bytes: &[u8]) {
        if std::env::var_os("XSFUZZ_WRITE_CORPUS").is_none() {
            return;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }

    #[test]
    fn dispatch_seeds_pass_the_harness() {
        for (name, ops) in dispatch_seeds() {
            let bytes = crate::encode(&ops);
            assert_eq!(
                crate::decode(&bytes, usize::MAX),
                ops,
                "{name} does not round-trip"
            );
            assert!(
                ops.len() <= crate::dispatch::MAX_OPS,
                "{name} is longer than the harness takes"
            );
            crate::dispatch::Harness::run(&bytes);
            write_corpus("dispatch", name, &bytes);
        }
    }

    #[test]
    fn ring_seeds_pass_and_reach_every_outcome() {
        let mut total = crate::ring::Stats::default();
        for (name, bytes) in ring_seeds() {
            let st = crate::ring::Harness::run(&bytes);
            total.messages += st.messages;
            total.bad_index += st.bad_index;
            total.protocol += st.protocol;
            total.resets += st.resets;
            write_corpus("ring_reader", name, &bytes);
        }
        assert!(total.messages >= 8, "{total:?}");
        assert!(total.bad_index >= 3, "{total:?}");
        assert!(total.protocol >= 2, "{total:?}");
        assert!(total.resets >= 2, "{total:?}");
    }

    #[test]
    fn wire_seeds_are_written() {
        for (name, bytes) in wire_seeds() {
            write_corpus("wire_decode", name, &bytes);
        }
    }
}
