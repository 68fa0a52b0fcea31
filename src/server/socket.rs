//! The Unix-socket transport: one thread, one epoll set, non-blocking sockets.
//!
//! Each loop iteration: wait for readiness; accept every pending client; read what the ready
//! clients sent (a bounded chunk each, for fairness) *outside* the store lock; then, in one
//! store session, handle every whole request read so far and pull queued output (replies and
//! watch events); then, outside the lock again, write each touched client's output with
//! gathered writes, watchers first and requesters last (a writer gets its reply after the
//! events it caused are in the watchers' sockets); last, take off the sockets the request bytes
//! that were only peeked at (`deferred.rs`). Flow control is described in the parent module.
//! Socket clients act as domain 0, as with the C daemon. After an iteration that served a
//! client, the wait for the next one starts with a bounded, adaptive poll (`busy_poll`; off
//! with `ServerConfig::busy_poll`), so that a client sending its next request at once finds
//! the loop awake; an idle loop never polls.
//!
//! Peeked bytes keep a socket readable, so client sockets are registered edge-triggered: a
//! read that stops at its bound schedules another by itself (`reread`), and the end of stream
//! is recognised from `PEER_SHUT` in the readiness report.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::deferred::Deferred;
use super::framing::{InBuf, OutQueue};
use super::host::HostRings;
use super::slab::Slab;
use super::Engine;
use crate::busy_poll::BusyPoll;
use crate::store::{ConnId, IdMap, Store};
use crate::sys::{Epoll, EventFd, NoSigPipe, Ready, EDGE, HANGUP, PEER_SHUT, READABLE, WRITABLE};
use crate::xen::Hypervisor;

/// Tunables of the socket transport.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Queued output (bytes) at which a connection's requests stop being handled.
    pub out_high: usize,
    /// Queued output (bytes) under which they are handled again.
    pub out_low: usize,
    /// Most bytes read from one client per loop iteration.
    pub read_chunk: usize,
    /// Unsent watch events older than this are dropped; `None` keeps them.
    pub watch_event_timeout: Option<Duration>,
    /// Report broken clients on standard error.
    pub verbose: bool,
    /// After serving requests, look for the next one for a few microseconds before sleeping
    /// (see `busy_poll`).
    pub busy_poll: bool,
    /// Where a live update writes the state and what the new binary is given; `None`: no
    /// live update (see `live_update.rs`).
    pub live_update: Option<super::live_update::LiveUpdateSetup>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            out_high: 256 * 1024,
            out_low: 64 * 1024,
            read_chunk: 64 * 1024,
            watch_event_timeout: Some(Duration::from_secs(20)),
            verbose: false,
            busy_poll: true,
            live_update: None,
        }
    }
}

/// Domain the socket clients act as: domain 0, as with the C daemon.
const SOCKET_DOMID: u32 = 0;

const TOKEN_LISTENER: u64 = 0;
const TOKEN_STOP: u64 = 1;
/// An event channel of host mode fired.
const TOKEN_EVENTS: u64 = 2;
/// SIGHUP: reopen the trace file.
const TOKEN_HANGUP: u64 = 3;
const TOKEN_FIRST_CONN: u64 = 8;

/// How often stale watch events are looked for (and accepting retried after EMFILE).
const TICK: Duration = Duration::from_secs(1);

/// One socket client, as the event loop sees it.
pub(super) struct Client {
    pub(super) stream: UnixStream,
    pub(super) id: ConnId,
    pub(super) inbuf: InBuf,
    pub(super) out: OutQueue,
    /// Request bytes peeked but still in the socket.
    input: Deferred,
    /// Requests are not handled (nor the socket read) until `out` drains.
    paused: bool,
    /// The engine may hold output we have not pulled yet.
    backlog: bool,
    /// The peer sent end-of-stream or failed: close after this iteration.
    pub(super) closing: bool,
    /// Interest currently registered with epoll.
    interest: u32,
    /// Already in this iteration's `touched` list.
    touched: bool,
    /// Read again without waiting for readiness (edge-triggered: a read stopped at its bound,
    /// or the connection was paused when bytes arrived).
    reread: bool,
}

impl Client {
    /// Takes the peeked request bytes off the socket; a broken socket is closed.
    pub(super) fn consume(&mut self, scratch: &mut [u8]) {
        if self.input.consume(&self.stream, scratch).is_err() {
            self.closing = true;
        }
    }
}

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct StopHandle(Arc<EventFd>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.ring();
    }
}

/// The socket server; see the module comment.
pub struct SocketServer<E: Engine = Store> {
    pub(super) listener: UnixListener,
    accepting: bool,
    pub(super) store: Arc<Mutex<E>>,
    epoll: Epoll,
    stop: Arc<EventFd>,
    extra_stop: Vec<Box<dyn AsFd + Send>>,
    hangup: Option<crate::sys::SignalFd>,
    pub(super) cfg: ServerConfig,
    pub(super) conns: Slab<Client>,
    by_id: IdMap<ConnId, usize>,
    touched: Vec<usize>,
    /// Kept so that no request allocates: `touched` is swapped with this to be walked, and the
    /// engine's list of connections with new output goes into `dirty`.
    spare: Vec<usize>,
    dirty: Vec<ConnId>,
    /// Connections to revisit without waiting for readiness (just unpaused, or more to read).
    again: Vec<usize>,
    /// Connections with output queued (those registered for WRITABLE).
    pending_out: usize,
    pub(super) scratch: Vec<u8>,
    last_tick: Instant,
    poller: BusyPoll,
    /// Host mode: the domains' rings served in this loop.
    pub(super) host: Option<HostRings>,
    /// A live update waits: the loop looks at it at least once a second (noted under the
    /// store lock taken anyway to handle requests).
    updating: bool,
}

impl<E: Engine> SocketServer<E> {
    /// A server accepting on `listener` (made non-blocking here), serving `store`.
    pub fn new(listener: UnixListener, store: E, cfg: ServerConfig) -> io::Result<SocketServer<E>> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        let stop = Arc::new(EventFd::new()?);
        epoll.add(listener.as_fd(), READABLE, TOKEN_LISTENER)?;
        epoll.add(stop.as_fd(), READABLE, TOKEN_STOP)?;
        Ok(SocketServer {
            listener,
            accepting: true,
            store: Arc::new(Mutex::new(store)),
            epoll,
            stop,
            extra_stop: Vec::new(),
            hangup: None,
            scratch: vec![0; cfg.read_chunk.max(4096)],
            poller: BusyPoll::new(cfg.busy_poll),
            cfg,
            conns: Slab::default(),
            by_id: IdMap::default(),
            touched: Vec::new(),
            spare: Vec::new(),
            dirty: Vec::new(),
            again: Vec::new(),
            pending_out: 0,
            last_tick: Instant::now(),
            host: None,
            updating: false,
        })
    }

    /// Host mode: also serve dom0's kernel and every domain introduced from now on, through
    /// Linux's Xen devices (see `host.rs`).
    pub fn serve_xen(&mut self) -> io::Result<()> {
        let hv = crate::xen::LinuxXen::open()?;
        self.serve_domains(Arc::new(hv))
    }

    /// Host mode over `hv`.
    pub(crate) fn serve_domains(&mut self, hv: Arc<dyn Hypervisor>) -> io::Result<()> {
        let mut s = self.store.lock();
        let store = s.as_store().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "host mode needs the real store")
        })?;
        let host = HostRings::new(hv, store, self.cfg.out_high, self.cfg.verbose)?;
        drop(s);
        self.epoll.add(host.events_fd(), READABLE, TOKEN_EVENTS)?;
        self.host = Some(host);
        Ok(())
    }

    /// Runs `f` on the engine (set-up before `run`).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut E) -> R) -> R {
        f(&mut self.store.lock())
    }

    /// Whether the domains' rings are served (host mode).
    pub fn serves_domains(&self) -> bool {
        self.host.is_some()
    }

    /// Host mode after a live update (see `HostRings::restore`).
    pub(super) fn restore_domains(
        &mut self,
        hv: Arc<dyn Hypervisor>,
        state: &crate::store::State,
        rings: Vec<(crate::store::ConnRecord, ConnId)>,
    ) -> io::Result<()> {
        let mut s = self.store.lock();
        let store = s.as_store().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "host mode needs the real store")
        })?;
        let host = HostRings::restore(
            hv,
            store,
            state.virq_port,
            rings,
            self.cfg.out_high,
            self.cfg.verbose,
        )?;
        drop(s);
        self.epoll.add(host.events_fd(), READABLE, TOKEN_EVENTS)?;
        self.host = Some(host);
        Ok(())
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.stop))
    }

    /// Also stop when `fd` becomes readable (e.g. a signalfd for SIGTERM).
    pub fn stop_on(&mut self, fd: impl AsFd + Send + 'static) -> io::Result<()> {
        self.epoll.add(fd.as_fd(), READABLE, TOKEN_STOP)?;
        self.extra_stop.push(Box::new(fd));
        Ok(())
    }

    /// Reopens the trace file when `sig` (a SIGHUP signalfd) fires, as the C daemon does
    /// for log rotation.
    pub fn reopen_on(&mut self, sig: crate::sys::SignalFd) -> io::Result<()> {
        self.epoll.add(sig.as_fd(), READABLE, TOKEN_HANGUP)?;
        self.hangup = Some(sig);
        Ok(())
    }

    fn on_hangup(&mut self) {
        if let Some(h) = &self.hangup {
            h.drain();
        }
        if let Some(s) = self.store.lock().as_store() {
            if let Err(e) = s.reopen_trace() {
                eprintln!("xenstored: cannot reopen the trace file: {e}");
            }
        }
    }

    /// Serves until stopped. Returns an error only if epoll itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut ready = Vec::with_capacity(256);
        // The last iteration served a client: its next request may be microseconds away.
        let mut served = false;
        loop {
            let host_work = self.host.as_ref().is_some_and(HostRings::has_work);
            let mut timeout = if !self.again.is_empty() || host_work {
                0
            } else if self.needs_tick() || self.updating {
                TICK.as_millis() as i32
            } else {
                -1
            };
            // A guest held for want of write credit is read again when it has some.
            if let Some(wait) = self.host.as_ref().and_then(HostRings::held_for) {
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                timeout = if timeout < 0 { ms } else { timeout.min(ms) };
            }
            ready.clear();
            if served && timeout != 0 {
                let epoll = &mut self.epoll;
                let found = self.poller.poll(|| {
                    epoll.wait(0, &mut ready)?;
                    io::Result::Ok((!ready.is_empty()).then_some(()))
                })?;
                if found.is_none() {
                    self.epoll.wait(timeout, &mut ready)?;
                }
            } else {
                self.epoll.wait(timeout, &mut ready)?;
            }
            served = !self.again.is_empty()
                || host_work
                || ready
                    .iter()
                    .any(|r| r.token >= TOKEN_FIRST_CONN || r.token == TOKEN_EVENTS);
            for idx in std::mem::take(&mut self.again) {
                match self.conns.get_mut(idx) {
                    Some(c) if c.reread => {
                        c.reread = false;
                        // Read to the end: whether the peer has shut down is not known here.
                        self.on_ready(idx, READABLE | PEER_SHUT);
                    }
                    _ => self.touch(idx),
                }
            }
            for &Ready { token, events } in &ready {
                match token {
                    TOKEN_LISTENER => self.accept_all(),
                    TOKEN_STOP => return Ok(()),
                    TOKEN_HANGUP => self.on_hangup(),
                    TOKEN_EVENTS => {
                        if let Some(h) = &mut self.host {
                            h.on_events();
                        }
                    }
                    t => self.on_ready((t - TOKEN_FIRST_CONN) as usize, events),
                }
            }
            self.serve_touched();
            // At once when the request to start came in just now.
            if self.updating {
                self.poll_live_update();
            }
            if Instant::now().saturating_duration_since(self.last_tick) >= TICK {
                self.tick();
            }
        }
    }

    fn needs_tick(&self) -> bool {
        !self.accepting || (self.pending_out > 0 && self.cfg.watch_event_timeout.is_some())
    }

    fn touch(&mut self, idx: usize) {
        if let Some(c) = self.conns.get_mut(idx) {
            if !c.touched {
                c.touched = true;
                self.touched.push(idx);
            }
        }
    }

    fn accept_all(&mut self) {
        let mut accepted = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        accepted.push(stream);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (or memory): stop listening for a tick rather than
                    // spin on a listener that stays readable.
                    let exhausted = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    if exhausted && self.accepting {
                        eprintln!("xenstored: cannot accept clients for now: {e}");
                        self.accepting = false;
                        let _ = self.epoll.modify(self.listener.as_fd(), 0, TOKEN_LISTENER);
                    }
                    break;
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let ids: Vec<ConnId> = {
            let mut s = self.store.lock();
            accepted.iter().map(|_| s.connect(SOCKET_DOMID)).collect()
        };
        for (stream, id) in accepted.into_iter().zip(ids) {
            if self.add_client(stream, id).is_err() {
                self.store.lock().disconnect(id);
            }
        }
    }

    /// Puts a client into the loop (accepted, or taken over by a live update).
    fn add_client(&mut self, stream: UnixStream, id: ConnId) -> io::Result<usize> {
        let input = Deferred::new(&stream);
        let idx = self.conns.insert(Client {
            stream,
            id,
            inbuf: InBuf::new(),
            out: OutQueue::new(),
            input,
            paused: false,
            backlog: false,
            closing: false,
            interest: READABLE,
            touched: false,
            reread: false,
        });
        let token = idx as u64 + TOKEN_FIRST_CONN;
        let fd = self
            .conns
            .get_mut(idx)
            .expect("just inserted")
            .stream
            .as_fd();
        if let Err(e) = self.epoll.add(fd, READABLE | PEER_SHUT | EDGE, token) {
            self.conns.remove(idx);
            return Err(e);
        }
        self.by_id.insert(id, idx);
        Ok(idx)
    }

    /// A client a live update handed over: its unhandled requests and unwritten output are
    /// taken up at once.
    pub(super) fn adopt_client(
        &mut self,
        stream: UnixStream,
        id: ConnId,
        rec: &crate::store::ConnRecord,
    ) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        let idx = self.add_client(stream, id)?;
        let c = self.conns.get_mut(idx).expect("just added");
        c.inbuf.extend(&rec.input);
        if rec.partial > 0 {
            c.out.push_raw(rec.output[..rec.partial].to_vec());
        }
        for m in crate::wire::split_messages(&rec.output[rec.partial..]) {
            c.out.push(m.to_vec());
        }
        c.reread = true;
        self.again.push(idx);
        Ok(())
    }

    /// Readiness of one client: read what it sent (bounded) or note that it is gone.
    fn on_ready(&mut self, idx: usize, events: u32) {
        let chunk = self.cfg.read_chunk;
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if events & READABLE != 0 && !c.paused && !c.closing {
            let mut got = 0;
            loop {
                if got >= chunk {
                    // Fairness bound reached; edge-triggered, so come back by ourselves.
                    c.reread = true;
                    self.again.push(idx);
                    break;
                }
                let want = (chunk - got).min(self.scratch.len());
                let buf = &mut self.scratch[..want];
                match c.input.read(&mut c.stream, buf) {
                    Ok(0) => {
                        c.closing = true;
                        break;
                    }
                    Ok(n) => {
                        c.inbuf.extend(&self.scratch[..n]);
                        got += n;
                        // A short read emptied the socket: asking again would only fail with
                        // EAGAIN (a wasted system call per request). Bytes arriving later are
                        // reported again; an end of stream that came with these bytes is not,
                        // which PEER_SHUT tells.
                        if n < want && events & PEER_SHUT == 0 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.closing = true;
                        break;
                    }
                }
            }
        } else if events & HANGUP != 0 {
            // Peer gone with nothing left to read: nobody to answer.
            c.closing = true;
        }
        self.touch(idx);
    }

    /// Handles requests, pulls output, writes, closes: everything the touched clients need.
    pub(super) fn serve_touched(&mut self) {
        // Those touched by readiness (requesters); connections only receiving output follow.
        let requesters = self.touched.len();
        self.handle_and_pull();
        // Watchers first, requesters last: by the time a writer has its reply, the events its
        // request caused are already in the watchers' sockets, and a writer that waits for
        // its reply does not compete for the processor with this loop meanwhile.
        let mut order = std::mem::take(&mut self.spare);
        std::mem::swap(&mut order, &mut self.touched);
        order.rotate_left(requesters);
        let mut gone = Vec::new();
        for &idx in &order {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            c.touched = false;
            if !c.out.is_empty() && c.out.write_to(&mut NoSigPipe(c.stream.as_fd())).is_err() {
                c.closing = true;
            }
            if c.input.pending() && !c.closing {
                // After the reply went out, so a client blocked waiting for it has been woken
                // by it already and taking its request bytes wakes nobody (see deferred.rs).
                c.consume(&mut self.scratch);
            }
            if c.closing {
                // End of stream: whatever fitted into the socket has been sent.
                gone.push(idx);
                continue;
            }
            if c.out.is_empty() && c.backlog {
                // The socket took everything and the engine holds more: no writability edge
                // will come, so pull again next round.
                self.again.push(idx);
            }
            if c.paused && c.out.bytes() <= self.cfg.out_low {
                c.paused = false;
                // Requests may already be waiting in the buffer, and bytes may have arrived
                // while paused (their edge was ignored): read and handle without waiting.
                c.reread = true;
                self.again.push(idx);
            }
            self.update_interest(idx);
        }
        order.clear();
        self.spare = order;
        if !gone.is_empty() {
            self.close(&gone);
        }
    }

    /// Under the store lock: handles the touched clients' requests, then pulls the output of
    /// every client that has some (adding those that sent nothing to `touched`).
    fn handle_and_pull(&mut self) {
        let mut s = self.store.lock();
        // The domains' rings (host mode) first: what Xen reported (VIRQ_DOM_EXC) before a
        // socket request arrived is handled before it.
        if let (Some(h), Some(store)) = (&mut self.host, s.as_store()) {
            h.serve(store);
        }
        for &idx in &self.touched {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            handle_requests(&mut *s, c, &self.cfg);
        }
        // Output for clients that sent nothing (watch events).
        s.take_dirty_into(&mut self.dirty);
        for id in self.dirty.drain(..) {
            if let Some(&idx) = self.by_id.get(&id) {
                let c = self.conns.get_mut(idx).expect("indexed connection");
                c.backlog = true;
                if !c.touched {
                    c.touched = true;
                    self.touched.push(idx);
                }
            } else if let Some(h) = &mut self.host {
                h.mark_dirty(id);
            }
        }
        match (&mut self.host, s.as_store()) {
            (Some(h), Some(store)) => h.deliver(store),
            // Released domains concern rings, which this server then has none of: do not let
            // the notices pile up.
            _ => drop(s.take_released()),
        }
        for &idx in &self.touched {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            if c.backlog {
                pull_output(&mut *s, c, self.cfg.out_high);
            }
        }
        self.updating = s.as_store().is_some_and(|s| s.live_update_waiting());
    }

    fn update_interest(&mut self, idx: usize) {
        let c = self.conns.get_mut(idx).expect("live connection");
        let mut want = 0;
        if !c.paused {
            want |= READABLE;
        }
        // With output pending in the engine, wait for room in the socket to pull more.
        if !c.out.is_empty() || c.backlog {
            want |= WRITABLE;
        }
        if want == c.interest {
            return;
        }
        let was_pending = c.interest & WRITABLE != 0;
        let token = idx as u64 + TOKEN_FIRST_CONN;
        if self
            .epoll
            .modify(c.stream.as_fd(), want | PEER_SHUT | EDGE, token)
            .is_err()
        {
            c.closing = true;
            self.again.push(idx);
            return;
        }
        c.interest = want;
        let now_pending = want & WRITABLE != 0;
        match (was_pending, now_pending) {
            (false, true) => self.pending_out += 1,
            (true, false) => self.pending_out -= 1,
            _ => {}
        }
    }

    fn close(&mut self, idxs: &[usize]) {
        let mut ids = Vec::with_capacity(idxs.len());
        for &idx in idxs {
            let Some(mut c) = self.conns.remove(idx) else {
                continue;
            };
            // Unread bytes would make the peer see a reset instead of the end of the stream.
            c.consume(&mut self.scratch);
            if c.interest & WRITABLE != 0 {
                self.pending_out -= 1;
            }
            self.by_id.remove(&c.id);
            ids.push(c.id);
            // Dropping the stream closes it, which also removes it from the epoll set.
        }
        let mut s = self.store.lock();
        for id in ids {
            s.disconnect(id);
        }
        drop(s);
        if !self.accepting {
            self.resume_accepting();
        }
    }

    fn resume_accepting(&mut self) {
        if self
            .epoll
            .modify(self.listener.as_fd(), READABLE, TOKEN_LISTENER)
            .is_ok()
        {
            self.accepting = true;
        }
    }

    /// Periodic work: drop stale watch events, retry accepting.
    fn tick(&mut self) {
        let now = Instant::now();
        self.last_tick = now;
        if !self.accepting {
            self.resume_accepting();
        }
        let Some(timeout) = self.cfg.watch_event_timeout else {
            return;
        };
        if self.pending_out == 0 {
            return;
        }
        let mut drained = Vec::new();
        for (idx, c) in self.conns.iter_mut() {
            if c.out
                .oldest_event()
                .is_some_and(|t| now.saturating_duration_since(t) > timeout)
            {
                c.out.drop_stale_events(now, timeout);
                drained.push(idx);
            }
        }
        // Room was made: pull more (the engine may hold a backlog) and maybe unpause.
        for idx in drained {
            self.touch(idx);
        }
        if !self.touched.is_empty() {
            self.serve_touched();
        }
    }
}

impl<E: Engine> Drop for SocketServer<E> {
    /// The store may outlive the server (embedded use): its clients' transactions and watches
    /// must not.
    fn drop(&mut self) {
        for (_, c) in self.conns.iter_mut() {
            c.consume(&mut self.scratch);
        }
        let ids: Vec<ConnId> = self.by_id.keys().copied().collect();
        let mut s = self.store.lock();
        for id in ids {
            s.disconnect(id);
        }
    }
}

/// Handles the whole requests buffered for `c`, in order, until its output reaches the bound.
fn handle_requests<E: Engine>(s: &mut E, c: &mut Client, cfg: &ServerConfig) {
    while !c.paused {
        if c.out.bytes() >= cfg.out_high {
            c.paused = true;
            break;
        }
        match c.inbuf.next_message() {
            Ok(Some((hdr, payload))) => {
                if let Err(e) = s.handle(c.id, &hdr, payload) {
                    if cfg.verbose {
                        eprintln!("xenstored: closing client {}: {}", c.id.0, e.0);
                    }
                    c.closing = true;
                    // Send what the engine queued before the failure, then close.
                    pull_output(s, c, usize::MAX);
                    return;
                }
                pull_output(s, c, cfg.out_high);
            }
            Ok(None) => break,
            Err(e) => {
                // A payload over the protocol maximum: this client is broken; close it.
                if cfg.verbose {
                    eprintln!("xenstored: closing client {}: {:?}", c.id.0, e);
                }
                c.closing = true;
                return;
            }
        }
    }
}

/// Moves queued output from the engine into `c.out` while it holds less than `high` bytes.
fn pull_output<E: Engine>(s: &mut E, c: &mut Client, high: usize) {
    while c.out.bytes() < high {
        match s.pop_output(c.id) {
            Some(m) => c.out.push(m),
            None => {
                c.backlog = false;
                return;
            }
        }
    }
    c.backlog = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::standin::StandIn;
    use crate::wire::{encode, Header, MsgType, HEADER_LEN};
    use std::io::Read;
    use std::io::Write;
    use std::path::PathBuf;
    use std::thread;

    struct Running {
        path: PathBuf,
        stop: StopHandle,
        thread: Option<thread::JoinHandle<()>>,
        store: Arc<Mutex<StandIn>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.stop();
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn start(tag: &str, cfg: ServerConfig) -> Running {
        let path =
            std::env::temp_dir().join(format!("xs-sock-{}-{}.sock", tag, std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut server = SocketServer::new(listener, StandIn::default(), cfg).unwrap();
        let store = Arc::clone(&server.store);
        let stop = server.stop_handle();
        let thread = Some(thread::spawn(move || server.run().unwrap()));
        Running {
            path,
            stop,
            thread,
            store,
        }
    }

    fn read_msg(s: &mut UnixStream) -> (Header, Vec<u8>) {
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).unwrap();
        let h = Header::parse(&h).unwrap();
        let mut p = vec![0; h.len as usize];
        s.read_exact(&mut p).unwrap();
        (h, p)
    }

    #[test]
    fn split_and_pipelined_requests_are_answered_in_order() {
        let r = start("order", ServerConfig::default());
        let mut c = UnixStream::connect(&r.path).unwrap();
        let mut all = Vec::new();
        for i in 1..=200u32 {
            all.extend(encode(MsgType::XS_READ, i, 0, format!("/n{i}").as_bytes()));
        }
        // One request in dribbles, then the rest in one write.
        let first = encode(MsgType::XS_READ, 1000, 0, b"first");
        for b in &first {
            c.write_all(std::slice::from_ref(b)).unwrap();
        }
        c.write_all(&all).unwrap();
        assert_eq!(
            read_msg(&mut c),
            (Header::new(MsgType::XS_READ, 1000, 0, 5), b"first".to_vec())
        );
        for i in 1..=200u32 {
            let (h, p) = read_msg(&mut c);
            assert_eq!(h.req_id, i);
            assert_eq!(p, format!("/n{i}").as_bytes());
        }
    }

    #[test]
    fn oversized_or_fatal_closes_only_that_client() {
        let r = start("fatal", ServerConfig::default());
        let mut good = UnixStream::connect(&r.path).unwrap();
        let mut bad = UnixStream::connect(&r.path).unwrap();
        bad.write_all(&Header::new(MsgType::XS_WRITE, 1, 0, 5000).to_bytes())
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            bad.read(&mut buf).unwrap(),
            0,
            "oversized header closes the client"
        );
        let mut fatal = UnixStream::connect(&r.path).unwrap();
        fatal
            .write_all(&encode(MsgType::XS_CONTROL, 1, 0, b"fatal"))
            .unwrap();
        assert_eq!(fatal.read(&mut buf).unwrap(), 0);
        good.write_all(&encode(MsgType::XS_READ, 7, 0, b"ok"))
            .unwrap();
        assert_eq!(read_msg(&mut good).1, b"ok");
        // Both broken clients were disconnected from the engine.
        thread::sleep(Duration::from_millis(50));
        assert_eq!(r.store.lock().disconnected.len(), 2);
    }

    #[test]
    fn watch_events_reach_an_idle_client_and_a_stalled_client_is_bounded() {
        let cfg = ServerConfig {
            out_high: 8 * 1024,
            out_low: 2 * 1024,
            ..Default::default()
        };
        let r = start("stall", cfg);
        let mut watcher = UnixStream::connect(&r.path).unwrap();
        watcher
            .write_all(&encode(MsgType::XS_WATCH, 1, 0, b""))
            .unwrap();
        assert_eq!(read_msg(&mut watcher).1, b"OK\0");
        let mut writer = UnixStream::connect(&r.path).unwrap();
        writer
            .write_all(&encode(MsgType::XS_WRITE, 2, 0, b"/x"))
            .unwrap();
        assert_eq!(read_msg(&mut writer).1, b"OK\0");
        assert_eq!(
            read_msg(&mut watcher),
            (
                Header::new(MsgType::XS_WATCH_EVENT, 0, 0, 2),
                b"/x".to_vec()
            )
        );

        // A client that pipelines big requests and never reads: the server stops reading it
        // once its queue and the socket buffers are full; the writer below keeps being served.
        let hog = UnixStream::connect(&r.path).unwrap();
        hog.set_nonblocking(true).unwrap();
        let big = encode(MsgType::XS_READ, 3, 0, &[b'x'; 4000]);
        let mut sent = 0usize;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stuck_since = None;
        while Instant::now() < deadline {
            match (&hog).write(&big) {
                Ok(n) => {
                    sent += n;
                    stuck_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let t = *stuck_since.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(300) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            stuck_since.is_some(),
            "server kept reading a client that never reads"
        );
        assert!(sent < 64 * 1024 * 1024, "sent {sent}");
        let handled_at_stall = r.store.lock().handled;
        for i in 0..50 {
            writer
                .write_all(&encode(MsgType::XS_READ, 100 + i, 0, b"v"))
                .unwrap();
            assert_eq!(read_msg(&mut writer).0.req_id, 100 + i);
        }
        let handled = r.store.lock().handled;
        assert_eq!(
            handled,
            handled_at_stall + 50,
            "the hog's requests were not handled meanwhile"
        );
    }

    #[test]
    fn events_are_in_the_watchers_sockets_before_the_writer_has_its_reply() {
        let r = start("evfirst", ServerConfig::default());
        let mut watchers: Vec<UnixStream> = (0..20)
            .map(|_| UnixStream::connect(&r.path).unwrap())
            .collect();
        for w in &mut watchers {
            w.write_all(&encode(MsgType::XS_WATCH, 1, 0, b"")).unwrap();
            assert_eq!(read_msg(w).1, b"OK\0");
        }
        let mut writer = UnixStream::connect(&r.path).unwrap();
        for round in 0..20u32 {
            let p = format!("/r{round}");
            writer
                .write_all(&encode(MsgType::XS_WRITE, round, 0, p.as_bytes()))
                .unwrap();
            assert_eq!(read_msg(&mut writer).0.req_id, round);
            for w in &mut watchers {
                w.set_nonblocking(true).unwrap();
                let mut h = [0u8; HEADER_LEN];
                w.read_exact(&mut h)
                    .expect("event already there when the writer got its reply");
                w.set_nonblocking(false).unwrap();
                let mut body = vec![0; Header::parse(&h).unwrap().len as usize];
                w.read_exact(&mut body).unwrap();
                assert_eq!(body, p.as_bytes());
            }
        }
    }

    /// Bytes the peer has not taken off `s` yet (SIOCOUTQ).
    fn unconsumed_by_peer(s: &UnixStream) -> i32 {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer, which is live.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        assert_eq!(rc, 0);
        n
    }

    #[test]
    fn peeked_requests_are_taken_off_the_socket_soon() {
        let r = start("consume", ServerConfig::default());
        let mut c = UnixStream::connect(&r.path).unwrap();
        let all_taken = |c: &UnixStream| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while unconsumed_by_peer(c) != 0 {
                assert!(
                    Instant::now() < deadline,
                    "request bytes left in the socket"
                );
                thread::sleep(Duration::from_millis(2));
            }
        };
        // One request, then silence: taken after a short while.
        c.write_all(&encode(MsgType::XS_READ, 1, 0, b"one"))
            .unwrap();
        assert_eq!(read_msg(&mut c).1, b"one");
        all_taken(&c);
        // Many at once.
        let mut all = Vec::new();
        for i in 0..100u32 {
            all.extend(encode(MsgType::XS_READ, i, 0, b"x"));
        }
        c.write_all(&all).unwrap();
        for i in 0..100u32 {
            assert_eq!(read_msg(&mut c).0.req_id, i);
        }
        all_taken(&c);
    }

    #[test]
    fn a_client_writing_in_tiny_pieces_never_waits_for_room() {
        // Every write is its own socket buffer, charged at far more than its size: written
        // byte by byte, a few hundred requests exceed the sender's buffer unless the server
        // takes them off the socket as it goes.
        let r = start("tiny", ServerConfig::default());
        let c = UnixStream::connect(&r.path).unwrap();
        let mut w = c.try_clone().unwrap();
        let n = 400u32;
        let writer = thread::spawn(move || {
            for i in 0..n {
                for b in encode(MsgType::XS_READ, i, 0, b"abc") {
                    w.write_all(&[b]).unwrap();
                }
            }
        });
        let mut rd = c;
        rd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for i in 0..n {
            assert_eq!(read_msg(&mut rd).0.req_id, i);
        }
        writer.join().unwrap();
    }

    #[test]
    fn unread_watch_events_time_out() {
        let cfg = ServerConfig {
            out_high: 4 * 1024,
            out_low: 1024,
            watch_event_timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let r = start("timeout", cfg);
        let mut watcher = UnixStream::connect(&r.path).unwrap();
        watcher
            .write_all(&encode(MsgType::XS_WATCH, 1, 0, b""))
            .unwrap();
        assert_eq!(read_msg(&mut watcher).1, b"OK\0");
        // Flood the watcher with far more events than its socket holds.
        let mut writer = UnixStream::connect(&r.path).unwrap();
        let n = 2000u32;
        for i in 0..n {
            let path = format!("/e{i:04}{}", "x".repeat(1000));
            writer
                .write_all(&encode(MsgType::XS_WRITE, i, 0, path.as_bytes()))
                .unwrap();
            read_msg(&mut writer);
        }
        thread::sleep(Duration::from_millis(2500));
        // Drain everything the server still has for us.
        watcher
            .set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match watcher.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let events = got.len() / (HEADER_LEN + 1006);
        assert!(
            events > 0 && events < n as usize,
            "{events} of {n} events delivered"
        );
        // The stream is still well framed: every message is a whole event.
        assert_eq!(got.len() % (HEADER_LEN + 1006), 0);
        let seq: Vec<u32> = got
            .chunks(HEADER_LEN + 1006)
            .map(|m| {
                std::str::from_utf8(&m[HEADER_LEN + 2..HEADER_LEN + 6])
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "events stay in order");
        assert_eq!(
            *seq.last().unwrap(),
            n - 1,
            "events after the stall are delivered"
        );
    }

    #[test]
    fn stopping_the_server_disconnects_its_clients_from_the_store() {
        let mut r = start("drop", ServerConfig::default());
        let mut a = UnixStream::connect(&r.path).unwrap();
        let mut b = UnixStream::connect(&r.path).unwrap();
        for c in [&mut a, &mut b] {
            c.write_all(&encode(MsgType::XS_READ, 1, 0, b"x")).unwrap();
            read_msg(c);
        }
        r.stop.stop();
        r.thread.take().unwrap().join().unwrap();
        assert_eq!(r.store.lock().disconnected.len(), 2);
        let mut buf = [0u8; 1];
        assert_eq!(a.read(&mut buf).unwrap(), 0, "sockets are closed too");
    }

    #[test]
    fn half_closed_client_gets_its_replies() {
        let r = start("halfclose", ServerConfig::default());
        let mut c = UnixStream::connect(&r.path).unwrap();
        c.write_all(&encode(MsgType::XS_READ, 5, 0, b"bye"))
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_msg(&mut c).1, b"bye");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}
