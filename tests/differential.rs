//! Differential tests: the request sequences in tests/sequences/*.seq are sent, byte for byte,
//! to our daemon and to Debian's C xenstored 4.17 (run by scripts/reference/daemon.sh), and
//! everything each connection receives must be identical, step by step, except on steps marked
//! as documented differences (docs/daemon-differences.md).
//!
//! Without the reference packages (no network, no apt-get) the test is skipped with a message;
//! set XS_REQUIRE_REFERENCE=1 to make that a failure instead (CI does).
//!
//! Sequence format, one step per line (`#` starts a comment line):
//!
//! ```text
//! <conn> [@<tx>] <TYPE|#number> [<payload>] [=> <name>] [!diff <key>]
//! open <conn> | close <conn>
//! ```
//!
//! `<conn>` is a small number (connection 0 is open at the start); `<tx>` is a number or a
//! name bound earlier by `=> <name>` (the decimal transaction id in a reply); in the payload
//! `|` stands for a NUL byte, `\xNN` for any byte and `{N*c}` for N copies of the character c.
//! After every step each open connection is synchronised (a harmless request whose reply marks
//! the end of what the step caused), so watch events are compared per connection and in order.
//!
//! Knobs: XS_SEQUENCE=<name> runs one file; XS_SHOW_TRANSCRIPT=1 prints both transcripts;
//! XS_DIFF_REFERENCE_ONLY=1 prints only the C daemon's (for writing new sequences);
//! XS_REFERENCE_DIR as for scripts/reference.

mod util;
use util::common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use common::*;
use xenstore::wire::{encode, MsgType};

/// The request that closes each step's output on every connection.
const SYNC_REQ_ID: u32 = 0xffff_fff0;

#[derive(Debug, Clone)]
enum Tx {
    None,
    Num(u32),
    Name(String),
}

#[derive(Debug, Clone)]
enum Step {
    Open(usize),
    Close(usize),
    Send {
        conn: usize,
        tx: Tx,
        ty: u32,
        payload: Vec<u8>,
        bind: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Line {
    no: usize,
    text: String,
    step: Step,
    diff: Option<String>,
}

fn parse_type(tok: &str) -> Result<u32, String> {
    if let Some(n) = tok.strip_prefix('#') {
        return n.parse().map_err(|_| format!("bad type number {tok}"));
    }
    MsgType::ALL
        .iter()
        .find(|t| t.name() == tok)
        .map(|t| *t as u32)
        .ok_or_else(|| format!("unknown type {tok}"))
}

fn parse_payload(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'|' => {
                out.push(0);
                i += 1;
            }
            b'\\' if b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape \\x{hex}"))?);
                i += 4;
            }
            b'{' => {
                let end = s[i..].find('}').ok_or("unclosed {")? + i;
                let (n, c) = s[i + 1..end].split_once('*').ok_or("expected {N*c}")?;
                let n: usize = n.parse().map_err(|_| format!("bad count {n}"))?;
                out.extend(std::iter::repeat_n(c.as_bytes(), n).flatten());
                i = end + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn parse_sequence(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let t = raw.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let err = |e: String| format!("line {no}: {e}");
        let (body, diff) = match t.split_once(" !diff ") {
            Some((b, k)) => (b, Some(k.trim().to_string())),
            None => (t, None),
        };
        let (body, bind) = match body.rsplit_once(" => ") {
            Some((b, n)) => (b, Some(n.trim().to_string())),
            None => (body, None),
        };
        let mut words = body.splitn(2, ' ');
        let first = words.next().unwrap();
        let rest = words.next().unwrap_or("");
        let step = match first {
            "open" | "close" => {
                let c: usize = rest
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("bad connection {rest}")))?;
                if first == "open" {
                    Step::Open(c)
                } else {
                    Step::Close(c)
                }
            }
            _ => {
                let conn: usize = first
                    .parse()
                    .map_err(|_| err(format!("bad connection {first}")))?;
                let (mut tok, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let mut tx = Tx::None;
                if let Some(name) = tok.strip_prefix('@') {
                    tx = match name.parse() {
                        Ok(n) => Tx::Num(n),
                        Err(_) => Tx::Name(name.to_string()),
                    };
                    (tok, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                }
                let ty = parse_type(tok).map_err(err)?;
                let payload = parse_payload(rest).map_err(err)?;
                Step::Send {
                    conn,
                    tx,
                    ty,
                    payload,
                    bind,
                }
            }
        };
        lines.push(Line {
            no,
            text: t.to_string(),
            step,
            diff,
        });
    }
    Ok(lines)
}

/// How a message is shown (and compared): header fields and the payload with escapes.
fn show(m: &Msg) -> String {
    let name = MsgType::from_u32(m.ty)
        .map(|t| t.name().to_string())
        .unwrap_or(format!("#{}", m.ty));
    let mut p = String::new();
    let mut i = 0;
    let b = &m.payload;
    while i < b.len() {
        // Long runs of one byte are shown as {N*c}, as sequences write them.
        let run = b[i..].iter().take_while(|&&c| c == b[i]).count();
        if run > 16 && b[i].is_ascii_alphanumeric() {
            write!(p, "{{{run}*{}}}", b[i] as char).unwrap();
            i += run;
            continue;
        }
        match b[i] {
            0 => p.push('|'),
            b'\\' => p.push_str("\\\\"),
            b'{' => p.push_str("\\x7b"),
            0x20..=0x7e => p.push(b[i] as char),
            c => write!(p, "\\x{c:02x}").unwrap(),
        }
        i += 1;
    }
    format!("{name} req={} tx={} \"{p}\"", m.req_id, m.tx_id)
}

/// What one daemon produced for one step: per connection, the messages received.
type StepOutput = Vec<String>;

fn run_sequence(socket: &Path, lines: &[Line]) -> Vec<StepOutput> {
    let mut conns: Vec<Option<Client>> = vec![Some(Client::connect(socket))];
    let mut names: Vec<(String, u32)> = Vec::new();
    let mut transcript = Vec::new();
    for (idx, line) in lines.iter().enumerate() {
        let mut out = Vec::new();
        match &line.step {
            Step::Open(c) => {
                if conns.len() <= *c {
                    conns.resize_with(c + 1, || None);
                }
                conns[*c] = Some(Client::connect(socket));
            }
            Step::Close(c) => {
                conns[*c] = None;
                // Give the daemon a moment to notice before the next step's requests.
                std::thread::sleep(Duration::from_millis(50));
            }
            Step::Send {
                conn,
                tx,
                ty,
                payload,
                bind,
            } => {
                let tx_id = match tx {
                    Tx::None => 0,
                    Tx::Num(n) => *n,
                    Tx::Name(n) => names
                        .iter()
                        .rev()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| *v)
                        .unwrap_or(u32::MAX),
                };
                let req_id = idx as u32 + 1;
                let c = conns[*conn]
                    .as_mut()
                    .unwrap_or_else(|| panic!("line {}: connection {conn} not open", line.no));
                c.sock
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                use std::io::Write;
                let sent = c.sock.write_all(&raw_message(*ty, req_id, tx_id, payload));
                if sent.is_err() {
                    out.push(format!("conn{conn}: <closed>"));
                }
                if let Some(name) = bind {
                    // The reply is read here, before the sync, to learn the id.
                    let m = loop {
                        let m = c.recv().expect("reply to bind");
                        out.push(format!("conn{conn}: {}", show(&m)));
                        if !m.is(MsgType::XS_WATCH_EVENT) {
                            break m;
                        }
                    };
                    let id =
                        std::str::from_utf8(m.payload.strip_suffix(b"\0").unwrap_or(&m.payload))
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(u32::MAX);
                    names.push((name.clone(), id));
                }
            }
        }
        // Collect what the step caused, connection by connection, the sender first: its sync
        // reply proves the request was handled before the others are asked.
        let sender = match &line.step {
            Step::Send { conn, .. } => *conn,
            _ => 0,
        };
        let mut order: Vec<usize> = (0..conns.len()).collect();
        order.retain(|&c| c != sender);
        order.insert(0, sender.min(conns.len().saturating_sub(1)));
        let mut step_out: Vec<(usize, Vec<String>)> = Vec::new();
        for ci in order {
            let slot = &mut conns[ci];
            let Some(c) = slot else { continue };
            let mut out = Vec::new();
            use std::io::Write;
            let sync = encode(MsgType::XS_GET_DOMAIN_PATH, SYNC_REQ_ID, 0, b"0\0");
            if c.sock.write_all(&sync).is_err() {
                out.push(format!("conn{ci}: <closed>"));
                *slot = None;
                step_out.push((ci, out));
                continue;
            }
            loop {
                match c.recv() {
                    Ok(m) if m.req_id == SYNC_REQ_ID && !m.is(MsgType::XS_WATCH_EVENT) => break,
                    Ok(m) => out.push(format!("conn{ci}: {}", show(&m))),
                    Err(_) => {
                        out.push(format!("conn{ci}: <closed>"));
                        *slot = None;
                        break;
                    }
                }
            }
            step_out.push((ci, out));
        }
        // Shown in connection order, whatever order they were collected in.
        step_out.sort_by_key(|(ci, _)| *ci);
        out.extend(step_out.into_iter().flat_map(|(_, o)| o));
        transcript.push(out);
    }
    transcript
}

fn raw_message(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + payload.len());
    for w in [ty, req_id, tx_id, payload.len() as u32] {
        v.extend_from_slice(&w.to_ne_bytes());
    }
    v.extend_from_slice(payload);
    v
}

fn sequences() -> Vec<(String, String)> {
    let dir = util::repo().join("tests/sequences");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seq"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Runs every sequence on the C daemon and ours; returns the report of unexpected
/// differences (empty when all agree).
fn compare_all() -> Result<String, String> {
    let only = std::env::var("XS_SEQUENCE").ok();
    let mut report = String::new();
    let mut documented = 0;
    for (name, text) in sequences() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let lines = parse_sequence(&text).unwrap_or_else(|e| panic!("{name}.seq: {e}"));
        let reference = util::CDaemon::start(&format!("diff-{name}"))?;
        let theirs = run_sequence(&reference.socket, &lines);
        drop(reference);
        if std::env::var_os("XS_DIFF_REFERENCE_ONLY").is_some() {
            for (l, t) in lines.iter().zip(&theirs) {
                eprintln!("{name}:{} {}", l.no, l.text);
                for m in t {
                    eprintln!("    {m}");
                }
            }
            continue;
        }
        let ours_daemon = Daemon::start(&format!("diff-{name}"));
        let ours = run_sequence(&ours_daemon.socket, &lines);
        drop(ours_daemon);
        if std::env::var_os("XS_SHOW_TRANSCRIPT").is_some() {
            for (l, (t, o)) in lines.iter().zip(theirs.iter().zip(&ours)) {
                eprintln!("{name}:{} {}\n  C:   {:?}\n  ours:{:?}", l.no, l.text, t, o);
            }
        }
        for (l, (t, o)) in lines.iter().zip(theirs.iter().zip(&ours)) {
            if t == o {
                if let Some(key) = &l.diff {
                    eprintln!(
                        "note: {name}.seq line {} is marked `{key}` but now agrees",
                        l.no
                    );
                }
                continue;
            }
            if l.diff.is_some() {
                documented += 1;
                continue;
            }
            writeln!(report, "{name}.seq line {}: {}", l.no, l.text).unwrap();
            for m in t {
                writeln!(report, "    C xenstored: {m}").unwrap();
            }
            for m in o {
                writeln!(report, "    ours:        {m}").unwrap();
            }
        }
    }
    eprintln!("differential: {documented} documented difference(s) seen");
    Ok(report)
}

#[test]
fn same_replies_and_events_as_the_c_daemon() {
    match compare_all() {
        Ok(report) => assert!(
            report.is_empty(),
            "replies differ from the C xenstored:\n{report}"
        ),
        Err(why) => {
            if util::reference_required() {
                panic!("the reference C xenstored is required but cannot run: {why}");
            }
            eprintln!(
                "SKIPPED differential test: the reference C xenstored cannot run here ({why})"
            );
        }
    }
}

#[test]
fn sequence_files_parse() {
    for (name, text) in sequences() {
        let lines = parse_sequence(&text).unwrap_or_else(|e| panic!("{name}.seq: {e}"));
        assert!(!lines.is_empty(), "{name}.seq is empty");
        for l in &lines {
            if let Some(key) = &l.diff {
                let doc = std::fs::read_to_string(util::repo().join("docs/daemon-differences.md"))
                    .unwrap();
                assert!(
                    doc.contains(&format!("`{key}`")),
                    "{name}.seq line {}: difference `{key}` is not documented",
                    l.no
                );
            }
        }
    }
    assert_eq!(parse_payload("a|b\\x01{3*z}").unwrap(), b"a\0b\x01zzz");
}
