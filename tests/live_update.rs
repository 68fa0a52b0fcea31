//! Live update of our daemon (`xenstore-control live-update`, `xenstored -U`): the daemon
//! replaces its binary in its own process while clients stay connected.
//!
//! The load test prints what each update cost the clients (request latency across the
//! updates); nothing here asserts a time.

mod util;
use util::common::*;
use util::{reference_required, repo};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xenstore::wire::MsgType as T;

/// Our daemon with its run directory (where the state file goes) in its temporary directory.
fn start(tag: &str, extra: &[&str]) -> Daemon {
    let dir = TempDir::new(tag);
    let socket = dir.0.join("socket");
    let mut cmd = Command::new(daemon_bin());
    cmd.arg("-N")
        .args(extra)
        .env("XENSTORED_RUNDIR", &dir.0)
        .env_remove("XENSTORED_PATH");
    Daemon::spawn(cmd, socket, dir)
}

fn text(m: &Msg) -> String {
    String::from_utf8_lossy(m.payload.strip_suffix(b"\0").unwrap_or(&m.payload)).into_owned()
}

/// One CONTROL live-update sub-command; the reply's text.
fn lu(c: &mut Client, args: &[&str]) -> String {
    let mut v = vec!["live-update"];
    v.extend_from_slice(args);
    let m = c.request(T::XS_CONTROL, 0, &zz(&v));
    assert!(m.is(T::XS_CONTROL), "CONTROL failed: {}", text(&m));
    text(&m)
}

/// A whole update as xenstore-control does it; the answer to the start.
fn update(c: &mut Client, binary: &Path, start: &[&str]) -> String {
    assert_eq!(lu(c, &["-f", binary.to_str().unwrap()]), "OK");
    let mut s = vec!["-s"];
    s.extend_from_slice(start);
    let r = lu(c, &s);
    if r != "OK" {
        // As xenstore-control does after a failed start (harmless when nothing is open).
        lu(c, &["-a"]);
    }
    r
}

/// Every node under `p` with its value and permissions, parents first, children in listing
/// order.
fn dump(c: &mut Client, p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_string()];
    while let Some(p) = stack.pop() {
        let v = c.read(&p).unwrap();
        let perms = c.ok(T::XS_GET_PERMS, 0, &z(&p));
        out.push(format!(
            "{p} = {:?} {:?}",
            String::from_utf8_lossy(&v),
            String::from_utf8_lossy(&perms)
        ));
        let kids = c.ok(T::XS_DIRECTORY, 0, &z(&p));
        let kids: Vec<&[u8]> = kids.split(|&b| b == 0).filter(|k| !k.is_empty()).collect();
        for k in kids.iter().rev() {
            let k = String::from_utf8_lossy(k);
            stack.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[test]
fn ten_updates_under_load_lose_nothing() {
    const CLIENTS: usize = 100;
    const UPDATES: usize = 10;
    let d = start("lu-load", &[]);
    let pid = d.pid();
    let bin = PathBuf::from(daemon_bin());
    let stop = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let mut workers = Vec::new();
    for i in 0..CLIENTS {
        let (socket, stop, lat) = (d.socket.clone(), stop.clone(), latencies.clone());
        workers.push(std::thread::spawn(move || {
            let mut c = Client::connect(&socket);
            let home = format!("/load/c{i}");
            let token = format!("t{i}");
            let mut events = Vec::new();
            c.request_ev(T::XS_WATCH, 0, &zz(&[&home, &token]), &mut events);
            let mut acked: Vec<(String, String)> = Vec::new();
            let mut mine = Vec::new();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let t0 = Instant::now();
                let key = format!("{home}/n{}", k % 50);
                let val = format!("v{k}");
                let mut p = z(&key);
                p.extend_from_slice(val.as_bytes());
                let m = c.request_ev(T::XS_WRITE, 0, &p, &mut events);
                assert!(m.is(T::XS_WRITE), "client {i}: write: {}", text(&m));
                acked.retain(|(kk, _)| *kk != key);
                acked.push((key.clone(), val));
                if k.is_multiple_of(5) {
                    // A transaction: read, write, commit (retried on EAGAIN, as libxl does).
                    loop {
                        let m = c.request_ev(T::XS_TRANSACTION_START, 0, b"\0", &mut events);
                        assert!(m.is(T::XS_TRANSACTION_START), "client {i}: {}", text(&m));
                        let tx: u32 = text(&m).parse().unwrap();
                        let tkey = format!("{home}/tx");
                        let mut p = z(&tkey);
                        p.extend_from_slice(format!("{k}").as_bytes());
                        let m = c.request_ev(T::XS_WRITE, tx, &p, &mut events);
                        assert!(m.is(T::XS_WRITE), "client {i}: tx write: {}", text(&m));
                        let m = c.request_ev(T::XS_TRANSACTION_END, tx, b"T\0", &mut events);
                        if m.is(T::XS_TRANSACTION_END) {
                            acked.retain(|(kk, _)| *kk != tkey);
                            acked.push((tkey, format!("{k}")));
                            break;
                        }
                        assert_eq!(text(&m), "EAGAIN", "client {i}: commit");
                    }
                } else {
                    let m = c.request_ev(T::XS_READ, 0, &z(&key), &mut events);
                    assert!(m.is(T::XS_READ), "client {i}: read: {}", text(&m));
                }
                mine.push((t0, t0.elapsed()));
            }
            // Every acknowledged write is there.
            for (key, val) in &acked {
                assert_eq!(
                    c.read(key).as_deref(),
                    Ok(val.as_bytes()),
                    "client {i}: {key} lost"
                );
            }
            // The watch still fires.
            events.clear();
            let m = c.request_ev(T::XS_WRITE, 0, &zz(&[&format!("{home}/last")]), &mut events);
            assert!(m.is(T::XS_WRITE));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !events
                .iter()
                .any(|e| e.payload.ends_with(format!("{token}\0").as_bytes()))
            {
                assert!(
                    Instant::now() < deadline,
                    "client {i}: watch silent after the updates"
                );
                events.push(c.recv().expect("event"));
            }
            lat.lock().unwrap().extend(mine);
            k
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut admin = d.connect();
    let mut windows = Vec::new();
    for n in 0..UPDATES {
        let t0 = Instant::now();
        let r = update(&mut admin, &bin, &["-t", "30"]);
        assert_eq!(r, "OK", "update {n}");
        windows.push((t0, t0.elapsed()));
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            bin,
            "same process, our binary"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(text(&admin.request(T::XS_CONTROL, 0, &z("check"))), "OK");
    let mut all: Vec<Duration> = latencies.lock().unwrap().iter().map(|l| l.1).collect();
    all.sort();
    // Requests that were in flight while an update ran.
    let mut across: Vec<Duration> = latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, l)| {
            windows
                .iter()
                .any(|(w, wl)| *t <= *w + *wl && *t + *l >= *w)
        })
        .map(|l| l.1)
        .collect();
    across.sort();
    let mut upd: Vec<Duration> = windows.iter().map(|w| w.1).collect();
    upd.sort();
    println!(
        "live update under load: {UPDATES} updates, {CLIENTS} clients, {ops} requests; \
         update (start to OK) p50 {:?} max {:?}; request latency overall p50 {:?} p99 {:?} \
         max {:?}; across an update ({} requests) p50 {:?} p99 {:?} max {:?}",
        pct(&upd, 0.5),
        pct(&upd, 1.0),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0),
        across.len(),
        pct(&across, 0.5),
        pct(&across, 0.99),
        pct(&across, 1.0),
    );
}

/// An executable script that copies the state file to `save` and runs our daemon.
fn saving_wrapper(dir: &Path, save: &Path) -> PathBuf {
    let w = dir.join("xenstored-saving");
    std::fs::write(
        &w,
        format!(
            "#!/bin/sh\ncp \"$XENSTORED_RUNDIR/state_dump\" {} || exit 1\nexec {} \"$@\"\n",
            save.display(),
            daemon_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    w
}

#[test]
fn a_fresh_daemon_gives_the_same_store_from_the_state() {
    let d = start("lu-fresh", &[]);
    let mut c = d.connect();
    for (p, v) in [
        ("/local/domain/3/name", "g3"),
        ("/local/domain/3/data/a", "1"),
        ("/zz", "first"),
        ("/aa", "bin\u{0}ary"),
        ("/vm/u/name", "x"),
    ] {
        c.write(p, v.as_bytes());
    }
    c.ok(
        T::XS_SET_PERMS,
        0,
        &zz(&["/local/domain/3", "n3", "r0", "b5"]),
    );
    c.ok(T::XS_SET_PERMS, 0, &zz(&["/aa", "r0"]));
    c.ok(T::XS_INTRODUCE, 0, &zz(&["3", "77", "5"]));
    c.ok(T::XS_SET_QUOTA, 0, &zz(&["3", "nodes", "55"]));
    let before = dump(&mut c, "/");
    let save = d.dir.0.join("saved-state");
    let wrapper = saving_wrapper(&d.dir.0, &save);
    assert_eq!(update(&mut c, &wrapper, &[]), "OK");
    assert_eq!(dump(&mut c, "/"), before, "after the update");
    // A fresh daemon, elsewhere, from the saved state: the descriptors in it are not its
    // own, so it starts with the store and none of the connections.
    let other = TempDir::new("lu-fresh-b");
    std::fs::copy(&save, other.0.join("state_dump")).unwrap();
    let mut cmd = Command::new(daemon_bin());
    cmd.args(["-N", "-U"])
        .env("XENSTORED_RUNDIR", &other.0)
        .env_remove("XENSTORED_PATH");
    let b = Daemon::spawn(cmd, other.0.join("socket"), other);
    let mut cb = b.connect();
    assert_eq!(dump(&mut cb, "/"), before, "from the state file");
    assert_eq!(
        text(&cb.request(T::XS_GET_QUOTA, 0, &zz(&["3", "nodes"]))),
        "55"
    );
    assert_eq!(
        text(&cb.request(T::XS_IS_DOMAIN_INTRODUCED, 0, &z("3"))),
        "T"
    );
    assert_eq!(text(&cb.request(T::XS_CONTROL, 0, &z("check"))), "OK");
    assert!(
        !b.dir.0.join("state_dump").exists(),
        "read once, then removed"
    );
}

#[test]
fn a_refused_update_leaves_the_daemon_serving() {
    let d = start("lu-refused", &[]);
    let mut c = d.connect();
    let mut watcher = d.connect();
    watcher.ok(T::XS_WATCH, 0, &zz(&["/w", "tok"]));
    c.write("/w/x", b"1");
    // A binary that cannot carry on from our state.
    let r = update(&mut c, Path::new("/bin/false"), &[]);
    assert!(r.starts_with("The new binary refused the state"), "{r}");
    // One that is not there any more by the time of the start.
    let gone = d.dir.0.join("gone");
    std::fs::copy(daemon_bin(), &gone).unwrap();
    assert_eq!(lu(&mut c, &["-f", gone.to_str().unwrap()]), "OK");
    std::fs::remove_file(&gone).unwrap();
    let r = lu(&mut c, &["-s"]);
    assert!(r.starts_with("Error activating new binary"), "{r}");
    // Not executable, not there.
    let plain = d.dir.0.join("plain");
    std::fs::write(&plain, b"x").unwrap();
    assert_eq!(
        lu(&mut c, &["-f", plain.to_str().unwrap()]),
        "File not executable."
    );
    assert_eq!(lu(&mut c, &["-f", "/nonexistent"]), "File not accessible.");
    // A transaction open, no -F: refused after the time given, naming it.
    let mut other = d.connect();
    let tx: u32 = text(&other.request(T::XS_TRANSACTION_START, 0, b"\0"))
        .parse()
        .unwrap();
    let r = update(&mut c, Path::new(daemon_bin()), &["-t", "1"]);
    assert!(
        r.starts_with("Domains with long running transactions:\nDomain 0: "),
        "{r}"
    );
    // Nothing was lost: the transaction commits, the watch fires, the same process serves.
    other.ok(T::XS_WRITE, tx, &zz(&["/w/y"]));
    other.ok(T::XS_TRANSACTION_END, tx, b"T\0");
    let mut ev = Vec::new();
    while ev.len() < 3 {
        ev.push(watcher.recv().unwrap());
    }
    assert!(ev[2].payload.starts_with(b"/w/y\0"), "{:?}", ev[2]);
    assert_eq!(c.read("/w/x").unwrap(), b"1");
    // With -F and the time run out, the update goes; the transaction comes back failed.
    let tx: u32 = text(&other.request(T::XS_TRANSACTION_START, 0, b"\0"))
        .parse()
        .unwrap();
    assert_eq!(
        update(&mut c, Path::new(daemon_bin()), &["-t", "1", "-F"]),
        "OK"
    );
    let m = other.request(T::XS_TRANSACTION_END, tx, b"T\0");
    assert_eq!(text(&m), "EAGAIN");
    assert_eq!(c.read("/w/x").unwrap(), b"1");
}

#[test]
fn a_damaged_state_is_refused_at_start_with_a_clear_error() {
    let dir = TempDir::new("lu-damaged");
    for (name, bytes) in [
        ("missing", None),
        ("garbage", Some(b"not a state".to_vec())),
        (
            "truncated",
            Some(b"xenstore\0\0\0\x02\0\0\0\0\x05\0\0\0".to_vec()),
        ),
    ] {
        let _ = std::fs::remove_file(dir.0.join("state_dump"));
        if let Some(b) = bytes {
            std::fs::write(dir.0.join("state_dump"), b).unwrap();
        }
        let out = Command::new(daemon_bin())
            .args(["-N", "-U"])
            .env("XENSTORED_RUNDIR", &dir.0)
            .env_remove("XENSTORED_PATH")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("xenstored: -U: "), "{name}: {err}");
        assert!(!dir.0.join("socket").exists(), "{name}: nothing served");
    }
}

#[test]
fn debians_xenstore_control_drives_the_update() {
    let root = std::env::var_os("XS_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".reference"))
        .join("root");
    let tool = root.join("usr/lib/xen-4.17/bin/xenstore-control");
    if !tool.exists() {
        assert!(!reference_required(), "{} missing", tool.display());
        eprintln!("SKIP: no Debian xenstore-control (scripts/reference/fetch.sh)");
        return;
    }
    let d = start("lu-debian", &[]);
    let mut c = d.connect();
    c.write("/kept", b"yes");
    // Debian's tool with Debian's library: exactly what a host runs.
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    let out = Command::new(&tool)
        .args(["live-update", "-t", "10", daemon_bin()])
        .env("XENSTORED_PATH", &d.socket)
        .env("LD_LIBRARY_PATH", libs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(c.read("/kept").unwrap(), b"yes");
}
