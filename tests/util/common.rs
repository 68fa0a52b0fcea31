//! Helpers shared by the daemon's integration tests: starting our `xenstored` on a private
//! socket, and a raw wire-protocol client.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xenstore::wire::{encode, Header, MsgType, HEADER_LEN};

pub use super::TempDir;

/// Our daemon, running on a socket in a temporary directory; stopped (SIGTERM, then SIGKILL)
/// on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub dir: TempDir,
}

pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_xenstored")
}

/// Waits until something accepts on `path`.
pub fn wait_for_socket(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if UnixStream::connect(path).is_ok() {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("xenstored exited during start-up: {st}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("xenstored did not listen on {} in time", path.display());
}

impl Daemon {
    pub fn start(tag: &str) -> Daemon {
        Daemon::start_with(tag, &[])
    }

    pub fn start_with(tag: &str, args: &[&str]) -> Daemon {
        let dir = TempDir::new(tag);
        let socket = dir.0.join("socket");
        let mut cmd = Command::new(daemon_bin());
        // -N: in the foreground, so that the child is the daemon.
        cmd.arg("-N").args(args).env("XENSTORED_PATH", &socket);
        Daemon::spawn(cmd, socket, dir)
    }

    /// Starts `cmd` (a xenstored command line, environment set by the caller) and waits until
    /// it serves `socket`. From here on the daemon is stopped when the `Daemon` is dropped,
    /// so a failing test never leaves one running (it would hold the test's output open).
    pub fn spawn(mut cmd: Command, socket: PathBuf, dir: TempDir) -> Daemon {
        // stderr is inherited unless the caller chose otherwise.
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn xenstored");
        let mut d = Daemon {
            child: Some(child),
            socket,
            dir,
        };
        wait_for_socket(&d.socket, d.child.as_mut().unwrap());
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Resident memory of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill() with a pid we spawned and still own (not yet reaped).
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "daemon did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn is(&self, ty: MsgType) -> bool {
        self.ty == ty as u32
    }
}

/// A raw protocol client.
pub struct Client {
    pub sock: UnixStream,
    next_req: u32,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let sock = UnixStream::connect(path).expect("connect to xenstored");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client { sock, next_req: 1 }
    }

    pub fn send(&mut self, ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) {
        self.sock
            .write_all(&encode(ty, req_id, tx_id, payload))
            .unwrap();
    }

    pub fn recv(&mut self) -> io::Result<Msg> {
        let mut h = [0u8; HEADER_LEN];
        self.sock.read_exact(&mut h)?;
        let h = Header::parse(&h).expect("reply within the payload limit");
        let mut payload = vec![0; h.len as usize];
        self.sock.read_exact(&mut payload)?;
        Ok(Msg {
            ty: h.ty,
            req_id: h.req_id,
            tx_id: h.tx_id,
            payload,
        })
    }

    /// Sends one request and returns its reply, collecting any watch events that arrive
    /// first into `events`.
    pub fn request_ev(
        &mut self,
        ty: MsgType,
        tx: u32,
        payload: &[u8],
        events: &mut Vec<Msg>,
    ) -> Msg {
        let id = self.next_req;
        self.next_req += 1;
        self.send(ty, id, tx, payload);
        loop {
            let m = self.recv().expect("reply");
            if m.is(MsgType::XS_WATCH_EVENT) {
                events.push(m);
                continue;
            }
            assert_eq!(m.req_id, id, "reply out of order");
            return m;
        }
    }

    /// Sends one request and returns its reply (watch events arriving first are dropped).
    pub fn request(&mut self, ty: MsgType, tx: u32, payload: &[u8]) -> Msg {
        self.request_ev(ty, tx, payload, &mut Vec::new())
    }

    /// The reply payload of a request that must succeed.
    pub fn ok(&mut self, ty: MsgType, tx: u32, payload: &[u8]) -> Vec<u8> {
        let m = self.request(ty, tx, payload);
        assert!(
            m.is(ty),
            "{:?} {:?} failed: {:?}",
            ty,
            String::from_utf8_lossy(payload),
            String::from_utf8_lossy(&m.payload)
        );
        m.payload
    }

    pub fn write(&mut self, path: &str, value: &[u8]) {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value);
        self.ok(MsgType::XS_WRITE, 0, &p);
    }

    /// The value at `path`, or the error name.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let m = self.request(MsgType::XS_READ, 0, &z(path));
        if m.is(MsgType::XS_ERROR) {
            Err(String::from_utf8_lossy(m.payload.strip_suffix(b"\0").unwrap_or(&m.payload)).into())
        } else {
            Ok(m.payload)
        }
    }

    /// Whether the daemon closed the connection (reads end-of-stream within `within`).
    pub fn is_closed(&mut self, within: Duration) -> bool {
        self.sock.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 64];
        let r = loop {
            match self.sock.read(&mut b) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        self.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        r
    }
}

/// A NUL-terminated string payload.
pub fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Joined NUL-terminated strings.
pub fn zz(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| z(p)).collect()
}
