//! The `Transport` trait with an in-process double, shaped like an embedded store: requests
//! are answered synchronously inside `send`, in the caller's thread, and events arrive from
//! other threads at any time. Checks that replies need no thread hop and events still flow.

mod util;
use util::client_support;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use client_support::*;
use xenstore::client::{Errno, Message, Transport};
use xenstore::wire::{Header, MsgType};

#[derive(Default)]
struct Shared {
    queue: VecDeque<Message>,
    /// Threads that answered a request and that took a reply off the queue.
    answered_in: Vec<ThreadId>,
    received_in: Vec<ThreadId>,
}

/// An in-process "store": `send` answers on the spot; `inject` queues an event from anywhere.
/// `doorbell` is an eventfd kept readable exactly while the queue is non-empty.
struct InProcess {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    doorbell: RawFd,
}

impl InProcess {
    fn new() -> InProcess {
        // SAFETY: no pointers; the descriptor returned is owned by the InProcess built here.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        InProcess {
            shared: Default::default(),
            doorbell: fd,
        }
    }

    fn push(shared: &(Mutex<Shared>, Condvar), doorbell: RawFd, m: Message) {
        let mut s = shared.0.lock().unwrap();
        if s.queue.is_empty() {
            let one = 1u64;
            // SAFETY: 8 bytes from a u64 on this stack, to the InProcess's eventfd, still open:
            // it is closed on drop, and every push (the injector's too) comes before the test
            // receives the message it queues, so before the handle owning the InProcess goes.
            unsafe { libc::write(doorbell, (&one as *const u64).cast(), 8) };
        }
        s.queue.push_back(m);
        shared.1.notify_all();
    }

    fn injector(&self) -> impl Fn(&str, &str) + Send + 'static {
        let (shared, fd) = (self.shared.clone(), self.doorbell);
        move |path, token| {
            let payload = format!("{path}\0{token}\0").into_bytes();
            let header = Header {
                ty: MsgType::XS_WATCH_EVENT as u32,
                req_id: 0,
                tx_id: 0,
                len: payload.len() as u32,
            };
            InProcess::push(&shared, fd, Message { header, payload });
        }
    }
}

impl Transport for InProcess {
    fn send(&self, msg: &[u8]) -> Result<(), Errno> {
        let h = Header::parse(msg[..16].try_into().unwrap()).unwrap();
        let body = &msg[16..];
        self.shared
            .0
            .lock()
            .unwrap()
            .answered_in
            .push(std::thread::current().id());
        let reply = |ty: u32, b: &[u8]| Message {
            header: Header {
                ty,
                req_id: h.req_id,
                tx_id: h.tx_id,
                len: b.len() as u32,
            },
            payload: b.to_vec(),
        };
        match MsgType::from_u32(h.ty) {
            Some(MsgType::XS_READ) => {
                let mut v = b"in-process:".to_vec();
                v.extend_from_slice(&body[..body.len() - 1]);
                InProcess::push(&self.shared, self.doorbell, reply(h.ty, &v));
            }
            Some(MsgType::XS_WATCH) => {
                InProcess::push(&self.shared, self.doorbell, reply(h.ty, b"OK\0"));
                let parts = xenstore::wire::split_strings(body);
                let ev = [parts[0], b"\0", parts[1], b"\0"].concat();
                let header = Header {
                    ty: MsgType::XS_WATCH_EVENT as u32,
                    req_id: 0,
                    tx_id: 0,
                    len: ev.len() as u32,
                };
                InProcess::push(
                    &self.shared,
                    self.doorbell,
                    Message {
                        header,
                        payload: ev,
                    },
                );
            }
            _ => InProcess::push(
                &self.shared,
                self.doorbell,
                reply(MsgType::XS_ERROR as u32, b"ENOSYS\0"),
            ),
        }
        Ok(())
    }

    fn recv(&self, interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
        let mut s = self.shared.0.lock().unwrap();
        loop {
            if let Some(m) = s.queue.pop_front() {
                if s.queue.is_empty() {
                    let mut b = 0u64;
                    // SAFETY: 8 bytes into a u64 on this stack, from our own open eventfd.
                    unsafe { libc::read(self.doorbell, (&mut b as *mut u64).cast(), 8) };
                }
                s.received_in.push(std::thread::current().id());
                return Ok(Some(m));
            }
            if let Some(stop) = interrupt {
                // Messages are always whole here, so the watch thread only calls recv when one
                // is queued; still honour the contract.
                drop(s);
                if readable(stop, 10) {
                    return Ok(None);
                }
                s = self.shared.0.lock().unwrap();
                continue;
            }
            s = self.shared.1.wait(s).unwrap();
        }
    }

    fn pending(&self) -> bool {
        !self.shared.0.lock().unwrap().queue.is_empty()
    }

    fn readable_fd(&self) -> RawFd {
        self.doorbell
    }

    fn multiplexes(&self) -> bool {
        true
    }

    fn shutdown(&self) {}
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // SAFETY: the eventfd this InProcess owns, closed once.
        unsafe { libc::close(self.doorbell) };
    }
}

#[test]
fn replies_are_taken_in_the_callers_thread() {
    let t = InProcess::new();
    let shared = t.shared.clone();
    let h = Handle::with_transport(Box::new(t), 0);
    for i in 0..10 {
        let p = format!("/n{i}");
        assert_eq!(
            h.read(0, p.as_bytes()).unwrap(),
            format!("in-process:{p}").into_bytes()
        );
    }
    assert_eq!(h.mkdir(0, b"/x"), Err(Errno(libc::ENOSYS)));
    let me = std::thread::current().id();
    let s = shared.0.lock().unwrap();
    assert!(s.answered_in.iter().all(|t| *t == me));
    assert!(
        s.received_in.iter().all(|t| *t == me),
        "a reply went through another thread"
    );
    assert_eq!(s.received_in.len(), 11);
}

#[test]
fn events_from_other_threads_reach_the_watch_queue() {
    let t = InProcess::new();
    let inject = t.injector();
    let h = Arc::new(Handle::with_transport(Box::new(t), 0));
    let fd = h.fileno().unwrap();
    h.watch(b"/w", b"tok").unwrap();
    let first = within(5, {
        let h = h.clone();
        move || h.read_watch()
    })
    .unwrap();
    assert_eq!((first.path(), first.token()), (&b"/w"[..], &b"tok"[..]));

    // Events injected while nobody is asking: the watch thread moves them.
    std::thread::spawn(move || {
        for i in 0..5 {
            std::thread::sleep(Duration::from_millis(5));
            inject(&format!("/w/{i}"), "tok");
        }
    });
    for i in 0..5 {
        assert!(readable(fd, 5000));
        let ev = h
            .check_watch()
            .unwrap()
            .expect("pipe readable means an event waits");
        assert_eq!(ev.path(), format!("/w/{i}").as_bytes());
    }
    // Requests still work alongside.
    assert_eq!(h.read(0, b"/r").unwrap(), b"in-process:/r");
}
