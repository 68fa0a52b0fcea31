//! The trace file (`xenstored -T FILE`, CONTROL `log on|off` and `logfile FILE`): every message
//! in and out, and every connection made and gone, one line each, appended to a file. Off
//! unless a file is given; when off it costs one test per message.
//!
//! The lines follow the C daemon's trace, with the request and transaction ids added:
//!
//! ```text
//! CREATE connection 7 domain 0
//! IN 7 20261204 22:35:01 WRITE req 3 tx 0 (/local/domain/0/name Domain-0)
//! OUT 7 20261204 22:35:01 WRITE req 3 tx 0 (OK )
//! DESTROY connection 7
//! ```
//!
//! Connections are named by their number (the C daemon prints a pointer); times are UTC;
//! NUL bytes of the payload show as spaces, as in C. OUT is written when the engine hands the
//! message to its transport (the C daemon writes it once the message is sent). Opening the
//! file, as in C, appends a line `***`. A file that cannot be written is reported once on
//! standard error and tracing stops.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ConnId;
use crate::wire::{Header, MsgType};

#[derive(Default)]
pub(crate) struct Trace {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Trace {
    /// Tracing into `path` from now on (CONTROL logfile, -T).
    pub fn set_file(&mut self, path: PathBuf) -> std::io::Result<()> {
        self.path = Some(path);
        self.reopen()
    }

    /// (Re)opens the file last given (CONTROL log on); nothing without one.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = None;
        let Some(p) = &self.path else {
            return Ok(());
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(p)?;
        f.write_all(b"\n***\n")?;
        self.file = Some(f);
        Ok(())
    }

    /// Reopens the file if tracing is on (SIGHUP: after the file was rotated).
    pub fn rotate(&mut self) -> std::io::Result<()> {
        match self.file {
            Some(_) => self.reopen(),
            None => Ok(()),
        }
    }

    /// Stops tracing (CONTROL log off); the file name is kept for `reopen`.
    pub fn close(&mut self) {
        self.file = None;
    }

    fn line(&mut self, text: &[u8]) {
        let Some(f) = &mut self.file else {
            return;
        };
        if let Err(e) = f.write_all(text) {
            eprintln!("xenstored: trace file: {e}; tracing stops");
            self.file = None;
        }
    }

    /// One message, `out` for the engine's output.
    pub fn message(&mut self, out: bool, conn: ConnId, hdr: &Header, payload: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let ty = MsgType::from_u32(hdr.ty).map_or("UNKNOWN", MsgType::name);
        let mut l = format!(
            "{} {} {} {ty} req {} tx {} (",
            if out { "OUT" } else { "IN" },
            conn.0,
            utc_now(),
            hdr.req_id,
            hdr.tx_id
        )
        .into_bytes();
        l.extend(payload.iter().map(|&b| if b == 0 { b' ' } else { b }));
        l.extend_from_slice(b")\n");
        self.line(&l);
    }

    /// An encoded message the engine hands out.
    pub fn output(&mut self, conn: ConnId, msg: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let Some(hdr) = msg
            .get(..crate::wire::HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .and_then(|h| Header::parse(h).ok())
        else {
            return;
        };
        self.message(true, conn, &hdr, &msg[crate::wire::HEADER_LEN..]);
    }

    pub fn created(&mut self, conn: ConnId, domid: u32) {
        if self.file.is_some() {
            self.line(format!("CREATE connection {} domain {domid}\n", conn.0).as_bytes());
        }
    }

    pub fn destroyed(&mut self, conn: ConnId) {
        if self.file.is_some() {
            self.line(format!("DESTROY connection {}\n", conn.0).as_bytes());
        }
    }
}

/// "YYYYMMDD HH:MM:SS" of now, in UTC.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (the usual era-based
/// conversion: 400-year eras of 146097 days, years starting in March).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "19700101 00:00:00");
        assert_eq!(utc(951_782_400), "20000229 00:00:00");
        // 2026-12-04 22:35:01 UTC
        assert_eq!(utc(1_796_423_701), "20261204 22:35:01");
    }

    #[test]
    fn lines_and_switching() {
        let dir = std::env::temp_dir().join(format!("xs-trace-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut t = Trace::default();
        let h = Header::new(MsgType::XS_WRITE, 3, 0, 6);
        t.message(false, ConnId(1), &h, b"/a\0xyz");
        assert!(!dir.exists(), "no file before one is given");
        t.set_file(dir.clone()).unwrap();
        t.created(ConnId(7), 0);
        t.message(false, ConnId(7), &h, b"/a\0xyz");
        t.close();
        t.destroyed(ConnId(7));
        t.reopen().unwrap();
        t.destroyed(ConnId(7));
        let text = std::fs::read_to_string(&dir).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "***");
        assert_eq!(lines[2], "CREATE connection 7 domain 0");
        assert!(lines[3].starts_with("IN 7 2"), "{}", lines[3]);
        assert!(
            lines[3].ends_with(" WRITE req 3 tx 0 (/a xyz)"),
            "{}",
            lines[3]
        );
        assert_eq!(&lines[4..], ["", "***", "DESTROY connection 7"]);
        let _ = std::fs::remove_file(&dir);
    }
}
