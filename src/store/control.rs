//! XS_CONTROL: the daemon's maintenance commands (privileged connections only).
//!
//! The commands, their argument counts and the `help` text are those of the C daemon of 4.17
//! (the version whose `xenstore-control` users see them); the `quota` reports follow the
//! reworked format of later C daemons, whose quota names GET_QUOTA/SET_QUOTA use too:
//! - `help`: the 4.17 list, one "<command>\t<parameters>\n" line each;
//! - `check`: runs the invariant checker (check.rs) and repairs node accounting as the C
//!   daemon does; replies "OK" when everything holds, otherwise (our choice, the C daemon only
//!   logs) the list of problems found, one per line;
//! - `log on|off`, `logfile <file>`: the trace file (trace.rs) reopened, closed, or switched
//!   to another file; `log on` without a file given does nothing, as in the C daemon;
//! - `memreport <file>`: appends a short usage report (nodes, connections, queued output) to
//!   the file; without a file it is EINVAL, as in the C daemon without a trace file; a file
//!   that cannot be opened is EINVAL too (as 4.17);
//! - `print <string>`: acknowledged; a daemon wanting to log these can look at CONTROL
//!   requests before handing them over;
//! - `rings` (ours, not in `help`, EINVAL outside host mode): the domain rings the daemon
//!   serves, one "domid D port LOCAL REMOTE KIND" line each, then "mappings N", its count of
//!   mapped pages (see `server::host`);
//! - `live-update ...`: see live_update.rs (dispatched there before this module);
//! - `quota`: the global quotas ("Quota settings:" then "%-17s: %8d %s" lines);
//!   `quota set <name> <value>` (value >= 1; the 4.17 name `permissions` is accepted for
//!   `node-permissions`), `quota <domid>` (current use with the highest seen:
//!   "%-17s: %8u (max %8u)"), `quota max [-r]` (highest use seen over unprivileged domains,
//!   -r resets it);
//! - `quota-soft [set memory <value>]`: the soft memory quota, which the C daemon only uses
//!   for log warnings; kept and shown, but there is no memory accounting to compare it with.
//!
//! Unknown commands and wrong parameter counts are EINVAL.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;

use super::dispatch::strings;
use super::domain::atoi;
use super::quota::NAMES;
use super::{ok_reply, reply_str, Errno, Store};

/// The `help` reply of the C daemon of 4.17, command by command.
const HELP: [(&str, &str); 9] = [
    ("check", ""),
    ("log", "on|off"),
    (
        "live-update",
        "[-c <cmdline>] [-F] [-t <timeout>] <file>\n    Default timeout is 60 seconds.",
    ),
    ("logfile", "<file>"),
    ("memreport", "[<file>]"),
    ("print", "<string>"),
    ("quota", "[set <name> <val>|<domid>]"),
    ("quota-soft", "[set <name> <val>]"),
    ("help", ""),
];

/// Default of the soft memory quota (the C daemon's).
pub(crate) const SOFT_MEMORY_DEFAULT: u32 = 2 * 1024 * 1024;

impl Store {
    pub(crate) fn control(&mut self, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        let s = strings(payload);
        let Some((&cmd, args)) = s.split_first() else {
            return Err(Errno(libc::EINVAL));
        };
        match cmd {
            b"help" if args.is_empty() => {
                let mut r = String::new();
                for (c, pars) in HELP {
                    r.push_str(&format!("{c}\t{pars}\n"));
                }
                Ok(reply_str(&r))
            }
            // As the C daemon, a file that cannot be opened does not fail the request (it is
            // reported on standard error).
            b"log" if args == [b"on"] => {
                if let Err(e) = self.trace.reopen() {
                    eprintln!("xenstored: cannot open the trace file: {e}");
                }
                Ok(ok_reply())
            }
            b"log" if args == [b"off"] => {
                self.trace.close();
                Ok(ok_reply())
            }
            b"logfile" if args.len() == 1 => {
                let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(args[0]));
                if let Err(e) = self.trace.set_file(path) {
                    eprintln!("xenstored: cannot open the trace file: {e}");
                }
                Ok(ok_reply())
            }
            b"memreport" => match args {
                [file] => self.memreport(file),
                _ => Err(Errno(libc::EINVAL)),
            },
            b"quota-soft" => match args {
                [] => Ok(reply_str(&format!(
                    "Quota settings:\n{:<17}: {:>8} Total Xenstore memory per domain (warning level)\n",
                    "memory", self.soft_memory
                ))),
                [b"set", b"memory", val] => {
                    let v = atoi(val);
                    if v < 1 || v > i32::MAX as i64 {
                        return Err(Errno(libc::EINVAL));
                    }
                    self.soft_memory = v as u32;
                    Ok(ok_reply())
                }
                _ => Err(Errno(libc::EINVAL)),
            },
            b"check" if args.is_empty() => {
                let problems = self.check_and_repair();
                if problems.is_empty() {
                    Ok(ok_reply())
                } else {
                    Ok(reply_str(&(problems.join("\n") + "\n")))
                }
            }
            b"print" if args.len() == 1 => Ok(ok_reply()),
            b"rings" if args.is_empty() => match &self.host {
                Some(h) => Ok(reply_str(&h.report())),
                None => Err(Errno(libc::EINVAL)),
            },
            b"quota" => self.control_quota(args),
            _ => Err(Errno(libc::EINVAL)),
        }
    }

    fn control_quota(&mut self, args: &[&[u8]]) -> Result<Vec<u8>, Errno> {
        match args {
            [] => {
                let mut r = String::from("Quota settings:\n");
                for (name, descr) in NAMES {
                    let v = self.domains.global.get(name).unwrap_or(0);
                    r.push_str(&format!("{name:<17}: {v:>8} {descr}\n"));
                }
                Ok(reply_str(&r))
            }
            [b"set", name, val] => {
                let v = atoi(val);
                if v < 1 || v > u32::MAX as i64 {
                    return Err(Errno(libc::EINVAL));
                }
                let name = match std::str::from_utf8(name).map_err(|_| Errno(libc::EINVAL))? {
                    "permissions" => "node-permissions",
                    n => n,
                };
                if !self.domains.global.set(name, v as u32) {
                    return Err(Errno(libc::EINVAL));
                }
                Ok(ok_reply())
            }
            [b"max"] | [b"max", b"-r"] => {
                if args.len() == 2 {
                    for id in self.domains.ids() {
                        let Some(d) = self.domains.get_mut(id) else {
                            continue;
                        };
                        d.max_nodes = d.nodes;
                        d.max_watches = d.watches;
                        d.max_transactions = d.transactions;
                    }
                }
                let mut m = [0u64; 3];
                for (&id, d) in self.domains.iter().filter(|(&id, _)| id != 0) {
                    let _ = id;
                    m[0] = m[0].max(d.max_nodes);
                    m[1] = m[1].max(d.max_watches);
                    m[2] = m[2].max(d.max_transactions);
                }
                let mut r = String::from("Max. seen accounting values:\n");
                for (name, _) in NAMES {
                    let v = match name {
                        "nodes" => m[0],
                        "watches" => m[1],
                        "transactions" => m[2],
                        _ => 0,
                    };
                    r.push_str(&format!("{name:<17}: {v:>8}\n"));
                }
                Ok(reply_str(&r))
            }
            [domid] => {
                let domid = super::domain::parse_domid(domid)?;
                let Some(d) = self.domains.get(domid) else {
                    return Err(Errno(libc::ENOENT));
                };
                let mut r = format!("Domain {domid}:\n");
                for (name, _) in NAMES {
                    let (v, max) = match name {
                        "nodes" => (d.nodes, d.max_nodes),
                        "watches" => (d.watches, d.max_watches),
                        "transactions" => (d.transactions, d.max_transactions),
                        _ => (0, 0),
                    };
                    r.push_str(&format!("{name:<17}: {v:>8} (max {max:>8})\n"));
                }
                Ok(reply_str(&r))
            }
            _ => Err(Errno(libc::EINVAL)),
        }
    }

    /// Appends a usage report to `file` (CONTROL memreport).
    fn memreport(&self, file: &[u8]) -> Result<Vec<u8>, Errno> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(file));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|_| Errno(libc::EINVAL))?;
        let nodes: u64 = self.domains.iter().map(|(_, d)| d.nodes).sum();
        let (mut msgs, mut bytes, mut watches, mut txns) = (0usize, 0usize, 0usize, 0usize);
        for c in self.conns.values() {
            let (m, b) = c.out.queued();
            msgs += m;
            bytes += b;
            watches += c.watches.len();
            txns += c.txns.len();
        }
        let report = format!(
            "xenstored usage report\nnodes: {nodes}\ndomains known: {}\nconnections: {}\n\
             watches: {watches}\ntransactions: {txns}\nqueued output: {msgs} messages, {bytes} bytes\n",
            self.domains.iter().count(),
            self.conns.len(),
        );
        f.write_all(report.as_bytes())
            .map_err(|_| Errno(libc::EIO))?;
        Ok(ok_reply())
    }
}
