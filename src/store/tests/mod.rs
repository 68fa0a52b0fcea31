//! Engine tests: every request goes through `Store::handle` as an encoded message and every
//! answer is read back with `pop_output`, exactly what transports see.

mod domains;
mod live_update;
mod perms;
mod txn;
mod watches;

use std::collections::HashMap;

use super::{Config, ConnId, Store};
use crate::wire::{encode, Header, MsgType, HEADER_LEN};

use MsgType as T;

/// A decoded message from an output queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Msg {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

pub(super) fn decode(m: &[u8]) -> Msg {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&m[..HEADER_LEN]);
    let h = Header::parse(&h).expect("engine produced a bad header");
    assert_eq!(
        h.len as usize,
        m.len() - HEADER_LEN,
        "header length matches payload"
    );
    Msg {
        ty: h.ty,
        req_id: h.req_id,
        tx_id: h.tx_id,
        payload: m[HEADER_LEN..].to_vec(),
    }
}

pub(super) struct H {
    pub s: Store,
    next_req: u32,
    /// Events seen while looking for replies, per connection, in arrival order.
    events: HashMap<ConnId, Vec<(String, String)>>,
}

/// Payload helper: strings joined with (and each followed by) NUL.
pub(super) fn z(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

impl H {
    pub fn new() -> H {
        H::with(Config::default())
    }

    pub fn with(cfg: Config) -> H {
        H {
            s: Store::new(cfg),
            next_req: 100,
            events: HashMap::new(),
        }
    }

    pub fn conn(&mut self, domid: u32) -> ConnId {
        self.s.connect(domid)
    }

    /// Sends one request and returns every message it queued on `c`, in order.
    pub fn raw(&mut self, c: ConnId, ty: MsgType, tx: u32, payload: &[u8]) -> Vec<Msg> {
        self.next_req += 1;
        let req = self.next_req;
        let msg = encode(ty, req, tx, payload);
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&msg[..HEADER_LEN]);
        let hdr = Header::parse(&h).unwrap();
        self.s
            .handle(c, &hdr, &msg[HEADER_LEN..])
            .expect("not fatal");
        let mut out = Vec::new();
        while let Some(m) = self.s.pop_output(c) {
            out.push(decode(&m));
        }
        out
    }

    /// Sends a request; returns the reply payload or the error name. Watch events queued
    /// before or after it are kept for `events`.
    pub fn call(
        &mut self,
        c: ConnId,
        ty: MsgType,
        tx: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        let msgs = self.raw(c, ty, tx, payload);
        let req = self.next_req;
        let mut reply = None;
        for m in msgs {
            if m.ty == T::XS_WATCH_EVENT as u32 {
                assert_eq!((m.req_id, m.tx_id), (0, 0), "events carry no ids");
                self.events
                    .entry(c)
                    .or_default()
                    .push(split_event(&m.payload));
            } else {
                assert!(reply.is_none(), "one reply per request");
                assert_eq!(m.req_id, req, "reply echoes req_id");
                assert_eq!(m.tx_id, tx, "reply echoes tx_id");
                reply = Some(m);
            }
        }
        let m = reply.expect("a reply");
        if m.ty == T::XS_ERROR as u32 {
            let name = m
                .payload
                .strip_suffix(b"\0")
                .expect("error names end in NUL");
            return Err(String::from_utf8(name.to_vec()).unwrap());
        }
        assert_eq!(m.ty, ty as u32, "reply type is the request type");
        Ok(m.payload)
    }

    /// Like `call`, for requests expected to succeed; the payload as a string.
    pub fn ok(&mut self, c: ConnId, ty: MsgType, tx: u32, payload: &[u8]) -> String {
        match self.call(c, ty, tx, payload) {
            Ok(p) => String::from_utf8(p).unwrap(),
            Err(e) => panic!("{ty:?} {:?} failed: {e}", String::from_utf8_lossy(payload)),
        }
    }

    pub fn err(&mut self, c: ConnId, ty: MsgType, tx: u32, payload: &[u8]) -> String {
        match self.call(c, ty, tx, payload) {
            Ok(p) => panic!(
                "{ty:?} {:?} succeeded: {:?}",
                String::from_utf8_lossy(payload),
                p
            ),
            Err(e) => e,
        }
    }

    pub fn write(&mut self, c: ConnId, path: &str, value: &str) {
        let mut p = z(&[path]);
        p.extend_from_slice(value.as_bytes());
        assert_eq!(self.ok(c, T::XS_WRITE, 0, &p), "OK\0");
    }

    pub fn read(&mut self, c: ConnId, path: &str) -> Result<String, String> {
        self.call(c, T::XS_READ, 0, &z(&[path]))
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub fn dir(&mut self, c: ConnId, path: &str) -> Vec<String> {
        let p = self.ok(c, T::XS_DIRECTORY, 0, &z(&[path]));
        p.split_terminator('\0').map(String::from).collect()
    }

    pub fn watch(&mut self, c: ConnId, path: &str, token: &str) {
        assert_eq!(self.ok(c, T::XS_WATCH, 0, &z(&[path, token])), "OK\0");
    }

    pub fn set_perms(&mut self, c: ConnId, path: &str, perms: &[&str]) -> Result<(), String> {
        let mut v = vec![path];
        v.extend_from_slice(perms);
        self.call(c, T::XS_SET_PERMS, 0, &z(&v)).map(|_| ())
    }

    pub fn perms(&mut self, c: ConnId, path: &str) -> String {
        self.ok(c, T::XS_GET_PERMS, 0, &z(&[path]))
    }

    /// All events `c` received so far (taking them), including ones still queued.
    pub fn events(&mut self, c: ConnId) -> Vec<(String, String)> {
        while let Some(m) = self.s.pop_output(c) {
            let m = decode(&m);
            assert_eq!(m.ty, T::XS_WATCH_EVENT as u32, "only events arrive unasked");
            self.events
                .entry(c)
                .or_default()
                .push(split_event(&m.payload));
        }
        self.events.remove(&c).unwrap_or_default()
    }

    pub fn check(&self) {
        let p = self.s.check();
        assert!(p.is_empty(), "invariants: {p:?}");
    }
}

fn split_event(p: &[u8]) -> (String, String) {
    let s = String::from_utf8(p.to_vec()).unwrap();
    let parts: Vec<&str> = s.split('\0').collect();
    assert_eq!(parts.len(), 3, "event payload is path NUL token NUL: {s:?}");
    assert_eq!(parts[2], "");
    (parts[0].to_string(), parts[1].to_string())
}

pub(super) fn ev(p: &str, t: &str) -> (String, String) {
    (p.to_string(), t.to_string())
}

#[test]
fn initial_tree_is_c_daemons() {
    let mut h = H::new();
    let c = h.conn(0);
    assert_eq!(h.dir(c, "/"), ["tool"]);
    assert_eq!(h.dir(c, "/tool"), ["xenstored"]);
    assert_eq!(h.perms(c, "/"), "n0\0");
    assert_eq!(h.perms(c, "/tool/xenstored"), "n0\0");
    assert_eq!(h.perms(c, "@releaseDomain"), "n0\0");
    assert_eq!(h.perms(c, "@introduceDomain"), "n0\0");
    assert_eq!(h.read(c, "/").unwrap(), "");
    assert!(h.s.domains.is_introduced(0));
    h.check();
}

#[test]
fn read_write_mkdir_rm_and_reply_formats() {
    let mut h = H::new();
    let c = h.conn(0);
    // WRITE creates parents with empty values; READ returns the raw value, no NUL added.
    let mut p = z(&["/a/b/c"]);
    p.extend_from_slice(b"bin\0ary");
    assert_eq!(h.ok(c, T::XS_WRITE, 0, &p), "OK\0");
    assert_eq!(
        h.call(c, T::XS_READ, 0, &z(&["/a/b/c"])).unwrap(),
        b"bin\0ary"
    );
    assert_eq!(h.read(c, "/a/b").unwrap(), "");
    // Empty values are fine.
    h.write(c, "/a/empty", "");
    assert_eq!(h.read(c, "/a/empty").unwrap(), "");
    assert_eq!(h.ok(c, T::XS_DIRECTORY, 0, &z(&["/a"])), "b\0empty\0");
    assert_eq!(h.ok(c, T::XS_DIRECTORY, 0, &z(&["/a/b/c"])), "");
    // MKDIR leaves existing values alone.
    h.write(c, "/m", "keep");
    assert_eq!(h.ok(c, T::XS_MKDIR, 0, &z(&["/m"])), "OK\0");
    assert_eq!(h.read(c, "/m").unwrap(), "keep");
    assert_eq!(h.ok(c, T::XS_MKDIR, 0, &z(&["/m/n/o"])), "OK\0");
    assert_eq!(h.read(c, "/m/n").unwrap(), "");
    // RM removes subtrees; removing a missing node is fine if its parent exists.
    assert_eq!(h.ok(c, T::XS_RM, 0, &z(&["/a/b"])), "OK\0");
    assert_eq!(h.read(c, "/a/b/c").unwrap_err(), "ENOENT");
    assert_eq!(h.ok(c, T::XS_RM, 0, &z(&["/a/b"])), "OK\0");
    assert_eq!(h.err(c, T::XS_RM, 0, &z(&["/a/b/c"])), "ENOENT");
    assert_eq!(h.err(c, T::XS_RM, 0, &z(&["/"])), "EINVAL");
    assert_eq!(h.read(c, "/nope").unwrap_err(), "ENOENT");
    // Listing order is creation order, as in the C daemon.
    for n in ["z", "a", "m"] {
        h.write(c, &format!("/order/{n}"), "");
    }
    assert_eq!(h.dir(c, "/order"), ["z", "a", "m"]);
    h.check();
}

#[test]
fn bad_requests() {
    let mut h = H::new();
    let c = h.conn(0);
    for bad in ["", "/a/", "/a//b", "/a b", "@releaseDomain"] {
        assert_eq!(h.err(c, T::XS_READ, 0, &z(&[bad])), "EINVAL", "{bad:?}");
        assert_eq!(h.err(c, T::XS_WRITE, 0, &z(&[bad])), "EINVAL", "{bad:?}");
    }
    // READ wants exactly one NUL-terminated string.
    assert_eq!(h.err(c, T::XS_READ, 0, b"/tool"), "EINVAL");
    assert_eq!(h.err(c, T::XS_READ, 0, b"/tool\0x\0"), "EINVAL");
    assert_eq!(h.err(c, T::XS_WRITE, 0, b"/nonul"), "EINVAL");
    let long = format!("/{}", "x".repeat(3100));
    assert_eq!(h.err(c, T::XS_WRITE, 0, &z(&[&long])), "EINVAL");
    // Unknown and reply-only types.
    for ty in [20u32, 27, 1000] {
        let hdr = Header {
            ty,
            req_id: 9,
            tx_id: 0,
            len: 0,
        };
        h.s.handle(c, &hdr, b"").unwrap();
        let m = decode(&h.s.pop_output(c).unwrap());
        assert_eq!(
            (m.ty, m.req_id, m.payload.as_slice()),
            (T::XS_ERROR as u32, 9, &b"ENOSYS\0"[..])
        );
    }
    assert_eq!(h.err(c, T::XS_WATCH_EVENT, 0, &z(&["/a", "t"])), "ENOSYS");
    assert_eq!(h.err(c, T::XS_ERROR, 0, b""), "ENOSYS");
    // A transaction id that names nothing.
    assert_eq!(h.err(c, T::XS_READ, 77, &z(&["/tool"])), "ENOENT");
}

#[test]
fn fatal_cases_close_the_connection() {
    let mut h = H::new();
    let c = h.conn(0);
    let hdr = Header::new(T::XS_READ, 1, 0, 5000);
    assert!(h.s.handle(c, &hdr, &vec![b'a'; 5000]).is_err());
    let hdr = Header::new(T::XS_READ, 1, 0, 3);
    assert!(h.s.handle(c, &hdr, b"/a\0\0").is_err(), "length mismatch");
    h.s.disconnect(c);
    assert!(h
        .s
        .handle(c, &Header::new(T::XS_READ, 1, 0, 2), b"/\0")
        .is_err());
    assert!(h.s.pop_output(c).is_none());
}

#[test]
fn relative_paths_resolve_under_the_domain_home() {
    let mut h = H::new();
    let d0 = h.conn(0);
    h.write(d0, "/local/domain/5/x", "");
    h.set_perms(d0, "/local/domain/5", &["n5"]).unwrap();
    h.set_perms(d0, "/local/domain/5/x", &["n5"]).unwrap();
    let d5 = h.conn(5);
    h.write(d5, "x/y", "hello");
    assert_eq!(h.read(d0, "/local/domain/5/x/y").unwrap(), "hello");
    assert_eq!(h.read(d5, "x/y").unwrap(), "hello");
    assert_eq!(h.read(d5, "/local/domain/5/x/y").unwrap(), "hello");
    // Domain 0's relative paths live under /local/domain/0.
    h.write(d0, "rel", "zero");
    assert_eq!(h.read(d0, "/local/domain/0/rel").unwrap(), "zero");
    assert_eq!(
        h.ok(d5, T::XS_GET_DOMAIN_PATH, 0, &z(&["7"])),
        "/local/domain/7\0"
    );
    assert_eq!(h.err(d5, T::XS_GET_DOMAIN_PATH, 0, &z(&["x"])), "EINVAL");
    h.check();
}

#[test]
fn directory_part_pages_with_generation() {
    let mut h = H::new();
    let c = h.conn(0);
    let names: Vec<String> = (0..400).map(|i| format!("child-number-{i:04}")).collect();
    for n in &names {
        h.write(c, &format!("/big/{n}"), "");
    }
    // DIRECTORY itself would exceed the payload limit.
    assert_eq!(h.err(c, T::XS_DIRECTORY, 0, &z(&["/big"])), "E2BIG");
    let mut got = Vec::new();
    let mut off = 0;
    let mut gen = None;
    loop {
        let p = h
            .call(c, T::XS_DIRECTORY_PART, 0, &z(&["/big", &off.to_string()]))
            .unwrap();
        assert!(p.len() <= 4096);
        let nul = p.iter().position(|&b| b == 0).unwrap();
        let g = String::from_utf8(p[..nul].to_vec()).unwrap();
        assert!(
            gen.get_or_insert(g.clone()) == &g,
            "generation stable while unchanged"
        );
        let body = &p[nul + 1..];
        let done = body.ends_with(b"\0\0") || body == b"\0";
        let body = if done { &body[..body.len() - 1] } else { body };
        off += body.len();
        got.extend(
            body.split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8(s.to_vec()).unwrap()),
        );
        if done {
            break;
        }
    }
    assert_eq!(got, names);
    // Past the end: just the generation and an empty list.
    let g = gen.unwrap();
    assert_eq!(
        h.ok(c, T::XS_DIRECTORY_PART, 0, &z(&["/big", "999999"])),
        format!("{g}\0\0")
    );
    // A change to the children changes the generation; a change below them does not.
    h.write(c, &format!("/big/{}", names[0]), "value");
    assert_eq!(
        h.ok(c, T::XS_DIRECTORY_PART, 0, &z(&["/big", "999999"])),
        format!("{g}\0\0")
    );
    h.write(c, "/big/new", "");
    assert_ne!(
        h.ok(c, T::XS_DIRECTORY_PART, 0, &z(&["/big", "999999"])),
        format!("{g}\0\0")
    );
    assert_eq!(h.err(c, T::XS_DIRECTORY_PART, 0, &z(&["/big"])), "EINVAL");
}

#[test]
fn control_commands() {
    let mut h = H::new();
    let c = h.conn(0);
    let help = h.ok(c, T::XS_CONTROL, 0, &z(&["help"]));
    for cmd in ["check", "print", "quota", "help"] {
        assert!(help.lines().any(|l| l.starts_with(cmd)), "{help}");
    }
    assert_eq!(h.ok(c, T::XS_CONTROL, 0, &z(&["check"])), "OK\0");
    assert_eq!(h.ok(c, T::XS_CONTROL, 0, &z(&["print", "hello"])), "OK\0");
    let q = h.ok(c, T::XS_CONTROL, 0, &z(&["quota"]));
    assert!(q.starts_with("Quota settings:\n"));
    assert!(
        q.contains("nodes            :     1000 Nodes per domain\n"),
        "{q}"
    );
    assert_eq!(
        h.ok(c, T::XS_CONTROL, 0, &z(&["quota", "set", "nodes", "7"])),
        "OK\0"
    );
    assert_eq!(h.ok(c, T::XS_GET_QUOTA, 0, &z(&["nodes"])), "7\0");
    assert_eq!(
        h.err(c, T::XS_CONTROL, 0, &z(&["quota", "set", "nodes", "0"])),
        "EINVAL"
    );
    let d0 = h.ok(c, T::XS_CONTROL, 0, &z(&["quota", "0"]));
    assert!(
        d0.starts_with("Domain 0:\nnodes            :        5 (max "),
        "{d0}"
    );
    assert!(h
        .ok(c, T::XS_CONTROL, 0, &z(&["quota", "max"]))
        .starts_with("Max. seen"));
    assert_eq!(h.err(c, T::XS_CONTROL, 0, &z(&["frobnicate"])), "EINVAL");
    assert_eq!(h.err(c, T::XS_CONTROL, 0, b""), "EINVAL");
    let u = h.conn(3);
    assert_eq!(h.err(u, T::XS_CONTROL, 0, &z(&["help"])), "EACCES");
}

#[test]
fn control_log_and_logfile_drive_the_trace() {
    let file = std::env::temp_dir().join(format!("xs-ctl-trace-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut h = H::new();
    let c = h.conn(0);
    // Without a file, `log on` does nothing.
    assert_eq!(h.ok(c, T::XS_CONTROL, 0, &z(&["log", "on"])), "OK\0");
    let name = file.to_str().unwrap();
    assert_eq!(h.ok(c, T::XS_CONTROL, 0, &z(&["logfile", name])), "OK\0");
    h.write(c, "/traced", "v");
    assert_eq!(h.ok(c, T::XS_CONTROL, 0, &z(&["log", "off"])), "OK\0");
    h.write(c, "/untraced", "v");
    let g = h.conn(3);
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(text.contains(" WRITE req "), "{text}");
    assert!(text.contains("(/traced v)\n"), "{text}");
    assert!(text.contains("(OK )\n"), "the reply is traced: {text}");
    assert!(
        !text.contains("untraced") && !text.contains("CREATE"),
        "{text}"
    );
    let _ = g;
}

#[test]
fn check_finds_and_repairs_accounting_damage() {
    let mut h = H::new();
    let c = h.conn(0);
    h.write(c, "/x", "");
    h.s.domains.add_nodes(0, 3);
    assert!(!h.s.check().is_empty());
    let r = h.ok(c, T::XS_CONTROL, 0, &z(&["check"]));
    assert!(r.contains("domain 0: accounted"), "{r}");
    h.check();
}

#[test]
fn dirty_lists_connections_with_new_output() {
    let mut h = H::new();
    let a = h.conn(0);
    let b = h.conn(0);
    h.s.take_dirty();
    h.watch(b, "/w", "t");
    assert_eq!(h.s.take_dirty(), vec![b]);
    let msg = encode(T::XS_WRITE, 1, 0, b"/w/x\0v");
    let mut hd = [0u8; HEADER_LEN];
    hd.copy_from_slice(&msg[..HEADER_LEN]);
    h.s.handle(a, &Header::parse(&hd).unwrap(), &msg[HEADER_LEN..])
        .unwrap();
    let mut d = h.s.take_dirty();
    d.sort();
    assert_eq!(d, vec![a, b]);
    assert!(h.s.take_dirty().is_empty());
    // The appending form: same list, dropped connections left out, nothing listed twice.
    h.s.handle(a, &Header::parse(&hd).unwrap(), &msg[HEADER_LEN..])
        .unwrap();
    h.s.disconnect(b);
    let mut out = vec![ConnId(999)];
    h.s.take_dirty_into(&mut out);
    assert_eq!(out, vec![ConnId(999), a]);
    h.s.take_dirty_into(&mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn store_can_live_behind_a_mutex() {
    fn send<T: Send>() {}
    send::<Store>();
}
