//! One connection: sending requests, matching replies to them, and moving watch events into the
//! watch queue, with no thread hop between the wire and the thread that asked.
//!
//! # How replies find their requester
//!
//! Every request gets a req_id that no other request in flight has, and a slot keyed by it.
//! Reading the stream is a role ("the reader") held by one thread at a time:
//! - a requester whose reply has not arrived and who finds nobody reading becomes the reader;
//!   it reads until its own reply comes, fills the slots of other requesters as their replies
//!   pass by (waking each), and queues watch events; before leaving it also dispatches whatever
//!   whole messages are already buffered, then hands the role to the requester still waiting
//!   that asked first, if any: replies come in request order, so that requester's reply is the
//!   next one and it reads it itself. The role passes directly (`handed_to`), so a newer
//!   request cannot take it in between and waste the wake-up that handed it over. The reader
//!   reads with `Transport::recv_busy`, which looks for the next reply for a bounded, adaptive
//!   few microseconds without sleeping (yielding to the requesters it just woke), since a reply
//!   that finds its reader awake costs no wake-up (`busy_poll`);
//! - the watch thread reads only while no request awaits its reply. It sleeps in epoll_wait
//!   on the stream and on a wake-up eventfd; the stream is armed in that epoll set only while
//!   no reply is awaited (a request sent while the count is above 0 disarms it, the reply
//!   that brings the count back to 0 re-arms it), unless the transport never signals replies
//!   on its descriptor (`Transport::signals_replies`, an in-process store), which then stays
//!   armed. So replies do not wake the watch thread: the requester reads its reply itself,
//!   with no thread hop. The disarming comes after the send, so that the call overlaps the
//!   daemon's work on the request; a reply that gets in first (sending woke the daemon on
//!   our CPU and it answered at once) wakes the watch thread, which then disarms the stream
//!   itself and sleeps again (re-arming reports whatever is left unread); so does a watch
//!   thread woken by an event just as a request began (its requester reads the event). Should
//!   the watch thread find a requester reading otherwise (one taking what came with its
//!   reply, or where the stream stays armed), it parks until that reader is done, remembering
//!   that the stream was readable. When it does read, it reads once without waiting
//!   (`Transport::recv_available`: no poll first, since epoll_wait just said there is data,
//!   and no read that could block, since a requester may have taken that data meanwhile),
//!   queues every whole message that read brought, then gives the role back.
//! - a pure watcher waits in a read instead: once `QUIET_EVENTS` events in a row came with no
//!   request between them and none for `QUIET_TIME`, and where
//!   `Transport::shutdown_ends_reads` (a socket), the watch thread takes the reader role and
//!   waits in `recv` on the stream. Per event that costs one read instead of epoll_wait and
//!   a read (a thousand watching handles spend 9-17% less CPU per event,
//!   docs/performance.md). A request then waits for the watch thread to hand its reply over
//!   (one wake-up more), and that request sends the thread back to epoll_wait. Closing the
//!   handle ends such a read by shutting the stream down, the only way to end it short of a
//!   signal.
//!
//! Events are queued by whoever holds the reader role, after letting go of `core` (so a
//! caller woken by the watch pipe never waits for it), and in the order they came, since
//! only the role holder queues them.
//!
//! Transports that cannot match by req_id get one request at a time (the `serial` lock) and
//! the single reply is the requester's whatever its req_id.
//!
//! # Lock discipline
//!
//! - `serial` (non-multiplexing transports only): held for a whole request. Taken first.
//! - `core`: slots, counters, the reader flag, the dead state, the watch thread's flags and the
//!   arming of the stream in the watch thread's epoll set (epoll_ctl is called under it, so the
//!   arming always matches `awaiting`). Never held across a blocking read or a send.
//! - `write`: serialises `Transport::send`; taken with no lock held but `serial`. No lock of
//!   the handle is taken under it; the transport's own may be (the embedded store's `send`
//!   serves the request under the store lock, see `embedded`).
//! - the watch queue's lock (see `watch`): a leaf. Events are queued with `core` released;
//!   only marking the queue dead happens under `core`. Never the reverse order.
//!
//! So the order is serial -> core -> watch queue, and serial -> write -> the transport's locks.
//! Condvars: each slot's (waits on `core`: "your reply is here, or the reader role is free, or
//! the connection died"), `watch_thread` (waits on `core`: "no reply is awaited any more").
//!
//! # Death
//!
//! A read or write error, a malformed message or a reply nobody asked for kills the connection:
//! `dead` records the errno, the transport is shut down, every waiter (requesters, the watch
//! thread, watch-queue readers and pollers) is woken, and later requests fail with EBADF (the C
//! library closes its descriptor, so that is what it reports).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::transport::{Message, Transport};
use super::watch::{WatchEvent, WatchQueue};
use super::Errno;
use crate::store::IdMap;
use crate::sys::{Epoll, EventFd, Ready, EDGE, READABLE};
use crate::wire::{Header, MsgType, HEADER_LEN};

struct Slot {
    reply: Option<Message>,
    wake: Arc<Condvar>,
    /// Order of sending: the oldest waiter is given the reader role.
    seq: u64,
}

thread_local! {
    /// What a requester waits on. A thread waits for one reply at a time, so one condvar per
    /// thread serves all its requests, on any connection, without an allocation per request.
    static WAKE: Arc<Condvar> = Arc::new(Condvar::new());
}

/// One whole message (header, then `parts` back to back) in a single buffer.
fn encode_parts(ty: MsgType, req_id: u32, tx_id: u32, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&Header::new(ty, req_id, tx_id, len as u32).to_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

struct Core {
    next_req_id: u32,
    next_seq: u64,
    /// Keyed by req_id (small sequential numbers: no need for a flooding-proof hash).
    slots: IdMap<u32, Slot>,
    /// Slots whose reply has not been read off the stream yet.
    awaiting: usize,
    /// Somebody (a requester or the watch thread) holds the reader role, or it was handed to
    /// a requester that has not woken up yet (`handed_to`).
    reader_active: bool,
    /// The requester (by req_id) the role was handed to.
    handed_to: Option<u32>,
    /// Why the connection died, if it did.
    dead: Option<Errno>,
    /// The watch thread waits on `watch_thread` and wants a notify when `awaiting` hits 0.
    watch_thread_parked: bool,
    /// The handle is closing: the watch thread must exit.
    stopping: bool,
    /// The stream is armed in the watch thread's epoll set.
    stream_armed: bool,
    /// Watch events read since the last request began (saturating).
    events_unasked: u32,
    /// When the last request began.
    last_request: Instant,
    /// The watch thread holds the reader role in a read that waits (a pure watcher's wait).
    blocked_reading: bool,
}

/// What a message read off the stream turned out to be.
enum Dispatched {
    /// The reply of the reader's own request.
    Mine(Message),
    /// A watch event, for the reader to queue once it has let go of the core lock (still
    /// holding the reader role, so events are queued in the order they came).
    Event(WatchEvent),
    /// Given to another requester.
    Done,
}

/// How the watch thread waits next (`Conn::next_wait`).
enum NextWait {
    /// The handle is closing or the connection died.
    Exit,
    /// In epoll_wait, on the stream (if armed) and the attention eventfd.
    Epoll,
    /// In a read of the stream, holding the reader role: a pure watcher.
    Read,
}

/// What the watch thread waits on.
struct Watcher {
    /// Signalled to wake the thread (stop, death).
    attention: EventFd,
    /// Holds `attention` (always) and the stream (while no reply is awaited).
    epoll: Epoll,
}

const TOKEN_STREAM: u64 = 0;
/// A handle is a pure watcher, whose watch thread waits in a read of the stream, once it has
/// had this many events in a row with no request between them and no request for this long.
/// The events: the one a new watch fires at once does not make a watcher alone, and a handle
/// that answers each event with a request never switches. The time: a request that finds the
/// thread in its read waits for a hand-over (one wake-up more), so that happens at most once
/// per `QUIET_TIME` whatever a handle's pattern; a toolstack creating a domain, whose
/// connections take events and make requests in turn within milliseconds, never switches.
const QUIET_EVENTS: u32 = 2;
const QUIET_TIME: Duration = Duration::from_millis(10);
const TOKEN_ATTENTION: u64 = 1;

/// The watch thread's interest in the stream: readable while `armed`, else nothing.
fn stream_interest(armed: bool, edge: bool) -> u32 {
    let mut events = if armed { READABLE } else { 0 };
    if edge {
        events |= EDGE;
    }
    events
}

pub struct Conn {
    transport: Box<dyn Transport>,
    serial: Option<Mutex<()>>,
    write: Mutex<()>,
    core: Mutex<Core>,
    watch_thread: Condvar,
    /// Created with the watch thread.
    watcher: OnceLock<Watcher>,
    pub events: WatchQueue,
    /// Set by the watch thread just before it lets go of its reference (see `Handle`).
    pub(crate) thread_released_ref: AtomicBool,
}

impl Conn {
    pub fn new(transport: Box<dyn Transport>) -> Conn {
        let serial = (!transport.multiplexes()).then(|| Mutex::new(()));
        Conn {
            transport,
            serial,
            write: Mutex::new(()),
            core: Mutex::new(Core {
                next_req_id: 1,
                next_seq: 0,
                slots: IdMap::default(),
                awaiting: 0,
                reader_active: false,
                handed_to: None,
                dead: None,
                watch_thread_parked: false,
                stopping: false,
                stream_armed: false,
                events_unasked: 0,
                last_request: Instant::now(),
                blocked_reading: false,
            }),
            watch_thread: Condvar::new(),
            watcher: OnceLock::new(),
            events: WatchQueue::default(),
            thread_released_ref: AtomicBool::new(false),
        }
    }

    /// Sends one request, whose payload is `parts` concatenated, and returns its reply,
    /// whatever its type.
    pub fn request(&self, ty: MsgType, tx_id: u32, parts: &[&[u8]]) -> Result<Message, Errno> {
        // Longer than the protocol or the transport allows (E2BIG, as the C library gives
        // both, the second from the xenbus device): refused before anything is sent, so the
        // connection stays usable.
        let len = parts
            .iter()
            .fold(HEADER_LEN, |n, p| n.saturating_add(p.len()));
        if len > self.transport.message_max() {
            return Err(Errno(libc::E2BIG));
        }
        let _serial = self.serial.as_ref().map(|s| s.lock());
        let wake = WAKE.with(Arc::clone);
        let req_id = {
            let mut core = self.core.lock();
            if core.dead.is_some() {
                return Err(Errno(libc::EBADF));
            }
            let mut id = core.next_req_id;
            while core.slots.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            core.next_req_id = id.wrapping_add(1);
            let seq = core.next_seq;
            core.next_seq += 1;
            core.slots.insert(
                id,
                Slot {
                    reply: None,
                    wake: wake.clone(),
                    seq,
                },
            );
            core.awaiting += 1;
            core.events_unasked = 0;
            core.last_request = Instant::now();
            id
        };
        let msg = encode_parts(ty, req_id, tx_id, parts);
        let sent = {
            let _w = self.write.lock();
            self.transport.send(&msg)
        };
        let mut core = self.core.lock();
        if let Err(e) = sent {
            // A partial write leaves the stream unusable for everyone.
            self.kill(&mut core, e);
            self.forget(&mut core, req_id);
            return Err(e);
        }
        if core.awaiting > 0 {
            // From now on this stream's data is ours to read, not the watch thread's. Done
            // after sending, so that the call overlaps the peer's work on the request.
            self.arm_stream(&mut core, false);
        }
        loop {
            let slot = core
                .slots
                .get_mut(&req_id)
                .expect("own slot stays until we leave");
            if let Some(m) = slot.reply.take() {
                core.slots.remove(&req_id);
                return Ok(m);
            }
            if let Some(e) = core.dead {
                self.forget(&mut core, req_id);
                return Err(e);
            }
            if core.handed_to == Some(req_id) {
                core.handed_to = None;
                return self.lead(core, req_id);
            }
            if !core.reader_active {
                core.reader_active = true;
                return self.lead(core, req_id);
            }
            wake.wait(&mut core);
        }
    }

    /// Reads as the reader until our reply comes (see the module comment).
    fn lead(&self, core: MutexGuard<'_, Core>, req_id: u32) -> Result<Message, Errno> {
        drop(core);
        let mut mine = None;
        loop {
            // Once our reply is in, only drain what is already buffered, so no whole message
            // is left where poll() cannot see it.
            if let Some(reply) = mine.take_if(|_| !self.transport.pending()) {
                let mut core = self.core.lock();
                core.reader_active = false;
                self.hand_off(&mut core);
                return Ok(reply);
            }
            let got = self.transport.recv_busy();
            let mut core = self.core.lock();
            let outcome = match got {
                Ok(Some(m)) => self.dispatch(&mut core, m, Some(req_id)),
                Ok(None) => Err(Errno(libc::EINTR)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Dispatched::Mine(m)) => mine = Some(m),
                Ok(Dispatched::Event(ev)) => {
                    drop(core);
                    self.events.push(ev);
                }
                Ok(Dispatched::Done) => {}
                Err(e) => {
                    core.reader_active = false;
                    self.kill(&mut core, e);
                    self.forget(&mut core, req_id);
                    // Our own reply, if it came, is still good.
                    return mine.ok_or(e);
                }
            }
        }
    }

    /// Routes one message: replies to their slot, events back to the reader for the queue.
    /// `mine` is the reader's own req_id (None for the watch thread).
    fn dispatch(
        &self,
        core: &mut Core,
        m: Message,
        mine: Option<u32>,
    ) -> Result<Dispatched, Errno> {
        // Once dead, requesters have given up and removed their slots, so what is still
        // buffered has nobody left to go to (and must not reach someone else's slot below).
        if let Some(e) = core.dead {
            return Err(e);
        }
        if m.header.ty == MsgType::XS_WATCH_EVENT as u32 {
            core.events_unasked = core.events_unasked.saturating_add(1);
            return Ok(Dispatched::Event(WatchEvent::from_payload(m.payload)));
        }
        let waiting = |c: &Core, id: &u32| c.slots.get(id).is_some_and(|s| s.reply.is_none());
        let target = if waiting(core, &m.header.req_id) {
            m.header.req_id
        } else if core.awaiting == 1 {
            // A peer that does not echo req_id (or the one-at-a-time device): the only
            // outstanding request owns whatever reply comes.
            *core
                .slots
                .iter()
                .find(|(_, s)| s.reply.is_none())
                .map(|(id, _)| id)
                .expect("awaiting == 1")
        } else {
            // A reply nobody can own: the stream cannot be trusted any more.
            return Err(Errno(libc::EBADF));
        };
        core.awaiting -= 1;
        if core.awaiting == 0 {
            self.all_answered(core);
        }
        if Some(target) == mine {
            core.slots.remove(&target);
            return Ok(Dispatched::Mine(m));
        }
        let slot = core.slots.get_mut(&target).expect("checked above");
        slot.reply = Some(m);
        slot.wake.notify_one();
        Ok(Dispatched::Done)
    }

    /// The reader is done: pass the role to the oldest requester still waiting for its
    /// reply (it stays taken meanwhile), or free it and tell the watch thread the stream is
    /// its own again.
    fn hand_off(&self, core: &mut Core) {
        let oldest = core
            .slots
            .iter()
            .filter(|(_, s)| s.reply.is_none())
            .min_by_key(|(_, s)| s.seq);
        if let Some((&id, s)) = oldest {
            core.reader_active = true;
            core.handed_to = Some(id);
            s.wake.notify_one();
        } else {
            core.reader_active = false;
            core.handed_to = None;
            if core.watch_thread_parked {
                self.watch_thread.notify_one();
            }
        }
    }

    /// Removes our slot after a failure (the connection is dead: nobody reads any more).
    fn forget(&self, core: &mut Core, req_id: u32) {
        if core.handed_to == Some(req_id) {
            core.handed_to = None;
            core.reader_active = false;
        }
        if let Some(s) = core.slots.remove(&req_id) {
            if s.reply.is_none() {
                core.awaiting -= 1;
                if core.awaiting == 0 {
                    self.all_answered(core);
                }
            }
        }
    }

    /// No reply is awaited any more: the stream is the watch thread's again.
    fn all_answered(&self, core: &mut Core) {
        self.arm_stream(core, true);
        if core.watch_thread_parked {
            self.watch_thread.notify_one();
        }
    }

    /// Whether the stream is disarmed while replies are awaited: only where replies signal its
    /// descriptor (elsewhere they never wake the watch thread: it stays armed, no epoll_ctl
    /// per request), and only level-triggered, so that re-arming reports what is unread.
    fn disarms_for_requests(&self) -> bool {
        self.transport.signals_replies() && !self.transport.edge_triggered()
    }

    /// Arms or disarms the stream in the watch thread's epoll set (no-op without the thread).
    fn arm_stream(&self, core: &mut Core, armed: bool) {
        let Some(w) = self.watcher.get() else { return };
        if !self.disarms_for_requests() {
            return;
        }
        if core.stream_armed == armed || core.dead.is_some() {
            return;
        }
        let (fd, edge) = (
            self.transport.readable_fd(),
            self.transport.edge_triggered(),
        );
        match w
            .epoll
            .modify(fd, stream_interest(armed, edge), TOKEN_STREAM)
        {
            Ok(()) => core.stream_armed = armed,
            // Events could no longer be noticed: better a dead connection than a silent one.
            Err(e) => self.kill(core, e.into()),
        }
    }

    /// Marks the connection dead (first cause wins) and wakes everybody.
    fn kill(&self, core: &mut Core, e: Errno) {
        if core.dead.is_some() {
            return;
        }
        core.dead = Some(e);
        self.transport.shutdown();
        for s in core.slots.values() {
            s.wake.notify_one();
        }
        self.watch_thread.notify_one();
        if let Some(w) = self.watcher.get() {
            w.attention.ring();
        }
        self.events.set_dead();
    }

    /// Kills the connection from outside (a reply of the wrong type, as the C library does).
    pub fn abandon(&self, e: Errno) {
        let mut core = self.core.lock();
        self.kill(&mut core, e);
    }

    pub fn is_dead(&self) -> bool {
        self.core.lock().dead.is_some()
    }

    /// Sets up what the watch thread waits on; Err if the system refuses it (or the transport's
    /// descriptor cannot be watched).
    pub fn prepare_watch_thread(&self) -> Result<(), Errno> {
        let mut core = self.core.lock();
        if self.watcher.get().is_some() {
            return Ok(());
        }
        let attention = EventFd::new()?;
        let epoll = Epoll::new()?;
        epoll.add(attention.as_fd(), READABLE, TOKEN_ATTENTION)?;
        let armed = core.awaiting == 0 || !self.disarms_for_requests();
        let (fd, edge) = (
            self.transport.readable_fd(),
            self.transport.edge_triggered(),
        );
        epoll.add(fd, stream_interest(armed, edge), TOKEN_STREAM)?;
        core.stream_armed = armed;
        let _ = self.watcher.set(Watcher { attention, epoll });
        Ok(())
    }

    /// Asks the watch thread to exit (the caller then joins it).
    pub fn stop_watch_thread(&self) {
        let mut core = self.core.lock();
        core.stopping = true;
        let blocked = core.blocked_reading;
        drop(core);
        self.watch_thread.notify_one();
        if let Some(w) = self.watcher.get() {
            w.attention.ring();
        }
        if blocked {
            // Nothing else ends a read that waits; the handle is closing, so the stream may
            // go. Should the read not have begun yet, it finds the stream shut at once.
            self.transport.shutdown();
        }
    }

    /// The watch thread's body: moves events off the stream while no request is in flight.
    pub fn run_watch_thread(&self) {
        let Some(w) = self.watcher.get() else { return };
        let attention: RawFd = w.attention.as_fd().as_raw_fd();
        let mut ready = Vec::new();
        // The stream polled readable and has not been read since. Kept across a requester's
        // turn at reading, so that a transport whose descriptor signals only once per arrival
        // (`Transport::edge_triggered`) loses nothing.
        let mut stream_ready = false;
        loop {
            if !stream_ready {
                match self.next_wait() {
                    NextWait::Exit => return,
                    NextWait::Read if !self.read_blocking() => return,
                    NextWait::Read => continue,
                    NextWait::Epoll => {}
                }
                ready.clear();
                // An interrupted wait reports nothing: the loop then waits again.
                if let Err(e) = w.epoll.wait(-1, &mut ready) {
                    self.abandon(e.into());
                    return;
                }
                let is = |t| ready.iter().any(|r: &Ready| r.token == t);
                if is(TOKEN_ATTENTION) {
                    w.attention.drain();
                }
                stream_ready = is(TOKEN_STREAM);
            }
            // Take the reader role, waiting for a requester that holds it (it woke us just
            // before it began) to finish.
            {
                let mut core = self.core.lock();
                loop {
                    if core.stopping || core.dead.is_some() {
                        return;
                    }
                    if !stream_ready || core.awaiting == 0 && !core.reader_active {
                        break;
                    }
                    if core.awaiting > 0 && self.disarms_for_requests() {
                        // A reply that came before its requester disarmed the stream: the
                        // requester reads it. Disarming for it now makes waiting for the
                        // request to end needless: re-arming a level-triggered descriptor
                        // reports whatever is still unread.
                        self.arm_stream(&mut core, false);
                        stream_ready = false;
                        break;
                    }
                    self.park(&mut core);
                }
                if !stream_ready {
                    continue;
                }
                core.reader_active = true;
            }
            stream_ready = false;
            // What is there without waiting (one read at most), then whatever else that read
            // brought: never a poll before the read, since epoll_wait just said there is data,
            // and never a read that could block, since a requester may have taken it since.
            if !self.read_as_watcher(self.transport.recv_available(attention)) {
                return;
            }
        }
    }

    /// A pure watcher's wait, the reader role taken by `next_wait`: a read of the stream that
    /// only data, the peer going or `shutdown` (the handle closing) ends. False: the thread
    /// must exit.
    fn read_blocking(&self) -> bool {
        let got = self.transport.recv(None);
        {
            let mut core = self.core.lock();
            core.blocked_reading = false;
            if core.stopping {
                // The read was ended by the handle closing: nobody wants what it brought.
                core.reader_active = false;
                return false;
            }
        }
        self.read_as_watcher(got)
    }

    /// The watch thread, holding the reader role: routes `got` and every whole message
    /// already buffered behind it, then gives the role back. False: the connection died.
    fn read_as_watcher(&self, mut got: Result<Option<Message>, Errno>) -> bool {
        let outcome = loop {
            let m = match got {
                Ok(Some(m)) => m,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let routed = self.dispatch(&mut self.core.lock(), m, None);
            match routed {
                Ok(Dispatched::Event(ev)) => self.events.push(ev),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            got = if self.transport.pending() {
                self.transport.recv(None)
            } else {
                Ok(None)
            };
        };
        let mut core = self.core.lock();
        core.reader_active = false;
        if let Err(e) = outcome {
            self.kill(&mut core, e);
            return false;
        }
        self.hand_off(&mut core);
        true
    }

    /// Parks the watch thread until it may wait on the stream, then says how. It may once no
    /// request awaits its reply and nobody reads, or while requests do but the stream is
    /// disarmed for them (or is about to be: a reply that comes first is left to its
    /// requester, as in `run_watch_thread`), so that the end of a request need not wake the
    /// thread. It waits in a read, as a pure watcher (taking the reader role here), once
    /// `QUIET_EVENTS` events in a row came with no request, none for `QUIET_TIME`, nobody
    /// reads and the transport lets `shutdown` end such a read (see the module comment).
    fn next_wait(&self) -> NextWait {
        let mut core = self.core.lock();
        loop {
            if core.stopping || core.dead.is_some() {
                return NextWait::Exit;
            }
            if core.awaiting > 0 && self.disarms_for_requests() {
                return NextWait::Epoll;
            }
            if core.awaiting == 0 && !core.reader_active {
                if core.events_unasked >= QUIET_EVENTS
                    && core.last_request.elapsed() >= QUIET_TIME
                    && self.transport.shutdown_ends_reads()
                {
                    core.reader_active = true;
                    core.blocked_reading = true;
                    return NextWait::Read;
                }
                return NextWait::Epoll;
            }
            self.park(&mut core);
        }
    }

    fn park(&self, core: &mut MutexGuard<'_, Core>) {
        core.watch_thread_parked = true;
        self.watch_thread.wait(core);
        core.watch_thread_parked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering;
    use std::thread::ThreadId;

    /// A connection on `transport` with its watch thread running, and its watch pipe.
    fn watched(transport: Box<dyn Transport>) -> (Arc<Conn>, RawFd, std::thread::JoinHandle<()>) {
        let conn = Arc::new(Conn::new(transport));
        let fd = conn.events.fileno().unwrap();
        conn.prepare_watch_thread().unwrap();
        let thread = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || conn.run_watch_thread())
        };
        (conn, fd, thread)
    }

    /// The next event through the watch pipe, as a caller polling `xs_fileno` takes it.
    fn next_event(conn: &Conn, fd: RawFd) -> WatchEvent {
        assert!(
            sys::poll(fd, None, 5000).unwrap().first,
            "the event was lost"
        );
        conn.events.pop(false).unwrap().unwrap()
    }

    /// Our end of a socket pair, as the handle connects to a daemon.
    fn socket(ours: std::os::unix::net::UnixStream) -> super::super::transport::StreamTransport {
        super::super::transport::StreamTransport::new(
            ours.into(),
            super::super::transport::StreamKind::Socket,
        )
    }

    /// The daemon's side: reads one request and answers it with "v".
    fn answer(peer: &mut std::os::unix::net::UnixStream) {
        use std::io::{Read, Write};
        let mut h = [0u8; HEADER_LEN];
        peer.read_exact(&mut h).unwrap();
        let h = Header::parse(&h).unwrap();
        let mut body = vec![0u8; h.len as usize];
        peer.read_exact(&mut body).unwrap();
        peer.write_all(&encode_parts(MsgType::XS_READ, h.req_id, 0, &[b"v"]))
            .unwrap();
    }

    /// An in-process transport whose descriptor is edge-triggered (like the embedded store's
    /// mailbox): replies are queued inside `send`; an event can be made to arrive at the worst
    /// moment, just after the requester reading its reply has looked for more.
    struct EdgeDouble {
        queue: Mutex<VecDeque<Message>>,
        bell: EventFd,
        /// When this thread next finds nothing pending, an event arrives right then.
        inject_for: Mutex<Option<ThreadId>>,
    }

    impl EdgeDouble {
        fn event() -> Message {
            let payload = b"/late\0tok\0".to_vec();
            Message {
                header: Header::new(MsgType::XS_WATCH_EVENT, 0, 0, payload.len() as u32),
                payload,
            }
        }
    }

    impl Transport for Arc<EdgeDouble> {
        fn send(&self, msg: &[u8]) -> Result<(), Errno> {
            let h = Header::parse(msg.first_chunk::<HEADER_LEN>().unwrap()).unwrap();
            let payload = b"v".to_vec();
            let reply = Message {
                header: Header::new(MsgType::XS_READ, h.req_id, 0, payload.len() as u32),
                payload,
            };
            self.queue.lock().push_back(reply);
            Ok(())
        }

        fn recv(&self, _interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
            loop {
                if let Some(m) = self.queue.lock().pop_front() {
                    return Ok(Some(m));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn recv_available(&self, _interrupt: RawFd) -> Result<Option<Message>, Errno> {
            Ok(self.queue.lock().pop_front())
        }

        fn pending(&self) -> bool {
            let mut q = self.queue.lock();
            if !q.is_empty() {
                return true;
            }
            let me = std::thread::current().id();
            if self.inject_for.lock().take_if(|t| *t == me).is_some() {
                // The event lands now, and its wake-up with it, while the caller still holds
                // the reader role; the caller lingers so the watch thread sees that.
                q.push_back(EdgeDouble::event());
                drop(q);
                self.bell.ring();
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        }

        fn readable_fd(&self) -> RawFd {
            self.bell.as_fd().as_raw_fd()
        }

        fn multiplexes(&self) -> bool {
            true
        }

        fn signals_replies(&self) -> bool {
            false
        }

        fn edge_triggered(&self) -> bool {
            true
        }

        fn shutdown(&self) {}
    }

    /// With an edge-triggered descriptor there is no second signal: the watch thread must
    /// remember a readiness it could not act on because a requester was reading.
    #[test]
    fn readiness_seen_while_a_requester_reads_is_kept() {
        let double = Arc::new(EdgeDouble {
            queue: Mutex::new(VecDeque::new()),
            bell: EventFd::new().unwrap(),
            inject_for: Mutex::new(None),
        });
        let (conn, fd, thread) = watched(Box::new(Arc::clone(&double)));
        // Let it fall asleep in epoll_wait: the request below does not wake it.
        std::thread::sleep(Duration::from_millis(50));
        *double.inject_for.lock() = Some(std::thread::current().id());
        let reply = conn.request(MsgType::XS_READ, 0, &[b"/x\0"]).unwrap();
        assert_eq!(reply.payload, b"v");
        assert!(double.inject_for.lock().is_none(), "the event was injected");
        // Nobody requests anything any more: only the watch thread can queue the event.
        assert_eq!(next_event(&conn, fd).path(), b"/late");
        conn.stop_watch_thread();
        thread.join().unwrap();
    }

    /// A daemon's socket whose reply is in before `send` returns: the peer answers at once and
    /// `send` lingers until told to go on, so the watch thread, still armed, is woken by a reply
    /// that is not its to read.
    struct EarlyReply {
        inner: super::super::transport::StreamTransport,
        lingering: AtomicBool,
        go_on: AtomicBool,
    }

    impl Transport for Arc<EarlyReply> {
        fn send(&self, msg: &[u8]) -> Result<(), Errno> {
            self.inner.send(msg)?;
            assert!(sys::poll(self.readable_fd(), None, 5000).unwrap().first);
            self.lingering.store(true, Ordering::SeqCst);
            for _ in 0..5000 {
                if self.go_on.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            self.lingering.store(false, Ordering::SeqCst);
            Ok(())
        }

        fn recv(&self, interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
            self.inner.recv(interrupt)
        }

        fn recv_available(&self, interrupt: RawFd) -> Result<Option<Message>, Errno> {
            self.inner.recv_available(interrupt)
        }

        fn pending(&self) -> bool {
            self.inner.pending()
        }

        fn readable_fd(&self) -> RawFd {
            self.inner.readable_fd()
        }

        fn multiplexes(&self) -> bool {
            true
        }

        fn shutdown(&self) {
            self.inner.shutdown()
        }
    }

    /// The reply gets in before the requester has disarmed the stream (this happens when
    /// sending wakes the daemon on the same CPU and it answers at once): the watch thread
    /// disarms it for the requester and goes back to sleep without waiting for the request to
    /// end (once it waited, and the requester had to wake it again); the requester gets its
    /// reply, and an event that comes later still reaches the watch queue.
    #[test]
    fn a_reply_that_wakes_the_watch_thread_is_left_to_its_requester() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let double = Arc::new(EarlyReply {
            inner: socket(ours),
            lingering: AtomicBool::new(false),
            go_on: AtomicBool::new(false),
        });
        let (conn, fd, watch_thread) = watched(Box::new(Arc::clone(&double)));
        let daemon = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || answer(&mut peer))
        };
        let requester = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || conn.request(MsgType::XS_READ, 0, &[b"/x\0"]))
        };
        let mut disarmed_early = false;
        for _ in 0..5000 {
            if double.lingering.load(Ordering::SeqCst) && !conn.core.lock().stream_armed {
                disarmed_early = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        double.go_on.store(true, Ordering::SeqCst);
        assert!(disarmed_early, "the watch thread left the stream armed");
        assert_eq!(requester.join().unwrap().unwrap().payload, b"v");
        daemon.join().unwrap();
        assert!(conn.core.lock().stream_armed, "re-armed once answered");
        peer.write_all(&encode_parts(
            MsgType::XS_WATCH_EVENT,
            0,
            0,
            &[b"/later\0tok\0"],
        ))
        .unwrap();
        assert_eq!(next_event(&conn, fd).path(), b"/later");
        conn.stop_watch_thread();
        watch_thread.join().unwrap();
    }

    /// Waits (bounded only against a hang) until `cond` holds of the connection's core.
    fn until(conn: &Conn, what: &str, cond: impl Fn(&Core) -> bool) {
        for _ in 0..5000 {
            if cond(&conn.core.lock()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("never: {what}");
    }

    /// A handle that only receives events has its watch thread wait in a read; a request
    /// still gets its reply (handed over by that thread) and sends it back to epoll_wait; and
    /// closing the handle ends the read.
    #[test]
    fn a_pure_watcher_waits_in_a_read_that_requests_and_closing_end() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        use std::sync::mpsc;
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (conn, fd, watch_thread) = watched(Box::new(socket(ours)));
        let event = |peer: &mut UnixStream, path: &[u8]| {
            let body = [path, b"\0tok\0"].concat();
            peer.write_all(&encode_parts(MsgType::XS_WATCH_EVENT, 0, 0, &[&body]))
                .unwrap();
            assert_eq!(next_event(&conn, fd).path(), path);
        };
        // (Sleeping is what makes a handle a pure watcher: no request for `QUIET_TIME`.)
        std::thread::sleep(QUIET_TIME);
        for i in 0..QUIET_EVENTS {
            event(&mut peer, format!("/e{i}").as_bytes());
        }
        until(&conn, "the watch thread waits in a read", |c| {
            c.blocked_reading
        });
        // A request: the watch thread reads its reply and hands it over.
        let requester = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || conn.request(MsgType::XS_READ, 0, &[b"/x\0"]))
        };
        answer(&mut peer);
        assert_eq!(requester.join().unwrap().unwrap().payload, b"v");
        until(&conn, "the watch thread is back in epoll_wait", |c| {
            !c.blocked_reading && !c.reader_active && c.stream_armed
        });
        event(&mut peer, b"/after");
        std::thread::sleep(QUIET_TIME);
        for i in 0..QUIET_EVENTS {
            event(&mut peer, format!("/again{i}").as_bytes());
        }
        until(&conn, "the watch thread waits in a read again", |c| {
            c.blocked_reading
        });
        // Closing: the read ends, and the thread with it.
        let (done, joined) = mpsc::channel();
        let closer = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || {
                conn.stop_watch_thread();
                watch_thread.join().unwrap();
                done.send(()).unwrap();
            })
        };
        assert!(
            joined.recv_timeout(Duration::from_secs(5)).is_ok(),
            "the watch thread stayed in its read"
        );
        closer.join().unwrap();
    }

    /// A stream whose replies the test hands in one by one (`deliver`); `recv` waits for them.
    /// Shutting it down does nothing, so what was delivered can still be read afterwards, as
    /// bytes already buffered from a daemon that died.
    #[derive(Default)]
    struct GatedDouble {
        sent: Mutex<Vec<u32>>,
        inbox: Mutex<VecDeque<Message>>,
        arrived: Condvar,
    }

    impl GatedDouble {
        fn deliver(&self, req_id: u32, body: &[u8]) {
            let header = Header::new(MsgType::XS_READ, req_id, 0, body.len() as u32);
            self.inbox.lock().push_back(Message {
                header,
                payload: body.to_vec(),
            });
            self.arrived.notify_all();
        }

        fn wait_sent(&self, n: usize) -> Vec<u32> {
            for _ in 0..5000 {
                let sent = self.sent.lock().clone();
                if sent.len() >= n {
                    return sent;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("requests were not sent");
        }
    }

    impl Transport for Arc<GatedDouble> {
        fn send(&self, msg: &[u8]) -> Result<(), Errno> {
            let h = Header::parse(msg.first_chunk::<HEADER_LEN>().unwrap()).unwrap();
            self.sent.lock().push(h.req_id);
            Ok(())
        }

        fn recv(&self, _interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
            let mut q = self.inbox.lock();
            loop {
                if let Some(m) = q.pop_front() {
                    return Ok(Some(m));
                }
                self.arrived.wait(&mut q);
            }
        }

        fn pending(&self) -> bool {
            !self.inbox.lock().is_empty()
        }

        fn readable_fd(&self) -> RawFd {
            -1
        }

        fn multiplexes(&self) -> bool {
            true
        }

        fn shutdown(&self) {}
    }

    /// The connection dies while a reply is still unread: its requester gives up, and the
    /// reply, read afterwards, must not be handed to the one request still waiting (it once
    /// was: "the only outstanding request owns whatever reply comes").
    #[test]
    fn a_reply_read_after_death_reaches_nobody() {
        let double = Arc::new(GatedDouble::default());
        let conn = Arc::new(Conn::new(Box::new(Arc::clone(&double))));
        let spawn = |path: &'static [u8]| {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || conn.request(MsgType::XS_READ, 0, &[path]))
        };
        // The first requester becomes the reader and waits in recv; the second waits for it.
        let reader = spawn(b"/a\0");
        double.wait_sent(1);
        let other = spawn(b"/b\0");
        let ids = double.wait_sent(2);
        std::thread::sleep(Duration::from_millis(20));
        conn.abandon(Errno(libc::EIO));
        assert_eq!(other.join().unwrap(), Err(Errno(libc::EIO)));
        // The second request's reply was already on its way.
        double.deliver(ids[1], b"b's value");
        let got = reader.join().unwrap();
        assert_eq!(
            got.map(|m| m.payload),
            Err(Errno(libc::EIO)),
            "another request's reply was handed over"
        );
    }
}
