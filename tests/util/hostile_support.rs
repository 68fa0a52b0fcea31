//! Shared by the hostile-guest tests (tests/hostile_*.rs): an embedded store with guests
//! introduced as a toolstack does, raw requests through a guest's handle, a misbehaving guest
//! kernel writing its ring page, a plain "one connection per ring" server for a page nobody
//! else uses, and the checks every attack ends with.
//!
//! Every case prints `PASS <name>: <details> [<ms> ms]` (or `FAIL ...`), one line, so scripts
//! can count them (`cargo test --test hostile_... -- --nocapture`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xenstore::client::{Errno, Handle, Permission};
use xenstore::client::{PERM_NONE, PERM_READ};
use xenstore::embedded::Embedded;
use xenstore::ring::{Field, Message, RingPage, ServerRing, RING_SIZE};
use xenstore::store::{Config, ConnId, Store};
use xenstore::wire::{Header, MsgType, HEADER_LEN};

pub const EINVAL: Errno = Errno(libc::EINVAL);
pub const EACCES: Errno = Errno(libc::EACCES);
pub const ENOENT: Errno = Errno(libc::ENOENT);
pub const ENOSPC: Errno = Errno(libc::ENOSPC);
pub const E2BIG: Errno = Errno(libc::E2BIG);
pub const EPERM: Errno = Errno(libc::EPERM);
pub const EEXIST: Errno = Errno(libc::EEXIST);
pub const EBADF: Errno = Errno(libc::EBADF);
pub const EIO: Errno = Errno(libc::EIO);

/// Deadline of one case: a case that does not finish is a failure, never a hang.
pub const CASE_LIMIT: Duration = Duration::from_secs(25);

/// Runs `body` as case `name` in its own thread; prints PASS with the details it returns, or
/// FAIL (and fails the test) if it panics or overruns [`CASE_LIMIT`].
pub fn case(name: &str, body: impl FnOnce() -> String + Send + 'static) {
    super::case_runner::run(name, CASE_LIMIT, body);
}

/// An embedded store with a domain-0 handle and `guests` introduced, each with its home
/// `/local/domain/<id>` owned by it (as a toolstack sets it up). `/local/domain` stays
/// domain 0's with no access for others, as on a real host.
pub struct Host {
    pub e: Arc<Embedded>,
    pub dom0: Handle,
}

impl Host {
    pub fn new(guests: &[u32]) -> Host {
        Host::with_config(Config::default(), guests)
    }

    pub fn with_config(cfg: Config, guests: &[u32]) -> Host {
        let e = Embedded::new(cfg);
        let dom0 = e.open(0).unwrap();
        for &d in guests {
            dom0.introduce_domain(d, 0x1000 + d as u64, 10 + d).unwrap();
            let home = format!("/local/domain/{d}");
            dom0.mkdir(0, home.as_bytes()).unwrap();
            dom0.set_permissions(
                0,
                home.as_bytes(),
                &[Permission {
                    id: d,
                    perms: PERM_NONE,
                }],
            )
            .unwrap();
        }
        Host { e, dom0 }
    }

    /// A new handle acting as `domid`, through its ring.
    pub fn guest(&self, domid: u32) -> Handle {
        self.e.open_domain(domid, 0).unwrap()
    }

    /// A node of `owner` under its home, readable by nobody else (the thing to steal).
    pub fn secret(&self, owner: u32, name: &str, value: &[u8]) -> String {
        let p = format!("/local/domain/{owner}/{name}");
        self.dom0.write(0, p.as_bytes(), value).unwrap();
        self.dom0
            .set_permissions(
                0,
                p.as_bytes(),
                &[Permission {
                    id: owner,
                    perms: PERM_NONE,
                }],
            )
            .unwrap();
        p
    }

    /// The store's invariants hold: CONTROL check says OK (it runs the checker and would
    /// report every problem), and the checker run directly agrees.
    pub fn assert_intact(&self, after: &str) {
        let direct = self.e.with_store(|s| s.check());
        assert!(direct.is_empty(), "after {after}: checker found {direct:?}");
        let r = self.dom0.control(b"check", b"").unwrap();
        assert_eq!(
            r,
            b"OK\0",
            "after {after}: CONTROL check said {}",
            String::from_utf8_lossy(&r)
        );
    }

    /// Domain 0 and every handle in `others` still get served: a write and a read-back each.
    /// Returns the number of round trips made.
    pub fn assert_served(&self, others: &[&Handle], tag: &str) -> usize {
        let tag = &node_name(tag);
        let p = format!("/hostile/served/{tag}");
        self.dom0.write(0, p.as_bytes(), tag.as_bytes()).unwrap();
        assert_eq!(
            self.dom0.read(0, p.as_bytes()).unwrap(),
            tag.as_bytes(),
            "dom0 after {tag}"
        );
        for (i, h) in others.iter().enumerate() {
            let q = format!("served-{i}");
            h.write(0, q.as_bytes(), tag.as_bytes())
                .unwrap_or_else(|e| panic!("guest {i} after {tag}: {e:?}"));
            assert_eq!(h.read(0, q.as_bytes()).unwrap(), tag.as_bytes());
        }
        2 + 2 * others.len()
    }

    /// (nodes, watches, transactions) the store accounts to `domid` (CONTROL quota <domid>).
    pub fn usage(&self, domid: u32) -> (u64, u64, u64) {
        let r = self
            .dom0
            .control(b"quota", format!("{domid}\0").as_bytes())
            .unwrap();
        let text = String::from_utf8_lossy(&r).into_owned();
        assert!(text.starts_with(&format!("Domain {domid}:")), "{text}");
        let field = |name: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            let v = line
                .split(':')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            v.parse().unwrap()
        };
        (field("nodes "), field("watches "), field("transactions "))
    }
}

/// `s` made a valid node name (anything but letters and digits becomes '-').
pub fn node_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Grants `reader` read access to `p` (domain 0 owning it).
pub fn grant_read(dom0: &Handle, p: &str, reader: u32) {
    dom0.set_permissions(
        0,
        p.as_bytes(),
        &[
            Permission {
                id: 0,
                perms: PERM_NONE,
            },
            Permission {
                id: reader,
                perms: PERM_READ,
            },
        ],
    )
    .unwrap();
}

/// One request with exactly `payload` (no NUL added, anything allowed inside).
pub fn raw(h: &Handle, ty: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
    h.talk(ty, tx, &[payload])
}

/// `s` with a NUL appended.
pub fn z(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

/// Every event waiting on `h` right now (path, token), without blocking long: events of an
/// embedded store are delivered before the request that caused them returns, and the
/// handle's watch thread moves them within moments.
pub fn drain_events(h: &Handle, settle: Duration) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + settle;
    loop {
        match h.check_watch().unwrap() {
            Some(ev) => {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                out.push((s(ev.path()), s(ev.token())));
            }
            None if Instant::now() >= deadline => return out,
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

// ----- a misbehaving guest kernel: direct writes to a ring page -----

/// Writes `bytes` into `ring` of `page` at stream position `idx` (masked, as every writer
/// must), without touching any index.
pub fn poke_data(page: &RingPage, req: bool, idx: u32, bytes: &[u8]) {
    let base = page.as_ptr().cast::<u8>();
    let ring_off = if req { 0 } else { RING_SIZE as usize };
    for (i, &b) in bytes.iter().enumerate() {
        let off = ring_off + (idx.wrapping_add(i as u32) & (RING_SIZE - 1)) as usize;
        // SAFETY: `off` < 2 * RING_SIZE, inside the req/rsp arrays at the start of the live
        // page (the page outlives this call: `page` borrows it); every access to page memory
        // in this process is atomic, so a concurrent reader cannot race with this store.
        unsafe { AtomicU8::from_ptr(base.add(off)) }.store(b, Ordering::Relaxed);
    }
}

/// Appends what fits of `bytes` to the request ring as a guest kernel would (data, then
/// `req_prod`); returns how many bytes went in.
pub fn guest_send(page: &RingPage, bytes: &[u8]) -> usize {
    let prod = page.load(Field::ReqProd, Ordering::Acquire);
    let cons = page.load(Field::ReqCons, Ordering::Acquire);
    let free = RING_SIZE.saturating_sub(prod.wrapping_sub(cons)) as usize;
    let n = bytes.len().min(free);
    poke_data(page, true, prod, &bytes[..n]);
    page.store(
        Field::ReqProd,
        prod.wrapping_add(n as u32),
        Ordering::Release,
    );
    n
}

/// A whole message as it travels (any type number, any header length).
pub fn message(ty: u32, req_id: u32, tx_id: u32, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header {
        ty,
        req_id,
        tx_id,
        len,
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(payload);
    v
}

/// A well-formed message with `payload`.
pub fn msg(ty: MsgType, req_id: u32, payload: &[u8]) -> Vec<u8> {
    message(ty as u32, req_id, 0, payload.len() as u32, payload)
}

/// Takes every whole message the server produced into `rsp`, as a reading guest kernel does.
pub fn guest_take(page: &RingPage, partial: &mut Vec<u8>) -> Vec<Message> {
    let prod = page.load(Field::RspProd, Ordering::Acquire);
    let cons = page.load(Field::RspCons, Ordering::Relaxed);
    let n = prod.wrapping_sub(cons).min(RING_SIZE);
    let base = page.as_ptr().cast::<u8>();
    for i in 0..n {
        let off = RING_SIZE as usize + (cons.wrapping_add(i) & (RING_SIZE - 1)) as usize;
        // SAFETY: as in `poke_data`: inside the rsp array of the live page, read atomically.
        partial.push(unsafe { AtomicU8::from_ptr(base.add(off)) }.load(Ordering::Relaxed));
    }
    page.store(Field::RspCons, cons.wrapping_add(n), Ordering::Release);
    let mut out = Vec::new();
    while partial.len() >= HEADER_LEN {
        let h = Header::parse(partial[..HEADER_LEN].try_into().unwrap()).unwrap();
        let end = HEADER_LEN + h.len as usize;
        if partial.len() < end {
            break;
        }
        let payload = partial[HEADER_LEN..end].to_vec();
        partial.drain(..end);
        out.push(Message { header: h, payload });
    }
    out
}

// ----- a plain ring server: one store connection per page, as xenstored serves a domain -----

/// The store's end of one domain's page, served the way the C daemon serves a domain: one
/// connection per ring; a request is taken only while the previous output has gone into the
/// ring (so a guest that does not read its replies stops being served, and its events wait in
/// the store's bounded queue); a reset asked for by the guest drops the connection's state; a
/// ring that fails is no longer served.
pub struct RingConn {
    pub page: Arc<RingPage>,
    pub server: ServerRing,
    pub conn: ConnId,
    pub domid: u32,
    pub failed: Option<xenstore::ring::RingError>,
    pub served: u64,
    pub resets: u64,
}

impl RingConn {
    pub fn new(store: &mut Store, domid: u32) -> RingConn {
        let page = Arc::new(RingPage::new());
        let server = ServerRing::new(Arc::clone(&page), || ());
        RingConn {
            page,
            server,
            conn: store.connect(domid),
            domid,
            failed: None,
            served: 0,
            resets: 0,
        }
    }

    /// A well-behaved kernel's round trip: sends `bytes` (in pieces if the ring is short of
    /// room), serving and reading meanwhile, until `want` whole messages came back.
    pub fn call(
        &mut self,
        store: &mut Store,
        bytes: &[u8],
        partial: &mut Vec<u8>,
        want: usize,
    ) -> Vec<Message> {
        let mut sent = 0;
        let mut got = Vec::new();
        for _ in 0..10_000 {
            sent += guest_send(&self.page, &bytes[sent..]);
            assert!(self.service(store), "ring failed: {:?}", self.failed);
            got.extend(guest_take(&self.page, partial));
            if sent == bytes.len() && got.len() >= want {
                return got;
            }
        }
        panic!(
            "no answer after 10000 rounds: {} of {} sent, {} messages",
            sent,
            bytes.len(),
            got.len()
        );
    }

    /// One wake-up: reset if asked, move queued output into the ring, serve whole requests
    /// while nothing is waiting to go out. Returns false once the ring has failed.
    pub fn service(&mut self, store: &mut Store) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.server.check_reconnect() {
            store.disconnect(self.conn);
            self.conn = store.connect(self.domid);
            self.resets += 1;
        }
        let r = (|| loop {
            self.server.flush()?;
            while self.server.pending() == 0 {
                let Some(out) = store.pop_output(self.conn) else {
                    break;
                };
                self.server.write_encoded(&out)?;
            }
            if self.server.pending() > 0 {
                return Ok(());
            }
            match self.server.try_read_message()? {
                Some(m) => {
                    self.served += 1;
                    if store.handle(self.conn, &m.header, &m.payload).is_err() {
                        return Err(xenstore::ring::RingError::Protocol);
                    }
                }
                None => return Ok(()),
            }
        })();
        if let Err(e) = r {
            self.failed = Some(e);
            return false;
        }
        true
    }
}
