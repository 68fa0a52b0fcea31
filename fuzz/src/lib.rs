//! Shared pieces of the fuzz targets: the small structured decoder that turns fuzz bytes into
//! request sequences for the `dispatch` target, and its encoder (used to build the seed corpus
//! from real request sequences).
//!
//! Input format for `dispatch`, one operation after another until the bytes run out:
//!
//! ```text
//! op byte:  bit 0      who sends it: 0 = the unprivileged guest, 1 = domain 0
//!           bits 1-2   tx_id: 0 = none, 1 = the sender's last transaction, 2 = a raw u32
//!                      follows (little endian), 3 = the sender's last transaction + 1
//!           bit 3      payload: 0 = structured (built from a vocabulary), 1 = raw bytes
//!           bits 4-7   0xF: drop and re-open the sender's connection (nothing else follows)
//!                      0xE: after the payload, a u16 follows that replaces the header's len
//!                      anything else: a plain request
//! type byte: message type number, modulo 32 (so unknown numbers come up too)
//! payload:  raw: u16 length (little endian, capped at 4200, so over-long payloads come up)
//!           then that many bytes; structured: see `structured_payload`
//! ```
//!
//! Missing bytes read as zero, so every input decodes to something.

pub mod dispatch;
pub mod ring;
pub mod seeds;

/// The unprivileged domain the guest connection acts as.
pub const GUEST: u32 = 7;
/// A second domain, introduced, whose home the guest may read.
pub const OTHER: u32 = 8;

/// Values planted by domain 0 that the guest must never see or change.
pub const SECRET_VALUE: &[u8] = b"SECRET-VALUE-91c4";
pub const HIDDEN_NAME: &str = "hiddenchild";
pub const HIDDEN_VALUE: &[u8] = b"HIDDEN-VALUE-e7d2";
pub const PUBLIC_VALUE: &[u8] = b"public-value";

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Guest,
    Dom0,
}

/// Which tx_id a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxSel {
    None,
    Last,
    Raw(u32),
    LastPlusOne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Request {
        who: Who,
        ty: u32,
        tx: TxSel,
        payload: Vec<u8>,
        len_override: Option<u32>,
    },
    Reconnect(Who),
}

/// A cursor over the fuzz input; reads past the end give zeros.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (self.pos + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }
}

const RAW_CAP: usize = 4200;

/// Paths the structured payloads pick from: the planted nodes, the guest's home, relative
/// paths, special nodes, and a few malformed ones.
pub const PATHS: &[&str] = &[
    "/",
    "/secret",
    "/secret/hiddenchild",
    "/readable",
    "/shared",
    "/shared/a",
    "/local/domain/7",
    "/local/domain/7/data",
    "data",
    "data/x/y",
    "/local/domain/8",
    "/local/domain/8/device",
    "/tool/xenstored",
    "@introduceDomain",
    "@releaseDomain",
    "/local",
    "/local/domain",
    "/local/domain/0",
    "",
    "/a//b",
    "/trailing/",
    "@bogus",
    "bad path!",
    "/local/domain/9/x",
];
const NAMES: &[&str] = &["a", "b", "data", "x", "secret", "device", "0", "-_@"];
const TOKENS: &[&str] = &["tok", "t2", "", "secret-token", "1"];
const DOMIDS: &[&str] = &[
    "7", "8", "0", "9", "65535", "32752", "x", "", "007", "100000",
];
const QUOTAS: &[&str] = &[
    "nodes",
    "watches",
    "transactions",
    "outstanding",
    "transaction-nodes",
    "node-size",
    "path-max",
    "permissions",
    "bogus",
];
const CONTROLS: &[&[u8]] = &[
    b"check\0",
    b"help\0",
    b"quota\0",
    b"quota\0set\0nodes\0",
    b"quota\07\0",
    b"quota\0max\0",
    b"quota\0max\0-r\0",
    b"print\0hello\0",
    b"bogus\0",
    b"",
];

fn pick<'v, T: ?Sized>(c: &mut Cursor<'_>, v: &'v [&'v T]) -> &'v T {
    v[c.u8() as usize % v.len()]
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

fn path(c: &mut Cursor<'_>) -> Vec<u8> {
    let b = c.u8();
    let mut p = PATHS[(b & 0x7f) as usize % PATHS.len()].as_bytes().to_vec();
    if b & 0x80 != 0 {
        p.push(b'/');
        p.extend_from_slice(pick(c, NAMES).as_bytes());
    }
    p
}

fn perms(c: &mut Cursor<'_>, out: &mut Vec<u8>) {
    let n = 1 + c.u8() % 4;
    for _ in 0..n {
        let b = c.u8();
        let mut e = vec![b"nrwbx"[(b % 5) as usize]];
        e.extend_from_slice(DOMIDS[(b / 5) as usize % DOMIDS.len()].as_bytes());
        push_str(out, &e);
    }
}

/// The payload of a well-formed-looking request of type `ty`, from the vocabulary.
fn structured_payload(c: &mut Cursor<'_>, ty: u32) -> Vec<u8> {
    let mut out = Vec::new();
    match ty {
        // READ, MKDIR, RM, DIRECTORY, GET_PERMS
        1 | 2 | 3 | 12 | 13 => push_str(&mut out, &path(c)),
        4 => {
            push_str(&mut out, &path(c));
            push_str(&mut out, pick(c, TOKENS).as_bytes());
            let d = c.u8();
            if d < 64 {
                push_str(&mut out, (d % 4).to_string().as_bytes());
            }
        }
        5 => {
            push_str(&mut out, &path(c));
            push_str(&mut out, pick(c, TOKENS).as_bytes());
        }
        6 => push_str(&mut out, b""),
        7 => push_str(&mut out, [&b"T"[..], b"F", b"X"][c.u8() as usize % 3]),
        8 => {
            push_str(&mut out, pick(c, DOMIDS).as_bytes());
            push_str(&mut out, c.u8().to_string().as_bytes());
            push_str(&mut out, (c.u8() as i32 - 8).to_string().as_bytes());
        }
        // RELEASE, GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED, RESUME
        9 | 10 | 17 | 18 => push_str(&mut out, pick(c, DOMIDS).as_bytes()),
        11 => {
            let p = path(c);
            let n = c.u8() as usize;
            let v = c.bytes(n).to_vec();
            out.extend_from_slice(&p);
            out.push(0);
            out.extend_from_slice(&v);
        }
        14 => {
            push_str(&mut out, &path(c));
            perms(c, &mut out);
        }
        19 => {
            push_str(&mut out, pick(c, DOMIDS).as_bytes());
            push_str(&mut out, pick(c, DOMIDS).as_bytes());
        }
        22 => {
            push_str(&mut out, &path(c));
            push_str(&mut out, c.u8().to_string().as_bytes());
        }
        23 => {
            if c.u8() & 1 == 1 {
                push_str(&mut out, pick(c, DOMIDS).as_bytes());
            }
        }
        24 => {
            push_str(&mut out, pick(c, DOMIDS).as_bytes());
            push_str(&mut out, (c.u8() % 16).to_string().as_bytes());
        }
        25 | 26 => {
            let b = c.u8();
            if b & 1 == 1 {
                push_str(&mut out, pick(c, DOMIDS).as_bytes());
            }
            push_str(&mut out, pick(c, QUOTAS).as_bytes());
            if ty == 26 {
                push_str(&mut out, (b >> 1).to_string().as_bytes());
            }
        }
        0 => out.extend_from_slice(pick(c, CONTROLS)),
        _ => {}
    }
    out
}

/// Decodes fuzz bytes into operations (at most `max_ops`).
pub fn decode(data: &[u8], max_ops: usize) -> Vec<Op> {
    let mut c = Cursor { data, pos: 0 };
    let mut ops = Vec::new();
    while !c.done() && ops.len() < max_ops {
        let b = c.u8();
        let who = if b & 1 == 0 { Who::Guest } else { Who::Dom0 };
        if b >> 4 == 0xF {
            ops.push(Op::Reconnect(who));
            continue;
        }
        let tx = match (b >> 1) & 3 {
            0 => TxSel::None,
            1 => TxSel::Last,
            2 => TxSel::Raw(c.u32()),
            _ => TxSel::LastPlusOne,
        };
        let ty = (c.u8() % 32) as u32;
        let payload = if b & 8 != 0 {
            let n = (c.u16() as usize).min(RAW_CAP);
            c.bytes(n).to_vec()
        } else {
            structured_payload(&mut c, ty)
        };
        let len_override = if b >> 4 == 0xE {
            Some(c.u16() as u32)
        } else {
            None
        };
        ops.push(Op::Request {
            who,
            ty,
            tx,
            payload,
            len_override,
        });
    }
    ops
}

/// Encodes operations so that `decode` gives them back (raw payloads, no length override
/// unless asked): the seed corpus is written with this.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Reconnect(who) => out.push(0xF0 | (*who == Who::Dom0) as u8),
            Op::Request {
                who,
                ty,
                tx,
                payload,
                len_override,
            } => {
                let mut b = (*who == Who::Dom0) as u8 | 8;
                b |= match tx {
                    TxSel::None => 0,
                    TxSel::Last => 2,
                    TxSel::Raw(_) => 4,
                    TxSel::LastPlusOne => 6,
                };
                if len_override.is_some() {
                    b |= 0xE0;
                }
                out.push(b);
                if let TxSel::Raw(v) = tx {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.push(*ty as u8);
                let n = payload.len().min(RAW_CAP);
                out.extend_from_slice(&(n as u16).to_le_bytes());
                out.extend_from_slice(&payload[..n]);
                if let Some(l) = len_override {
                    out.extend_from_slice(&(*l as u16).to_le_bytes());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let ops = vec![
            Op::Request {
                who: Who::Guest,
                ty: 6,
                tx: TxSel::None,
                payload: b"\0".to_vec(),
                len_override: None,
            },
            Op::Request {
                who: Who::Dom0,
                ty: 11,
                tx: TxSel::Raw(77),
                payload: b"/a\0v".to_vec(),
                len_override: None,
            },
            Op::Reconnect(Who::Guest),
            Op::Request {
                who: Who::Guest,
                ty: 2,
                tx: TxSel::Last,
                payload: b"x\0".to_vec(),
                len_override: Some(9),
            },
        ];
        assert_eq!(decode(&encode(&ops), 100), ops);
    }

    #[test]
    fn every_input_decodes_and_is_bounded() {
        assert!(decode(&[], 10).is_empty());
        let ops = decode(&[0x00, 11, 0x85, 0xff, 0xff], 10);
        assert_eq!(ops.len(), 1);
        let ops = decode(&[0x08, 2, 0xff, 0xff, 1, 2, 3], 10);
        assert!(matches!(&ops[0], Op::Request { payload, .. } if payload == &[1, 2, 3]));
        assert_eq!(decode(&[0xF1; 50], 7).len(), 7);
    }
}
