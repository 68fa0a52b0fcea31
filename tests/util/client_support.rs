//! Test doubles for the client tests: a wire-protocol server on a Unix socket in a temp dir,
//! driven either by a small in-memory store (`MiniStore`) or by a test's own script.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xenstore::wire::{Header, MsgType, HEADER_LEN};

pub use xenstore::client::Handle;
pub use xenstore::ffi;

pub use super::TempDir;

/// One received message.
#[derive(Debug, Clone)]
pub struct Req {
    pub hdr: Header,
    pub body: Vec<u8>,
}

impl Req {
    pub fn ty(&self) -> Option<MsgType> {
        MsgType::from_u32(self.hdr.ty)
    }
    /// The payload's NUL-terminated strings.
    pub fn strings(&self) -> Vec<String> {
        xenstore::wire::split_strings(&self.body)
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }
}

/// The server's side of one connection (a socket or a pty master).
pub struct Peer<S: Read + Write> {
    pub s: S,
}

impl<S: Read + Write> Peer<S> {
    /// The next message, or None at end of stream.
    pub fn recv(&mut self) -> Option<Req> {
        let mut h = [0u8; HEADER_LEN];
        self.s.read_exact(&mut h).ok()?;
        let hdr = Header::parse(&h).ok()?;
        let mut body = vec![0u8; hdr.len as usize];
        self.s.read_exact(&mut body).ok()?;
        Some(Req { hdr, body })
    }

    pub fn send_raw(&mut self, ty: u32, req_id: u32, tx_id: u32, body: &[u8]) {
        let h = Header {
            ty,
            req_id,
            tx_id,
            len: body.len() as u32,
        };
        let mut m = h.to_bytes().to_vec();
        m.extend_from_slice(body);
        let _ = self.s.write_all(&m);
    }

    pub fn reply(&mut self, req: &Req, body: &[u8]) {
        self.send_raw(req.hdr.ty, req.hdr.req_id, req.hdr.tx_id, body);
    }

    pub fn error(&mut self, req: &Req, name: &str) {
        let mut b = name.as_bytes().to_vec();
        b.push(0);
        self.send_raw(MsgType::XS_ERROR as u32, req.hdr.req_id, req.hdr.tx_id, &b);
    }

    pub fn event(&mut self, path: &str, token: &str) {
        let b = format!("{path}\0{token}\0");
        self.send_raw(MsgType::XS_WATCH_EVENT as u32, 0, 0, b.as_bytes());
    }
}

/// A Unix-socket server in a temp dir; each connection is served by `script` on a thread.
pub struct Server {
    pub path: PathBuf,
    _dir: TempDir,
    accept: Option<JoinHandle<()>>,
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn start<F>(script: F) -> Server
    where
        F: Fn(Peer<UnixStream>) + Send + Sync + 'static,
    {
        let dir = TempDir::new("srv");
        let path = dir.0.join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        let script = Arc::new(script);
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { break };
                count.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                std::thread::spawn(move || script(Peer { s }));
            }
        });
        Server {
            path,
            _dir: dir,
            accept: Some(accept),
            connections,
        }
    }

    /// A handle connected to this server through the safe API.
    pub fn handle(&self, flags: u64) -> Handle {
        Handle::open_path(&self.path.clone().into_os_string(), flags).unwrap()
    }

    /// A handle connected to this server, as C sees it.
    pub fn c_handle(&self, flags: u64) -> *mut ffi::xs_handle {
        ffi::into_raw(self.handle(flags))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The accept thread is left blocked in accept(); the socket file goes with the dir.
        drop(self.accept.take());
    }
}

/// A tiny store: a tree of values with watches, enough to exercise every client call.
#[derive(Default)]
pub struct MiniState {
    pub nodes: BTreeMap<String, Vec<u8>>,
    pub watches: Vec<(usize, String, String)>,
    pub writers: HashMap<usize, Arc<Mutex<UnixStream>>>,
    pub log: Vec<Req>,
    pub features: u32,
    next_conn: usize,
    next_tx: u32,
}

#[derive(Clone, Default)]
pub struct MiniStore {
    pub state: Arc<Mutex<MiniState>>,
}

fn is_subpath(parent: &str, child: &str) -> bool {
    child.starts_with(parent)
        && (child.len() == parent.len() || child.as_bytes()[parent.len()] == b'/')
}

fn frame(ty: u32, req_id: u32, tx_id: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Header {
        ty,
        req_id,
        tx_id,
        len: body.len() as u32,
    }
    .to_bytes()
    .to_vec();
    m.extend_from_slice(body);
    m
}

impl MiniStore {
    pub fn new() -> MiniStore {
        let s = MiniStore::default();
        s.state.lock().unwrap().nodes.insert("/".into(), vec![]);
        s.state.lock().unwrap().features = 4;
        s
    }

    pub fn serve(&self) -> Server {
        let store = self.clone();
        Server::start(move |peer| store.run(peer.s))
    }

    /// Requests received so far (all connections).
    pub fn log(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    fn fire(st: &MiniState, path: &str) {
        for (conn, wpath, token) in &st.watches {
            if is_subpath(wpath, path) {
                if let Some(w) = st.writers.get(conn) {
                    let body = format!("{path}\0{token}\0");
                    let _ = w.lock().unwrap().write_all(&frame(
                        MsgType::XS_WATCH_EVENT as u32,
                        0,
                        0,
                        body.as_bytes(),
                    ));
                }
            }
        }
    }

    pub fn run(&self, s: UnixStream) {
        let w = Arc::new(Mutex::new(s.try_clone().unwrap()));
        let id = {
            let mut st = self.state.lock().unwrap();
            st.next_conn += 1;
            let id = st.next_conn;
            st.writers.insert(id, w.clone());
            id
        };
        let mut peer = Peer { s };
        while let Some(req) = peer.recv() {
            let mut st = self.state.lock().unwrap();
            st.log.push(req.clone());
            let strs = req.strings();
            let arg = |i: usize| strs.get(i).cloned().unwrap_or_default();
            let ok = b"OK\0".to_vec();
            let (ty, body): (u32, Vec<u8>) = match req.ty() {
                Some(MsgType::XS_READ) => match st.nodes.get(&arg(0)) {
                    Some(v) => (req.hdr.ty, v.clone()),
                    None => (MsgType::XS_ERROR as u32, b"ENOENT\0".to_vec()),
                },
                Some(MsgType::XS_WRITE) => {
                    let p = arg(0);
                    let v = req.body[p.len() + 1..].to_vec();
                    st.nodes.insert(p.clone(), v);
                    Self::fire(&st, &p);
                    (req.hdr.ty, ok)
                }
                Some(MsgType::XS_MKDIR) => {
                    let p = arg(0);
                    st.nodes.entry(p.clone()).or_default();
                    Self::fire(&st, &p);
                    (req.hdr.ty, ok)
                }
                Some(MsgType::XS_RM) => {
                    let p = arg(0);
                    if st.nodes.contains_key(&p) {
                        st.nodes.retain(|k, _| !is_subpath(&p, k));
                        Self::fire(&st, &p);
                        (req.hdr.ty, ok)
                    } else {
                        (MsgType::XS_ERROR as u32, b"ENOENT\0".to_vec())
                    }
                }
                Some(MsgType::XS_DIRECTORY) => {
                    let p = arg(0);
                    if !st.nodes.contains_key(&p) {
                        (MsgType::XS_ERROR as u32, b"ENOENT\0".to_vec())
                    } else {
                        let prefix = if p == "/" {
                            "/".to_string()
                        } else {
                            format!("{p}/")
                        };
                        let mut out = Vec::new();
                        for k in st.nodes.keys() {
                            if let Some(rest) = k.strip_prefix(&prefix) {
                                if !rest.is_empty() && !rest.contains('/') {
                                    out.extend_from_slice(rest.as_bytes());
                                    out.push(0);
                                }
                            }
                        }
                        (req.hdr.ty, out)
                    }
                }
                Some(MsgType::XS_GET_PERMS) => {
                    if st.nodes.contains_key(&arg(0)) {
                        (req.hdr.ty, b"n0\0r5\0".to_vec())
                    } else {
                        (MsgType::XS_ERROR as u32, b"ENOENT\0".to_vec())
                    }
                }
                Some(MsgType::XS_WATCH) => {
                    st.watches.push((id, arg(0), arg(1)));
                    (req.hdr.ty, ok)
                }
                Some(MsgType::XS_UNWATCH) => {
                    let before = st.watches.len();
                    let (p, t) = (arg(0), arg(1));
                    st.watches
                        .retain(|(c, wp, wt)| !(*c == id && *wp == p && *wt == t));
                    if st.watches.len() == before {
                        (MsgType::XS_ERROR as u32, b"ENOENT\0".to_vec())
                    } else {
                        (req.hdr.ty, ok)
                    }
                }
                Some(MsgType::XS_TRANSACTION_START) => {
                    st.next_tx += 1;
                    (req.hdr.ty, format!("{}\0", st.next_tx).into_bytes())
                }
                Some(MsgType::XS_GET_DOMAIN_PATH) => (
                    req.hdr.ty,
                    format!("/local/domain/{}\0", arg(0)).into_bytes(),
                ),
                Some(MsgType::XS_IS_DOMAIN_INTRODUCED) => (
                    req.hdr.ty,
                    if arg(0) == "0" {
                        b"T\0".to_vec()
                    } else {
                        b"F\0".to_vec()
                    },
                ),
                Some(MsgType::XS_GET_FEATURE) if req.body.is_empty() => {
                    (req.hdr.ty, format!("{}\0", st.features).into_bytes())
                }
                Some(MsgType::XS_GET_FEATURE) => (req.hdr.ty, b"3\0".to_vec()),
                Some(MsgType::XS_GET_QUOTA) if req.body.is_empty() => {
                    (req.hdr.ty, b"nodes watches transactions\0".to_vec())
                }
                Some(MsgType::XS_GET_QUOTA) => (req.hdr.ty, b"1000\0".to_vec()),
                Some(MsgType::XS_CONTROL) => (req.hdr.ty, format!("ctl:{}", arg(0)).into_bytes()),
                Some(
                    MsgType::XS_SET_PERMS
                    | MsgType::XS_TRANSACTION_END
                    | MsgType::XS_INTRODUCE
                    | MsgType::XS_RELEASE
                    | MsgType::XS_RESUME
                    | MsgType::XS_SET_TARGET
                    | MsgType::XS_SET_FEATURE
                    | MsgType::XS_SET_QUOTA,
                ) => (req.hdr.ty, ok),
                _ => (MsgType::XS_ERROR as u32, b"ENOSYS\0".to_vec()),
            };
            let is_watch = req.ty() == Some(MsgType::XS_WATCH);
            {
                let mut w = w.lock().unwrap();
                let _ = w.write_all(&frame(ty, req.hdr.req_id, req.hdr.tx_id, &body));
                if is_watch {
                    // As real daemons do: the watch fires once right after it is set.
                    let ev = format!("{}\0{}\0", arg(0), arg(1));
                    let _ =
                        w.write_all(&frame(MsgType::XS_WATCH_EVENT as u32, 0, 0, ev.as_bytes()));
                }
            }
        }
        let mut st = self.state.lock().unwrap();
        st.writers.remove(&id);
        st.watches.retain(|(c, _, _)| *c != id);
    }
}

/// errno after a failed C call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() = e };
}

/// The strings of a string array the library returned (xs_directory, xs_read_watch,
/// xs_check_watch, xs_get_quota_names: `n` pointers and the strings in one malloc'd block), or
/// None for NULL; frees the block.
///
/// # Safety
/// `block` is NULL or such an array of `n` NUL-terminated strings, handed over by the library
/// and not used afterwards.
pub unsafe fn take_strings(block: *mut *mut std::ffi::c_char, n: u32) -> Option<Vec<String>> {
    if block.is_null() {
        return None;
    }
    let v = (0..n as usize)
        .map(|i| {
            // SAFETY: i < n, so `block.add(i)` is one of the array's pointers, each to a
            // NUL-terminated string in the same live block (the caller's contract).
            let s = unsafe { std::ffi::CStr::from_ptr(*block.add(i)) };
            s.to_string_lossy().into_owned()
        })
        .collect();
    // SAFETY: the block came from the library's malloc and nothing points into it any more.
    unsafe { libc::free(block.cast()) };
    Some(v)
}

/// A C string literal helper.
pub fn c(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// Whether `fd` polls readable within `ms`.
pub fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one pollfd on this stack frame, as the count says; poll only writes revents.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs`.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("operation hung")
}

pub fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not reached in 5s");
}

pub fn path_of(p: &Path) -> std::ffi::OsString {
    p.as_os_str().to_owned()
}
