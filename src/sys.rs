//! The Linux calls std does not wrap, each wrapped once for the whole crate: epoll, eventfd,
//! signalfd, poll, pipes, fork and setsid, sockets (connecting, peeking, sending without SIGPIPE), plain reads
//! and writes on raw descriptors, the signal mask and the open-file limit. Epoll, eventfd and
//! signalfd descriptors have a type of their own that owns them (closed on drop); failures are
//! `io::Error` (the client turns them into its errno values with `?`).

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns a `-1` return into the thread's errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// As [`cvt`], for calls returning a byte count.
fn cvt_size(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Repeats `call` while it fails with EINTR.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: the kernel just handed us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// An epoll instance. Registration and waiting take `&self`: one thread may wait while others
/// change what it waits for.
pub struct Epoll {
    fd: OwnedFd,
}

/// Most readiness reports taken per wait (the rest stay queued in the kernel for the next).
const EPOLL_BATCH: usize = 256;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; the kernel copies
        // it and keeps no pointer.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Registers `fd` for `events`; `token` comes back with its readiness. A descriptor
    /// that is not open merely fails (EBADF).
    pub fn add(&self, fd: impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    pub fn modify(&self, fd: impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Waits up to `timeout_ms` (-1: forever) and appends what is ready to `out`.
    /// An interrupted wait returns no events rather than an error.
    pub fn wait(&self, timeout_ms: i32, out: &mut Vec<Ready>) -> io::Result<()> {
        // Not zeroed: the kernel writes the entries it reports, and only those are read. (A
        // zeroed one costs a 3 KiB memset per wait, in each of a process's watch threads.)
        let mut buf = [const { MaybeUninit::<libc::epoll_event>::uninit() }; EPOLL_BATCH];
        // SAFETY: the buffer has room for `EPOLL_BATCH` epoll_events and the kernel writes at
        // most that many.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                EPOLL_BATCH as libc::c_int,
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
        for ev in &buf[..n as usize] {
            // SAFETY: epoll_wait wrote the first `n` entries.
            let ev = unsafe { ev.assume_init_ref() };
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

    /// Rings the bell. Never blocks; a saturated counter (EAGAIN) is already ringing.
    pub fn ring(&self) {
        let _ = write(self.fd.as_raw_fd(), &1u64.to_ne_bytes());
    }

    /// Silences the bell; returns whether it had rung.
    pub fn drain(&self) -> bool {
        let mut v = [0u8; 8];
        matches!(read(self.fd.as_raw_fd(), &mut v), Ok(8))
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A signalfd for some signals; creating it blocks their default action in the calling
/// thread (call it before spawning threads so they inherit the mask).
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub fn new(signals: &[libc::c_int]) -> io::Result<SignalFd> {
        // SAFETY: `set` is a local sigset_t initialised by sigemptyset before any other use;
        // the calls only read/write it and the thread's signal mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in signals {
                libc::sigaddset(&mut set, sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let raw = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(raw),
            })
        }
    }

    /// SIGTERM and SIGINT: what stops the daemon.
    pub fn terminate() -> io::Result<SignalFd> {
        SignalFd::new(&[libc::SIGTERM, libc::SIGINT])
    }

    /// Takes the signals that arrived; how many.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while read(self.fd.as_raw_fd(), &mut info).is_ok_and(|k| k == info.len()) {
            n += 1;
        }
        n
    }
}

impl AsFd for SignalFd {
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
        send(
            self.0.as_raw_fd(),
            buf,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
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

/// Sets or clears close-on-exec on `fd` (a live update keeps its sockets across exec).
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD take and return plain integers; a bad fd is EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = match on {
        true => flags | libc::FD_CLOEXEC,
        false => flags & !libc::FD_CLOEXEC,
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
}

/// If `fd` is an open Unix stream socket: whether it is listening. `None` for anything else
/// (closed, a file, another kind of socket).
pub fn unix_stream_socket(fd: RawFd) -> Option<bool> {
    let opt = |name| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: passes a live c_int and its size; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    if opt(libc::SO_DOMAIN)? != libc::AF_UNIX || opt(libc::SO_TYPE)? != libc::SOCK_STREAM {
        return None;
    }
    Some(opt(libc::SO_ACCEPTCONN)? != 0)
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
pub fn recv(fd: impl AsRawFd, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: `buf` is a live, writable slice; the kernel writes at most `buf.len()` bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    cvt_size(n)
}

/// [`recv`] taking the bytes, EINTR retried: Ok(None) when nothing is there; Ok(Some(0)) is
/// end of stream.
pub fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match recv(fd, buf, false) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// One send(2) with `flags`.
fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice for the duration of the call; the kernel only reads
    // `buf.len()` bytes from it.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
    cvt_size(n)
}

/// One blocking send with MSG_NOSIGNAL, so a vanished peer gives EPIPE instead of SIGPIPE;
/// EINTR is retried. ENOTSOCK becomes EBADF: the descriptor is then /dev/null, put there by
/// [`replace_with_dev_null`], where the C library's `write` gets EBADF.
pub fn send_nosignal(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    retry(|| send(fd, buf, libc::MSG_NOSIGNAL)).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTSOCK) => io::Error::from_raw_os_error(libc::EBADF),
        _ => e,
    })
}

/// Puts /dev/null behind `fd` (same descriptor number, the old file closed), as
/// libxentoolcore's restriction of a handle expects.
pub fn replace_with_dev_null(fd: RawFd) -> io::Result<()> {
    // SAFETY: the path is NUL-terminated.
    let null =
        owned(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: both are open descriptors; dup3 replaces `fd` atomically, keeping its number.
    cvt(unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) })?;
    Ok(())
}

/// Forks the process: the child's pid in the parent, `None` in the child. The caller must be
/// single-threaded (only the calling thread goes on in the child).
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: fork has no memory-safety preconditions; the caller guarantees no other thread
    // exists whose locks the child could inherit held.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok((pid != 0).then_some(pid))
}

/// Starts a new session, leaving the controlling terminal behind.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments, no memory involved.
    cvt(unsafe { libc::setsid() })?;
    Ok(())
}

/// The address of a symbol already loaded in the process, if any (dlsym RTLD_DEFAULT).
pub fn find_symbol(name: &CStr) -> Option<*mut libc::c_void> {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the loaded objects.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
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

/// What `stat` says a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Socket,
    Other,
}

pub fn path_kind(path: &CStr) -> io::Result<PathKind> {
    // SAFETY: an all-zero `struct stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable struct stat.
    cvt(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        PathKind::Socket
    } else {
        PathKind::Other
    })
}

/// Whether a path exists (access F_OK).
pub fn exists(path: &CStr) -> bool {
    // SAFETY: `path` is NUL-terminated.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

/// A close-on-exec stream socket connected to the Unix socket at `path`.
pub fn connect_unix(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation, no pointers.
    let sock =
        owned(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: an all-zero sockaddr_un is valid (family set below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.to_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    retry(|| {
        // SAFETY: `addr` is an initialised sockaddr_un and the length is its size.
        cvt(unsafe {
            libc::connect(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        })
    })?;
    Ok(sock)
}

/// Opens a device (or any file) read-write, close-on-exec. O_NOCTTY keeps a terminal standing in
/// for the device from becoming our controlling terminal.
pub fn open_rdwr(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated.
    owned(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    })
}

/// One `read`; Ok(0) is end of file. EINTR is retried.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    retry(|| cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }))
}

/// One `write`; EINTR is retried.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    retry(|| cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }))
}

/// Tells the peer we are gone (both directions); errors are irrelevant here.
pub fn shutdown(fd: RawFd) {
    // SAFETY: no pointers; a bad descriptor merely fails.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Readiness of the descriptors given to [`poll`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polled {
    /// Readable, hung up or in error: a read will not block.
    pub first: bool,
    pub second: bool,
}

/// Waits until `first` or `second` (if any) polls readable, hung up or in error; `timeout_ms`
/// as poll(2) (-1: forever). EINTR is retried.
pub fn poll(first: RawFd, second: Option<RawFd>, timeout_ms: i32) -> io::Result<Polled> {
    let mut fds = [
        libc::pollfd {
            fd: first,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: second.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if second.is_some() { 2 } else { 1 };
    // SAFETY: `fds` holds `n` initialised pollfd entries.
    retry(|| cvt(unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) }))?;
    let hit = |p: &libc::pollfd| p.revents != 0;
    if fds[0].revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(Polled {
        first: hit(&fds[0]),
        second: n == 2 && hit(&fds[1]),
    })
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs `f` with every signal blocked in the calling thread, so that threads it creates start
/// with all signals blocked (signals are then delivered to the application's own threads).
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the mask saved below.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }
    // SAFETY: sigset_t values are plain data; sigfillset and pthread_sigmask only write to the
    // sets we pass.
    let _restore = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        Restore(old)
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_rings_and_epoll_sees_it() {
        let ep = Epoll::new().unwrap();
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
