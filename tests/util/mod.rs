//! Helpers shared by the integration tests. A test file includes this one module (`mod util;`)
//! and imports what it needs (`use util::common::*;`); no helper asks the including file to
//! declare another.
//!
//! - [`TempDir`]: a private temporary directory, removed on drop.
//! - [`CDaemon`]: Debian's C xenstored 4.17, started by scripts/reference/daemon.sh.
//! - `case_runner`: one named case with a deadline and a PASS/SKIP/FAIL line.
//! - `common`: our xenstored on a private socket, and a raw wire-protocol client.
//! - `client_support`: scripted servers and a small in-memory store for the client tests.
//! - `support`: what the fault and stress tests share (cases run one at a time, one-shot
//!   servers, descriptor and thread counts, a daemon to stop or kill).
//! - `hostile_support`: the embedded store with guests, and misbehaving guest kernels.

// Each test binary uses part of these helpers (and of their re-exports).
#![allow(dead_code, unused_imports)]

pub mod case_runner;
pub mod client_support;
pub mod common;
pub mod hostile_support;
pub mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "xs-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the reference (Debian's library or daemon) must run (XS_REQUIRE_REFERENCE=1, as
/// the full test run sets) rather than be skipped.
pub fn reference_required() -> bool {
    std::env::var_os("XS_REQUIRE_REFERENCE").is_some_and(|v| v == "1")
}

/// Debian's C xenstored 4.17, run by scripts/reference/daemon.sh in a run directory of its
/// own; stopped on drop.
pub struct CDaemon {
    pub rundir: PathBuf,
    pub socket: PathBuf,
}

impl CDaemon {
    /// Starts it; Err with the reason when it cannot run on this host (it needs Debian's
    /// packages, see scripts/reference/fetch.sh).
    pub fn start(tag: &str) -> Result<CDaemon, String> {
        let rundir = std::env::temp_dir().join(format!("xs-cd-{tag}-{}", std::process::id()));
        let out = Command::new(repo().join("scripts/reference/daemon.sh"))
            .args(["start", "cxenstored"])
            .arg(&rundir)
            .output()
            .map_err(|e| format!("cannot run daemon.sh: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let socket = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(CDaemon { rundir, socket })
    }

    /// Its process id (written by daemon.sh).
    pub fn pid(&self) -> Result<libc::pid_t, String> {
        std::fs::read_to_string(self.rundir.join("daemon.pid"))
            .map_err(|e| format!("no daemon.pid: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("bad daemon.pid: {e}"))
    }
}

impl Drop for CDaemon {
    fn drop(&mut self) {
        // daemon.sh complains, harmlessly, when a test killed the daemon already.
        let _ = Command::new(repo().join("scripts/reference/daemon.sh"))
            .arg("stop")
            .arg(&self.rundir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
