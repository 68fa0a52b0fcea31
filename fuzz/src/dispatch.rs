//! The `dispatch` harness: a store set up the way a toolstack leaves it for a guest, then a
//! decoded sequence of requests from the unprivileged guest and from domain 0, interleaved,
//! with the invariants checked after every request and at the end. Any violation panics.
//!
//! What domain 0 does is arbitrary too, except that it never touches the planted nodes
//! (requests naming them are skipped) and never makes the guest a target of domain 0: those
//! would legitimately hand the guest rights the checks below say it must not have.

use xenstore::store::{Config, ConnId, Store};
use xenstore::wire::{self, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

use crate::{Op, TxSel, Who, GUEST, HIDDEN_NAME, HIDDEN_VALUE, PUBLIC_VALUE, SECRET_VALUE};

/// Most operations taken from one input (keeps every run short).
pub const MAX_OPS: usize = 64;

/// Request types only domain 0 may send.
const PRIVILEGED_ONLY: &[MsgType] = &[
    MsgType::XS_CONTROL,
    MsgType::XS_INTRODUCE,
    MsgType::XS_RELEASE,
    MsgType::XS_IS_DOMAIN_INTRODUCED,
    MsgType::XS_RESUME,
    MsgType::XS_SET_TARGET,
    MsgType::XS_SET_FEATURE,
    MsgType::XS_GET_QUOTA,
    MsgType::XS_SET_QUOTA,
];

/// What the guest must never receive: the planted values and the name of the hidden child.
const PLANTED: [&[u8]; 3] = [SECRET_VALUE, HIDDEN_VALUE, HIDDEN_NAME.as_bytes()];

/// Substrings of domain 0 requests that are skipped: they name the planted nodes.
const DOM0_AVOIDS: &[&[u8]] = &[b"secret", b"hiddenchild", b"readable", b"shared", b"tool"];

struct Side {
    conn: ConnId,
    domid: u32,
    /// The last transaction id TRANSACTION_START gave this connection.
    last_tx: u32,
}

pub struct Harness {
    store: Store,
    guest: Side,
    dom0: Side,
    /// Which planted strings the guest's own requests mention (seeing those in its output
    /// proves nothing).
    mentioned: [bool; 3],
    req_id: u32,
    /// Skip domain 0 requests that touch the planted nodes (off only in this module's tests,
    /// which show the checks catch a guest that got access).
    filter_dom0: bool,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The NUL-terminated strings of a reply payload.
fn strings(payload: &[u8]) -> Vec<&[u8]> {
    wire::split_strings(payload)
}

/// Checks one message the store emitted and returns its header and payload.
fn well_formed(msg: &[u8]) -> (Header, &[u8]) {
    assert!(
        msg.len() >= HEADER_LEN,
        "output shorter than a header: {msg:?}"
    );
    let hdr = Header::parse(msg[..HEADER_LEN].try_into().unwrap())
        .expect("output header over the payload limit");
    let payload = &msg[HEADER_LEN..];
    assert_eq!(
        hdr.len as usize,
        payload.len(),
        "output header len does not match its payload"
    );
    assert!(payload.len() <= PAYLOAD_MAX);
    let ty = hdr
        .msg_type()
        .unwrap_or_else(|| panic!("output of unknown type {}", hdr.ty));
    match ty {
        MsgType::XS_ERROR => {
            let name = payload
                .strip_suffix(b"\0")
                .expect("error reply without NUL");
            assert!(
                wire::XSD_ERRORS.iter().any(|(_, n)| n.as_bytes() == name),
                "error reply with unknown name {:?}",
                String::from_utf8_lossy(name)
            );
        }
        MsgType::XS_WATCH_EVENT => {
            assert_eq!(hdr.req_id, 0);
            assert_eq!(hdr.tx_id, 0);
            assert!(payload.ends_with(b"\0"));
            assert!(
                strings(payload).len() >= 2,
                "watch event without path and token"
            );
        }
        _ => {}
    }
    (hdr, payload)
}

impl Harness {
    /// The store as a toolstack would leave it: two guests introduced, planted nodes.
    pub fn new() -> Harness {
        let mut store = Store::new(Config::default());
        let dom0 = Side {
            conn: store.connect(0),
            domid: 0,
            last_tx: 0,
        };
        let guest = Side {
            conn: ConnId(0),
            domid: GUEST,
            last_tx: 0,
        };
        let mut h = Harness {
            store,
            guest,
            dom0,
            mentioned: [false; 3],
            req_id: 0,
            filter_dom0: true,
        };
        let setup: &[(MsgType, &[u8])] = &[
            (MsgType::XS_INTRODUCE, b"7\0001234\0005\0"),
            (MsgType::XS_INTRODUCE, b"8\0004321\0006\0"),
            (MsgType::XS_WRITE, b"/secret\0SECRET-VALUE-91c4"),
            (MsgType::XS_WRITE, b"/secret/hiddenchild\0HIDDEN-VALUE-e7d2"),
            (MsgType::XS_WRITE, b"/readable\0public-value"),
            (MsgType::XS_SET_PERMS, b"/readable\0r0\0"),
            (MsgType::XS_MKDIR, b"/shared\0"),
            (MsgType::XS_SET_PERMS, b"/shared\0n0\0b7\0"),
            (MsgType::XS_MKDIR, b"/local/domain/7\0"),
            (MsgType::XS_SET_PERMS, b"/local/domain/7\0n7\0"),
            (MsgType::XS_WRITE, b"/local/domain/8/device\0vif"),
            (MsgType::XS_SET_PERMS, b"/local/domain/8\0n8\0r7\0"),
            (MsgType::XS_SET_PERMS, b"/local/domain/8/device\0n8\0r7\0"),
        ];
        for (ty, payload) in setup {
            let conn = h.dom0.conn;
            h.store
                .handle(conn, &Header::new(*ty, 1, 0, payload.len() as u32), payload)
                .unwrap();
            let reply = h.store.pop_output(conn).unwrap();
            assert_eq!(&reply[HEADER_LEN..], b"OK\0", "setup step {ty:?} failed");
            while h.store.pop_output(conn).is_some() {}
        }
        h.guest.conn = h.store.connect(GUEST);
        h.check_store();
        h
    }

    fn side(&mut self, who: Who) -> &mut Side {
        match who {
            Who::Guest => &mut self.guest,
            Who::Dom0 => &mut self.dom0,
        }
    }

    fn check_store(&self) {
        let problems = self.store.check();
        assert!(
            problems.is_empty(),
            "store invariants broken: {problems:#?}"
        );
    }

    /// Runs one input: decode, then every operation, then the final checks.
    pub fn run(data: &[u8]) {
        Harness::run_with(data, true)
    }

    fn run_with(data: &[u8], filter_dom0: bool) {
        let mut h = Harness::new();
        h.filter_dom0 = filter_dom0;
        let ops = crate::decode(data, MAX_OPS);
        for op in &ops {
            if let Op::Request {
                who: Who::Guest,
                payload,
                ..
            } = op
            {
                for (m, s) in h.mentioned.iter_mut().zip(PLANTED) {
                    *m |= contains(payload, s);
                }
            }
        }
        for op in ops {
            h.step(op);
        }
        h.finish();
    }

    fn reconnect(&mut self, who: Who) {
        let s = self.side(who);
        let (old, domid) = (s.conn, s.domid);
        self.store.disconnect(old);
        let new = self.store.connect(domid);
        let s = self.side(who);
        s.conn = new;
        s.last_tx = 0;
        assert!(
            self.store.pop_output(old).is_none(),
            "output for a closed connection"
        );
    }

    fn step(&mut self, op: Op) {
        let (who, ty, tx, payload, len_override) = match op {
            Op::Reconnect(who) => {
                self.reconnect(who);
                self.check_store();
                return;
            }
            Op::Request {
                who,
                ty,
                tx,
                payload,
                len_override,
            } => (who, ty, tx, payload, len_override),
        };
        if who == Who::Dom0 && self.filter_dom0 && !self.dom0_may_send(ty, &payload) {
            return;
        }
        let side = self.side(who);
        let (conn, last) = (side.conn, side.last_tx);
        let tx_id = match tx {
            TxSel::None => 0,
            TxSel::Last => last,
            TxSel::Raw(v) => v,
            TxSel::LastPlusOne => last.wrapping_add(1),
        };
        self.req_id = self.req_id.wrapping_add(1);
        let len = len_override.unwrap_or(payload.len() as u32);
        let hdr = Header {
            ty,
            req_id: self.req_id,
            tx_id,
            len,
        };

        let result = self.store.handle(conn, &hdr, &payload);
        let fatal = payload.len() > PAYLOAD_MAX || len as usize != payload.len();
        assert_eq!(
            result.is_err(),
            fatal,
            "Fatal iff the payload is over the limit or mismatched: {result:?}"
        );
        if fatal {
            for who in [Who::Guest, Who::Dom0] {
                let c = self.side(who).conn;
                assert!(
                    self.store.pop_output(c).is_none(),
                    "output queued for a refused request"
                );
            }
            // The transport closes the connection; the peer opens a new one.
            self.reconnect(who);
            self.check_store();
            return;
        }

        let other = match who {
            Who::Guest => Who::Dom0,
            Who::Dom0 => Who::Guest,
        };
        self.check_requester_output(who, &hdr, &payload);
        self.check_bystander_output(other);
        self.check_store();
    }

    /// Domain 0 requests the checks cannot allow: anything naming a planted node, and
    /// SET_TARGET making a domain the target of domain 0 (its owner).
    fn dom0_may_send(&self, ty: u32, payload: &[u8]) -> bool {
        if DOM0_AVOIDS.iter().any(|s| contains(payload, s)) {
            return false;
        }
        if ty == MsgType::XS_SET_TARGET as u32 {
            let s = dispatch_strings(payload);
            if s.len() >= 2 && !s[1].is_empty() && s[1].iter().all(|&c| c == b'0') {
                return false;
            }
        }
        true
    }

    /// The requester gets exactly one reply, answering its request, after any events the
    /// request caused; only a successful WATCH has one more message after it (its initial
    /// event).
    fn check_requester_output(&mut self, who: Who, req: &Header, payload: &[u8]) {
        let conn = self.side(who).conn;
        let mut msgs = Vec::new();
        while let Some(m) = self.store.pop_output(conn) {
            msgs.push(m);
        }
        let parsed: Vec<(Header, &[u8])> = msgs.iter().map(|m| well_formed(m)).collect();
        let replies: Vec<usize> = parsed
            .iter()
            .enumerate()
            .filter(|(_, (h, _))| h.ty != MsgType::XS_WATCH_EVENT as u32)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(replies.len(), 1, "expected one reply, got {parsed:?}");
        let at = replies[0];
        let (rh, rp) = parsed[at];
        assert_eq!(rh.req_id, req.req_id, "reply to another request");
        assert_eq!(rh.tx_id, req.tx_id, "reply with another tx_id");
        assert!(
            rh.ty == req.ty || rh.ty == MsgType::XS_ERROR as u32,
            "reply of type {} to a request of type {}",
            rh.ty,
            req.ty
        );
        let is_watch = req.ty == MsgType::XS_WATCH as u32;
        let tail = parsed.len() - 1 - at;
        if is_watch && rh.ty == req.ty {
            assert!(tail <= 1, "more than the initial event after a WATCH reply");
        } else {
            assert_eq!(tail, 0, "messages after the reply: {parsed:?}");
        }
        if rh.ty == MsgType::XS_TRANSACTION_START as u32 {
            let id = std::str::from_utf8(rp.strip_suffix(b"\0").expect("tx id without NUL"))
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .expect("TRANSACTION_START reply is not a number");
            assert_ne!(id, 0);
            self.side(who).last_tx = id;
        }
        if rh.ty == MsgType::XS_CONTROL as u32 && payload.starts_with(b"check\0") {
            assert_eq!(
                rp,
                b"OK\0",
                "CONTROL check found problems: {}",
                String::from_utf8_lossy(rp)
            );
        }
        if who == Who::Guest {
            if PRIVILEGED_ONLY.iter().any(|t| *t as u32 == req.ty) {
                assert_eq!(
                    rh.ty,
                    MsgType::XS_ERROR as u32,
                    "guest got a privileged request through"
                );
                assert_eq!(rp, b"EACCES\0");
            }
            // The initial event of the guest's own WATCH echoes the path it gave; any other
            // event is a change it may see.
            let own_watch_event = if is_watch && tail == 1 {
                Some(at + 1)
            } else {
                None
            };
            for (i, m) in msgs.iter().enumerate() {
                self.check_guest_sees(m, Some(i) == own_watch_event);
            }
        }
    }

    /// Whatever the other connection got (watch events only, as it sent nothing).
    fn check_bystander_output(&mut self, who: Who) {
        let conn = self.side(who).conn;
        while let Some(m) = self.store.pop_output(conn) {
            let (h, _) = well_formed(&m);
            assert_eq!(
                h.ty,
                MsgType::XS_WATCH_EVENT as u32,
                "reply on a connection that sent nothing"
            );
            if who == Who::Guest {
                self.check_guest_sees(&m, false);
            }
        }
    }

    /// Nothing the guest receives carries a planted secret, and no event tells it about a
    /// change under /secret (nothing there may change, and it may not read there anyway).
    fn check_guest_sees(&self, msg: &[u8], own_watch_echo: bool) {
        for (s, mentioned) in PLANTED.iter().zip(self.mentioned) {
            assert!(
                mentioned || !contains(msg, s),
                "guest received {:?}",
                String::from_utf8_lossy(msg)
            );
        }
        let (h, p) = well_formed(msg);
        if h.ty == MsgType::XS_WATCH_EVENT as u32 && !own_watch_echo {
            let path = strings(p)[0];
            assert!(
                !(path == b"/secret" || path.starts_with(b"/secret/")),
                "guest got an event for {}",
                String::from_utf8_lossy(path)
            );
        }
    }

    /// A fresh domain 0 connection reads a node: value (or None) and permissions.
    fn inspect(&mut self, path: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let conn = self.store.connect(0);
        let ask = |store: &mut Store, ty: MsgType| {
            let mut p = path.as_bytes().to_vec();
            p.push(0);
            store
                .handle(conn, &Header::new(ty, 9, 0, p.len() as u32), &p)
                .unwrap();
            let m = store.pop_output(conn).unwrap();
            assert!(store.pop_output(conn).is_none());
            let (h, body) = well_formed(&m);
            (h.ty == ty as u32).then(|| body.to_vec())
        };
        let value = ask(&mut self.store, MsgType::XS_READ);
        let perms = ask(&mut self.store, MsgType::XS_GET_PERMS);
        self.store.disconnect(conn);
        Some((value?, perms?))
    }

    /// The planted nodes are as domain 0 left them; closing both connections leaves the
    /// accounting consistent.
    fn finish(&mut self) {
        let expect: [(&str, &[u8], &[u8]); 4] = [
            ("/secret", SECRET_VALUE, b"n0\0"),
            ("/secret/hiddenchild", HIDDEN_VALUE, b"n0\0"),
            ("/readable", PUBLIC_VALUE, b"r0\0"),
            ("/tool/xenstored", b"", b"n0\0"),
        ];
        for (path, value, perms) in expect {
            let (v, p) = self
                .inspect(path)
                .unwrap_or_else(|| panic!("{path} is gone"));
            assert_eq!(v, value, "{path} changed value");
            assert_eq!(p, perms, "{path} changed permissions");
        }
        // The guest may write /shared (and remove it) but not change its permissions; a
        // RELEASE of the guest drops its grant.
        if let Some((_, p)) = self.inspect("/shared") {
            assert!(
                p == b"n0\0b7\0" || p == b"n0\0",
                "/shared permissions changed: {p:?}"
            );
        }
        for who in [Who::Guest, Who::Dom0] {
            let c = self.side(who).conn;
            self.store.disconnect(c);
        }
        self.check_store();
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// The strings of a request as the engine reads them (bytes after the last NUL ignored).
fn dispatch_strings(payload: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = payload.split(|&c| c == 0).collect();
    v.pop();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::wire::xsd_sockmsg_type::*;

    fn caught(ops: &[Op]) -> bool {
        let bytes = crate::encode(ops);
        std::panic::catch_unwind(|| Harness::run_with(&bytes, false)).is_err()
    }

    #[test]
    fn checks_catch_a_guest_with_too_many_rights() {
        let d = |ty: MsgType, p: &[u8]| Op::Request {
            who: Who::Dom0,
            ty: ty as u32,
            tx: TxSel::None,
            payload: p.to_vec(),
            len_override: None,
        };
        let g = |ty: MsgType, p: &[u8]| Op::Request {
            who: Who::Guest,
            ty: ty as u32,
            tx: TxSel::None,
            payload: p.to_vec(),
            len_override: None,
        };
        // Sanity: the same harness passes a harmless sequence.
        assert!(!caught(&[
            d(XS_READ, b"/secret\0"),
            g(XS_READ, b"/secret\0")
        ]));
        // The guest reads the secret once domain 0 let it.
        assert!(caught(&[
            d(XS_SET_PERMS, b"/secret\0n0\0r7\0"),
            g(XS_READ, b"/secret\0")
        ]));
        // The guest lists the hidden child.
        assert!(caught(&[
            d(XS_SET_TARGET, b"7\x000\0"),
            g(XS_DIRECTORY, b"/secret\0")
        ]));
        // A planted node changed.
        assert!(caught(&[d(XS_WRITE, b"/readable\0other")]));
        assert!(caught(&[d(XS_SET_PERMS, b"/shared\0n7\0")]));
        // An event about /secret reaches the guest.
        assert!(caught(&[
            d(XS_SET_PERMS, b"/\0n0\0r7\0"),
            g(XS_WATCH, b"/\0t\0"),
            d(XS_SET_PERMS, b"/secret\0n0\0"),
        ]));
    }
}
