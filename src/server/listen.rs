//! Claiming the daemon's socket path.
//!
//! A path where another daemon answers is refused; a socket file nobody answers on (left by a
//! daemon that died) is replaced; anything else at the path is refused rather than deleted.
//! The socket is removed again when the [`BoundSocket`] is dropped, unless someone replaced it
//! in the meantime.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why the path could not be claimed; `Display` is one line meant for the user.
#[derive(Debug)]
pub enum BindError {
    /// Another process is accepting connections there.
    InUse(PathBuf),
    /// Something other than a socket is there.
    NotASocket(PathBuf),
    /// The OS refused (directory creation, unlink, bind or listen).
    Io(PathBuf, &'static str, io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(p) => {
                write!(
                    f,
                    "{}: another xenstored is already listening there",
                    p.display()
                )
            }
            BindError::NotASocket(p) => {
                write!(
                    f,
                    "{}: exists and is not a socket; refusing to replace it",
                    p.display()
                )
            }
            BindError::Io(p, what, e) => write!(f, "{}: cannot {}: {}", p.display(), what, e),
        }
    }
}

impl std::error::Error for BindError {}

/// A listening socket at a path we own.
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// Identity of our socket file, so that we never remove a successor's.
    dev_ino: (u64, u64),
}

impl BoundSocket {
    /// Claims `path`: creates its directory if missing, replaces a stale socket, binds and
    /// listens (non-blocking, mode 0600 like the C daemon's).
    pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
        let err = |what, e| BindError::Io(path.to_path_buf(), what, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| err("create its directory", e))?;
        }
        match fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path).map_err(|e| err("remove the stale socket", e))?;
                }
                Err(e) => return Err(err("probe the existing socket", e)),
            },
            Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("inspect", e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                // Lost a race with another daemon starting at the same moment.
                BindError::InUse(path.to_path_buf())
            } else {
                err("listen", e)
            }
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| err("listen", e))?;
        let md = fs::symlink_metadata(path).map_err(|e| err("inspect", e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| err("set permissions of", e))?;
        Ok(BoundSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
            dev_ino: (md.dev(), md.ino()),
        })
    }

    /// Takes over the socket file at `path` whose listener this process already has (a live
    /// update kept it open across exec): it is removed on drop as if bound here.
    pub fn adopt(path: &Path) -> io::Result<BoundSocket> {
        let md = fs::symlink_metadata(path)?;
        Ok(BoundSocket {
            listener: None,
            path: path.to_path_buf(),
            dev_ino: (md.dev(), md.ino()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands over the listener (the socket file stays ours to remove).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(md) = fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.dev_ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xs-listen-{}-{}", tag, std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_directory_refuses_live_and_replaces_stale() {
        let dir = tmpdir("a");
        let path = dir.join("sub/socket");
        let first = BoundSocket::bind(&path).unwrap();
        assert!(matches!(BoundSocket::bind(&path), Err(BindError::InUse(_))));
        // A socket nobody listens on any more: replaced.
        drop(first);
        assert!(!path.exists());
        let l = UnixListener::bind(&path).unwrap();
        drop(l); // the file stays, nobody answers
        assert!(path.exists());
        let again = BoundSocket::bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(again);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_regular_file_and_keeps_a_successors_socket() {
        let dir = tmpdir("b");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        fs::write(&path, b"x").unwrap();
        let e = BoundSocket::bind(&path).err().unwrap();
        assert!(matches!(e, BindError::NotASocket(_)));
        assert!(!e.to_string().contains('\n'));
        fs::remove_file(&path).unwrap();
        let ours = BoundSocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let _successor = UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "must not remove a socket it did not create");
        fs::remove_dir_all(&dir).unwrap();
    }
}
