//! XS_CONTROL: the daemon's maintenance commands (privileged connections only).
//!
//! Commands and reply formats follow the C daemon's `control.c`:
//! - `help`: one "%-15s %s\n" line per command with its parameters;
//! - `check`: runs the invariant checker (check.rs) and repairs node accounting as the C
//!   daemon does; replies "OK" when everything holds, otherwise (our choice, the C daemon only
//!   logs) the list of problems found, one per line;
//! - `print <string>`: acknowledged ("OK"); the engine has no log of its own, a daemon wanting
//!   to log these can look at CONTROL requests before handing them over;
//! - `quota`: the global quotas ("Quota settings:" then "%-17s: %8d %s" lines);
//!   `quota set <name> <value>` (value >= 1), `quota <domid>` (current use with the highest
//!   seen: "%-17s: %8u (max %8u)"), `quota max [-r]` (highest use seen over unprivileged
//!   domains, -r resets it).
//! Unknown commands and wrong parameter counts are EINVAL.

use super::dispatch::strings;
use super::domain::atoi;
use super::quota::NAMES;
use super::{ok_reply, reply_buf, Errno, Store};

const COMMANDS: [(&str, &str); 4] = [
    ("check", ""),
    ("print", "<string>"),
    ("quota", "[set <name> <val>|<domid>|max [-r]]"),
    ("help", ""),
];

fn text_reply(s: &str) -> Vec<u8> {
    let mut v = reply_buf(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl Store {
    pub(crate) fn control(&mut self, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        let s = strings(payload);
        let Some((&cmd, args)) = s.split_first() else { return Err(libc::EINVAL) };
        match cmd {
            b"help" if args.is_empty() => {
                let mut r = String::new();
                for (c, pars) in COMMANDS {
                    r.push_str(&format!("{c:<15} {pars}\n"));
                }
                Ok(text_reply(&r))
            }
            b"check" if args.is_empty() => {
                let problems = self.check_and_repair();
                if problems.is_empty() {
                    Ok(ok_reply())
                } else {
                    Ok(text_reply(&(problems.join("\n") + "\n")))
                }
            }
            b"print" if args.len() == 1 => Ok(ok_reply()),
            b"quota" => self.control_quota(args),
            _ => Err(libc::EINVAL),
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
                Ok(text_reply(&r))
            }
            [b"set", name, val] => {
                let v = atoi(val);
                if v < 1 || v > u32::MAX as i64 {
                    return Err(libc::EINVAL);
                }
                let name = std::str::from_utf8(name).map_err(|_| libc::EINVAL)?;
                if !self.domains.global.set(name, v as u32) {
                    return Err(libc::EINVAL);
                }
                Ok(ok_reply())
            }
            [b"max"] | [b"max", b"-r"] => {
                if args.len() == 2 {
                    for id in self.domains.ids() {
                        let d = self.domains.get_mut(id);
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
                Ok(text_reply(&r))
            }
            [domid] => {
                let domid = super::domain::parse_domid(domid)?;
                let Some(d) = self.domains.get(domid) else { return Err(libc::ENOENT) };
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
                Ok(text_reply(&r))
            }
            _ => Err(libc::EINVAL),
        }
    }
}
