//! Starting as Xen's scripts start xenstored: in the background by default (the command
//! returns once the daemon serves, so `launch-xenstore` and init scripts can go on at once),
//! with the readiness told to systemd when it asks (`NOTIFY_SOCKET`, as `Type=notify`).
//!
//! The parent forks before anything else is set up, then waits on a pipe: the child writes
//! one byte when it is ready (socket listening, dom0's ring served, pid file written), or an
//! error message if it could not start; the parent exits with status 0, or prints the message
//! and exits with status 1. The child starts a new session and, once ready, puts /dev/null behind its standard
//! input and output (and standard error unless asked to keep it), as a daemon must not hold
//! the terminal it was started from.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use crate::sys;

/// The child's end of the start-up pipe.
pub struct Background {
    ready: std::fs::File,
}

/// Forks. Returns in the child only; the parent exits with the child's start-up outcome. Call
/// it before any thread exists.
pub fn background() -> io::Result<Background> {
    let (rd, wr): (OwnedFd, OwnedFd) = sys::pipe_cloexec()?;
    match sys::fork()? {
        Some(_) => {
            drop(wr);
            let mut msg = Vec::new();
            let _ = std::fs::File::from(rd).read_to_end(&mut msg);
            match msg.as_slice() {
                b"+" => std::process::exit(0),
                [] => {
                    eprintln!("xenstored: the daemon exited while starting");
                    std::process::exit(1)
                }
                m => {
                    eprintln!("xenstored: {}", String::from_utf8_lossy(m));
                    std::process::exit(1)
                }
            }
        }
        None => {
            drop(rd);
            sys::setsid()?;
            Ok(Background {
                ready: std::fs::File::from(wr),
            })
        }
    }
}

impl Background {
    /// Tells the parent the daemon serves, then lets go of the terminal.
    pub fn ready(mut self, keep_stderr: bool) {
        let _ = self.ready.write_all(b"+");
        for fd in [io::stdin().as_raw_fd(), io::stdout().as_raw_fd()] {
            let _ = sys::replace_with_dev_null(fd);
        }
        if !keep_stderr {
            let _ = sys::replace_with_dev_null(io::stderr().as_raw_fd());
        }
    }

    /// Tells the parent why the daemon could not start (it prints it and exits 1).
    pub fn failed(mut self, msg: &str) {
        let _ = self.ready.write_all(msg.as_bytes());
    }
}

/// Tells systemd the daemon is ready, if it asked (`NOTIFY_SOCKET`; a name starting with '@'
/// is in the abstract namespace).
pub fn notify_systemd() -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => notify_at(&path),
        None => Ok(()),
    }
}

fn notify_at(path: &std::ffi::OsStr) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(b"READY=1", &addr)?;
    } else {
        sock.send_to(b"READY=1", path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_is_told_when_it_asks() {
        let dir = std::env::temp_dir().join(format!("xs-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir).unwrap();
        notify_at(dir.as_os_str()).unwrap();
        let mut buf = [0u8; 32];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_file(&dir);
    }
}
