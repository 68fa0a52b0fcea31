//! The Linux calls std does not wrap, each wrapped once for the whole crate: epoll, eventfd,
//! signalfd, socket peeking and sending without SIGPIPE, the open-file limit. Each descriptor
//! has a type of its own that owns it (closed on drop); failures are `io::Error`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns a `-1` return into the thread's errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Interest / readiness bits, as epoll spells them.
pub const READABLE: u32 = libc::EPOLLIN as u32;
pub const WRITABLE: u32 = libc::EPOLLOUT as u32;
pub const HANGUP: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// The peer shut down its sending side (reported with the data still to read).
pub const PEER_SHUT: u32 = libc::EPOLLRDHUP as u32;

/// Edge-triggered registration (reported when the state changes, not while it lasts).
pub const EDGE: u32 = libc::EPOLLET as u32;

/// One readiness report: the token given at registration and the ready bits.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub token: u64,
    pub events: u32,
}

/// A level-triggered epoll instance.
pub struct Epoll {
    fd: OwnedFd,
    buf: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        Ok(Epoll {
            fd,
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; the kernel copies
        // it and keeps no pointer.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Waits up to `timeout_ms` (-1: forever) and appends what is ready to `out`.
    /// An interrupted wait returns no events rather than an error.
    pub fn wait(&mut self, timeout_ms: i32, out: &mut Vec<Ready>) -> io::Result<()> {
        // SAFETY: the buffer holds `buf.len()` initialised epoll_events and the kernel writes
        // at most that many.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                self.buf.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for ev in &self.buf[..n as usize] {
            out.push(Ready {
                token: ev.u64,
                events: ev.events,
            });
        }
        Ok(())
    }
}

/// A non-blocking eventfd used as a doorbell between threads.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: no pointers; a non-negative result is a new descriptor we now own.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `raw` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Rings the bell. Never blocks; a saturated counter is already ringing.
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64, as eventfd requires.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Silences the bell; returns whether it had rung.
    #[cfg(test)]
    pub fn drain(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        n == 8
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A signalfd for SIGTERM and SIGINT; creating it blocks their default action in the calling
/// thread (call it before spawning threads so they inherit the mask).
pub struct TermSignals {
    fd: OwnedFd,
}

impl TermSignals {
    pub fn new() -> io::Result<TermSignals> {
        // SAFETY: `set` is a local sigset_t initialised by sigemptyset before any other use;
        // the calls only read/write it and the thread's signal mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let raw = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            Ok(TermSignals {
                fd: OwnedFd::from_raw_fd(raw),
            })
        }
    }
}

impl AsFd for TermSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A `Write` over a stream socket that never raises SIGPIPE (the host process of an embedded
/// server may not ignore it) and never blocks, sending gathered buffers with one call.
pub struct NoSigPipe<'a>(pub BorrowedFd<'a>);

impl io::Write for NoSigPipe<'_> {
    /// One buffer: plain send(2), which spares the kernel copying in a message header and
    /// an iovec array (most writes are a single reply or event).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live slice for the duration of the call; the kernel only reads
        // `buf.len()` bytes from it.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with struct iovec on Unix.
        mh.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        mh.msg_iovlen = bufs.len().min(1024) as _;
        // SAFETY: `mh` points at `bufs`, which outlives the call; the kernel only reads them.
        let n = unsafe {
            libc::sendmsg(
                self.0.as_raw_fd(),
                &mh,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Makes `MSG_PEEK` reads of a stream socket start where the previous peek ended (and
/// ordinary reads move that point back), so bytes can be looked at now and taken off the
/// socket later.
pub fn enable_peek_offset(fd: BorrowedFd<'_>) -> io::Result<()> {
    let off: libc::c_int = 0;
    // SAFETY: passes a pointer to a live c_int and its size; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A non-blocking recv(2), peeking (leaving the bytes in the socket) or taking them.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: `buf` is a live, writable slice; the kernel writes at most `buf.len()` bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Raises the soft open-file limit to the hard limit, so that thousands of clients fit.
/// Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the kernel fills in / reads.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above; only reads `lim`.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Ok(lim.rlim_cur as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_rings_and_epoll_sees_it() {
        let mut ep = Epoll::new().unwrap();
        let bell = EventFd::new().unwrap();
        ep.add(bell.as_fd(), READABLE, 42).unwrap();
        let mut out = Vec::new();
        ep.wait(0, &mut out).unwrap();
        assert!(out.is_empty());
        bell.ring();
        bell.ring();
        ep.wait(1000, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 42);
        assert!(bell.drain());
        assert!(!bell.drain());
        out.clear();
        ep.wait(0, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn nosigpipe_reports_epipe_instead_of_killing() {
        use std::io::Write;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut w = NoSigPipe(a.as_fd());
        assert_eq!(
            w.write_vectored(&[io::IoSlice::new(b"ab"), io::IoSlice::new(b"c")])
                .unwrap(),
            3
        );
        drop(b);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn peeked_bytes_stay_until_taken() {
        use std::io::Write;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        enable_peek_offset(b.as_fd()).unwrap();
        a.write_all(b"hello").unwrap();
        a.write_all(b"world").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(recv(b.as_fd(), &mut buf[..3], true).unwrap(), 3);
        assert_eq!(&buf[..3], b"hel");
        // The next peek continues after the first.
        let n = recv(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..n], b"loworld");
        let e = recv(b.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Taking bytes takes them from the front.
        assert_eq!(recv(b.as_fd(), &mut buf[..4], false).unwrap(), 4);
        assert_eq!(&buf[..4], b"hell");
        a.write_all(b"!").unwrap();
        assert_eq!(recv(b.as_fd(), &mut buf, true).unwrap(), 1);
        assert_eq!(buf[0], b'!');
        drop(a);
        assert_eq!(
            recv(b.as_fd(), &mut buf, true).unwrap(),
            0,
            "end of stream once all is peeked"
        );
        let n = recv(b.as_fd(), &mut buf, false).unwrap();
        assert_eq!(&buf[..n], b"oworld!");
    }

    #[test]
    fn fd_limit_is_at_least_the_old_soft_limit() {
        assert!(raise_fd_limit().unwrap() >= 64);
    }
}
