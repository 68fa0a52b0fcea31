//! The few system calls the client makes, each wrapped so the rest of the client stays safe.
//! Every wrapper reports failure as the errno the call left behind.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::Errno;

/// The calling thread's errno.
pub fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = check(fd)?;
    // SAFETY: the kernel just handed us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `stat` says a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Socket,
    Other,
}

pub fn path_kind(path: &CStr) -> Result<PathKind, Errno> {
    // SAFETY: an all-zero `struct stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable struct stat.
    check(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
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
pub fn connect_unix(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: plain socket creation, no pointers.
    let sock =
        owned(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: an all-zero sockaddr_un is valid (family set below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.to_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(Errno(libc::EINVAL));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    loop {
        // SAFETY: `addr` is an initialised sockaddr_un and the length is its size.
        let r = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        match check(r) {
            Ok(_) => return Ok(sock),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Opens a device (or any file) read-write, close-on-exec. O_NOCTTY keeps a terminal standing in
/// for the device from becoming our controlling terminal.
pub fn open_rdwr(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `path` is NUL-terminated.
    owned(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    })
}

/// One `read`; Ok(0) is end of file. EINTR is retried.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_errno();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// One `write`; EINTR is retried.
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_errno();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// One `send` with MSG_NOSIGNAL, so a vanished peer gives EPIPE instead of SIGPIPE.
/// ENOTSOCK becomes EBADF: the descriptor is then /dev/null, put there by
/// `replace_with_dev_null`, where the C library's `write` gets EBADF.
pub fn send_nosignal(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match last_errno() {
            Errno(libc::EINTR) => {}
            Errno(libc::ENOTSOCK) => return Err(Errno(libc::EBADF)),
            e => return Err(e),
        }
    }
}

/// One `recv` that does not wait (MSG_DONTWAIT): Ok(None) when nothing is there; Ok(Some(0)) is
/// end of stream. EINTR is retried.
pub fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        match last_errno() {
            Errno(libc::EINTR) => continue,
            Errno(libc::EAGAIN) => return Ok(None),
            e => return Err(e),
        }
    }
}

/// Tells the peer we are gone (both directions); errors are irrelevant here.
pub fn shutdown(fd: RawFd) {
    // SAFETY: no pointers; a bad descriptor merely fails.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Readiness of the descriptors given to [`poll`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable, hung up or in error: a read will not block.
    pub first: bool,
    pub second: bool,
}

/// Waits until `first` or `second` (if any) polls readable, hung up or in error; `timeout_ms`
/// as poll(2) (-1: forever). EINTR is retried.
pub fn poll(first: RawFd, second: Option<RawFd>, timeout_ms: i32) -> Result<Ready, Errno> {
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
    loop {
        // SAFETY: `fds` holds `n` initialised pollfd entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            break;
        }
        let e = last_errno();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
    let hit = |p: &libc::pollfd| p.revents != 0;
    if fds[0].revents & libc::POLLNVAL != 0 {
        return Err(Errno(libc::EBADF));
    }
    Ok(Ready {
        first: hit(&fds[0]),
        second: n == 2 && hit(&fds[1]),
    })
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A non-blocking, close-on-exec eventfd used to wake a thread blocked in poll.
pub fn eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: no pointers.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
}

/// Makes an eventfd readable (adds 1 to its counter).
pub fn eventfd_signal(fd: RawFd) {
    let one = 1u64.to_ne_bytes();
    // A full counter (EAGAIN) is still readable, which is all that matters.
    let _ = write(fd, &one);
}

/// Empties an eventfd.
pub fn eventfd_drain(fd: RawFd) {
    let mut buf = [0u8; 8];
    let _ = read(fd, &mut buf);
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

/// An epoll instance (close-on-exec).
pub fn epoll_create() -> Result<OwnedFd, Errno> {
    // SAFETY: no pointers.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// Registers (`add`) or updates `fd` in `ep`, interested in readability when `readable`
/// (edge-triggered with `edge`), in nothing otherwise; `token` comes back from [`epoll_wait`].
pub fn epoll_set(
    ep: RawFd,
    fd: RawFd,
    token: u64,
    readable: bool,
    add: bool,
    edge: bool,
) -> Result<(), Errno> {
    let mut events = if readable { libc::EPOLLIN as u32 } else { 0 };
    if edge {
        events |= libc::EPOLLET as u32;
    }
    let mut ev = libc::epoll_event { events, u64: token };
    let op = if add {
        libc::EPOLL_CTL_ADD
    } else {
        libc::EPOLL_CTL_MOD
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(drop)
}

/// Waits for readiness; returns the set of tokens that are ready (hang-ups and errors count),
/// as a bit mask: bit `t` for token `t` (tokens must be below 64). EINTR is retried.
pub fn epoll_wait(ep: RawFd) -> Result<u64, Errno> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        // SAFETY: `evs` has room for the 4 events we allow.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as libc::c_int, -1) };
        if n >= 0 {
            return Ok(evs[..n as usize]
                .iter()
                .fold(0, |set, e| set | 1u64 << (e.u64 & 63)));
        }
        let e = last_errno();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// Puts /dev/null behind `fd` (same descriptor number, the old file closed), as
/// libxentoolcore's restriction of a handle expects.
pub fn replace_with_dev_null(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: the path is NUL-terminated.
    let null =
        owned(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: both are open descriptors; dup2 replaces `fd` atomically, keeping its number.
    check(unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) })?;
    Ok(())
}

/// The address of a symbol already loaded in the process, if any (dlsym RTLD_DEFAULT).
pub fn find_symbol(name: &CStr) -> Option<*mut libc::c_void> {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the loaded objects.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}
