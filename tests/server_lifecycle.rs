//! Starting and stopping the daemon: socket path selection, signals, errors.

mod util;
use util::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn sigterm_and_sigint_stop_it_cleanly_and_remove_the_socket() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut d = Daemon::start("signal");
        let mut c = d.connect();
        c.write("/x", b"1");
        d.signal(sig);
        let st = d.wait(Duration::from_secs(5));
        assert!(st.success(), "signal {sig}: {st}");
        assert!(!d.socket.exists(), "socket left behind after signal {sig}");
        assert!(c.is_closed(Duration::from_secs(2)));
    }
}

/// Runs the daemon expecting it to fail at start; returns its stderr.
fn failing_start(env: &[(&str, &std::path::Path)], args: &[&str]) -> String {
    let mut cmd = Command::new(daemon_bin());
    cmd.args(args)
        .env_remove("XENSTORED_PATH")
        .env_remove("XENSTORED_RUNDIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    err
}

#[test]
fn a_socket_path_served_by_another_daemon_is_refused() {
    let d = Daemon::start("taken");
    let err = failing_start(&[("XENSTORED_PATH", &d.socket)], &[]);
    assert!(
        err.contains(d.socket.to_str().unwrap()) && err.contains("already"),
        "{err}"
    );
    // The first daemon is unharmed.
    assert!(d.connect().read("/").is_ok());
}

#[test]
fn an_unusable_path_is_one_clear_error() {
    let dir = TempDir::new("unusable");
    let file = dir.0.join("plain");
    std::fs::write(&file, b"x").unwrap();
    // A directory that cannot be created (its parent is a file).
    let err = failing_start(&[("XENSTORED_PATH", &file.join("socket"))], &[]);
    assert!(err.starts_with("xenstored: "), "{err}");
    // Something that is not a socket is not deleted.
    let err = failing_start(&[("XENSTORED_PATH", &file)], &[]);
    assert!(err.contains("not a socket"), "{err}");
    assert!(file.exists());
}

#[test]
fn a_stale_socket_is_replaced_and_rundir_is_honoured() {
    let dir = TempDir::new("stale");
    let rundir = dir.0.join("run/xenstored");
    std::fs::create_dir_all(&rundir).unwrap();
    let sock = rundir.join("socket");
    // Left behind by a daemon that died without cleaning up: nobody answers on it. (Not a
    // listener bound and dropped here: a process forked meanwhile by a test running beside
    // this one would hold it, listening, until its exec, and could accept our connection.)
    let mut owner = Command::new(daemon_bin());
    owner.arg("-N").env("XENSTORED_PATH", &sock);
    let mut crashed = Daemon::spawn(owner, sock.clone(), TempDir::new("stale-owner"));
    crashed.signal(libc::SIGKILL);
    crashed.wait(Duration::from_secs(5));
    let mut cmd = Command::new(daemon_bin());
    cmd.arg("-N")
        .env_remove("XENSTORED_PATH")
        .env("XENSTORED_RUNDIR", &rundir);
    let mut d = Daemon::spawn(cmd, sock.clone(), dir);
    let mut c = d.connect();
    c.write("/stale", b"ok");
    assert_eq!(c.read("/stale").unwrap(), b"ok");
    d.signal(libc::SIGTERM);
    assert!(d.wait(Duration::from_secs(5)).success());
    assert!(!sock.exists());
}

#[test]
fn the_rundir_is_created_when_missing() {
    let dir = TempDir::new("mkdir");
    let rundir = dir.0.join("a/b");
    let socket = rundir.join("socket");
    let mut cmd = Command::new(daemon_bin());
    cmd.env_remove("XENSTORED_PATH")
        .env("XENSTORED_RUNDIR", &rundir)
        .args([
            "-N",
            "-D",
            "--entry-nb=1000",
            "-Q",
            "outstanding=20",
            "-w",
            "watch-event=5",
        ]);
    let mut d = Daemon::spawn(cmd, socket, dir);
    // The engine's initial tree is there, as the C daemon's.
    let mut c = d.connect();
    assert!(c.read("/tool/xenstored").is_ok());
    d.signal(libc::SIGTERM);
    assert!(d.wait(Duration::from_secs(5)).success());
}

#[test]
fn by_default_it_goes_into_the_background_once_serving() {
    let dir = TempDir::new("fork");
    let socket = dir.0.join("socket");
    let pid_file = dir.0.join("xenstored.pid");
    // As Xen's launch-xenstore runs it: the command returns when the daemon serves.
    let out = Command::new(daemon_bin())
        .arg("--pid-file")
        .arg(&pid_file)
        .env("XENSTORED_PATH", &socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    {
        use std::io::{Read, Write};
        use xenstore::wire::{encode, MsgType, HEADER_LEN};
        let mut c = std::os::unix::net::UnixStream::connect(&socket).expect("serving already");
        c.write_all(&encode(MsgType::XS_READ, 1, 0, b"/tool/xenstored\0"))
            .unwrap();
        let mut h = [0u8; HEADER_LEN];
        c.read_exact(&mut h).unwrap();
        assert_eq!(h[0], MsgType::XS_READ as u8);
    }
    // SAFETY: sends a signal to the daemon this test started (its pid file names it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while socket.exists() || pid_file.exists() {
        assert!(std::time::Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_and_bad_options() {
    let out = Command::new(daemon_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for opt in ["--entry-nb", "--quota", "--no-fork", "XENSTORED_PATH"] {
        assert!(text.contains(opt), "--help lacks {opt}");
    }
    let err = failing_start(&[], &["--entry-nb", "lots"]);
    assert!(err.contains("entry-nb") || err.contains("-E"), "{err}");
}

#[test]
fn sighup_reopens_the_trace_file_after_rotation() {
    let dir = TempDir::new("hup");
    let trace = dir.0.join("trace.log");
    let d = Daemon::start_with("hup-daemon", &["-T", trace.to_str().unwrap()]);
    let mut c = d.connect();
    c.write("/before", b"1");
    let rotated = dir.0.join("trace.log.1");
    std::fs::rename(&trace, &rotated).unwrap();
    d.signal(libc::SIGHUP);
    // The daemon goes on; once it has reopened the file, new traffic lands there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !trace.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "trace file not reopened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    c.write("/after", b"2");
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&trace).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    assert!(new.contains("/after") && !new.contains("/before"), "{new}");
    // Tracing switched off stays off across SIGHUP.
    c.ok(xenstore::wire::MsgType::XS_CONTROL, 0, &zz(&["log", "off"]));
    std::fs::remove_file(&trace).unwrap();
    d.signal(libc::SIGHUP);
    c.write("/off", b"3");
    assert!(c.read("/off").is_ok());
    assert!(!trace.exists(), "reopened although tracing was off");
}
