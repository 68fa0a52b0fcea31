//! The daemon's command line: the C xenstored's options where they make sense here, so that
//! init scripts written for it keep working.
//!
//! Accepted forms follow getopt_long: `-E 5`, `-E5`, `--entry-nb 5`, `--entry-nb=5`, and
//! bundled flags (`-NV`). Options that only make sense for the C daemon's environment are
//! accepted and ignored, each with a note the daemon prints at start.

use std::path::PathBuf;
use std::time::Duration;

use super::socket::ServerConfig;
use crate::store::Config;

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonOptions {
    /// -E: nodes a domain may own.
    pub entry_nb: Option<u64>,
    /// -S: bytes of one node's data.
    pub entry_size: Option<u64>,
    /// -W: watches per domain.
    pub watch_nb: Option<u64>,
    /// -t: open transactions per domain.
    pub transaction: Option<u64>,
    /// -A: permission entries per node.
    pub perm_nb: Option<u64>,
    /// -M: longest node path.
    pub path_max: Option<u64>,
    /// -Q transaction-nodes=: nodes one transaction may touch.
    pub transaction_nodes: Option<u64>,
    /// -Q memory=: memory a domain may use.
    pub memory: Option<u64>,
    /// -q memory=: memory use above which a warning is logged.
    pub memory_soft: Option<u64>,
    /// -Q outstanding=: answered requests of a guest whose replies wait for room in its ring;
    /// at the limit its ring is not read (host mode). As in the C daemon it limits
    /// unprivileged domains only: socket clients, domain 0, are not limited.
    pub outstanding: Option<u64>,
    /// -w watch-event=: seconds an unsent watch event is kept (0: forever).
    pub watch_event_timeout: Option<u64>,
    /// -T: the trace file.
    pub trace_file: Option<PathBuf>,
    /// -F: where to write our pid.
    pub pid_file: Option<PathBuf>,
    /// -P: print our pid on stdout.
    pub output_pid: bool,
    /// -V: log connections and errors on stderr.
    pub verbose: bool,
    /// -K: keep a released domain's nodes.
    pub keep_orphans: bool,
    /// -b: never poll for the next request before sleeping.
    pub no_busy_poll: bool,
    /// -N: stay in the foreground.
    pub no_fork: bool,
    /// -D: do not serve Xen domains even in a dom0.
    pub no_domain_init: bool,
    /// -X: serve Xen domains; fail to start if this is no dom0.
    pub host_mode: bool,
    /// -U: carry on from the state a live update left in `<rundir>/state_dump`.
    pub live_update: bool,
    /// Why some accepted options have no effect (printed by the daemon at start).
    pub notes: Vec<String>,
}

/// Outcome of parsing.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once per run
pub enum Command {
    Run(DaemonOptions),
    Help,
    /// `--verify-state <file>`: read a state file and say whether this binary can carry on
    /// from it (what a live update asks of the new binary before running it).
    VerifyState(PathBuf),
}

/// The `--help` text.
pub const USAGE: &str = "\
Usage: xenstored [options]

A XenStore daemon. It serves clients on a Unix socket: $XENSTORED_PATH if set, else
$XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket. In a Xen dom0 (where
/dev/xen/evtchn and /proc/xen/xsd_kva exist) it also serves dom0's kernel and every
domain introduced to it, over their rings (host mode). As the C xenstored, it goes into
the background once it serves, unless -N is given. SIGTERM or SIGINT stops it and
removes the socket.

Options:
  -H, --help                 show this text and exit
  -F, --pid-file <file>      write the daemon's pid to <file>
  -P, --output-pid           print the daemon's pid on standard output
  -N, --no-fork              stay in the foreground
  -D, --no-domain-init       do not serve Xen domains, even in a dom0
  -X, --host-mode            serve Xen domains; refuse to start if this is no dom0
  -T, --trace-file <file>    append every message in and out to <file> (see also
                             xenstore-control log on|off, logfile <file>); SIGHUP
                             reopens it
  -V, --verbose              report connections and errors on standard error
  -E, --entry-nb <nb>        nodes one domain may own
  -S, --entry-size <size>    bytes of data one node may hold
  -W, --watch-nb <nb>        watches one domain may hold
  -t, --transaction <nb>     transactions one domain may have open
  -A, --perm-nb <nb>         permission entries one node may carry
  -M, --path-max <chars>     longest node path accepted
  -Q, --quota <what>=<nb>    hard quota; <what> is one of
                               transaction-nodes  nodes one transaction may touch
                               outstanding        replies one guest may leave unread
                                                  before its ring is not read (domain 0,
                                                  and so socket clients, have no limit)
                               memory             accepted, without effect
  -q, --quota-soft <what>=<nb>  soft quota; memory is accepted, without effect
  -w, --timeout <what>=<seconds>  <what> is watch-event: how long an unread watch
                             event is kept before it is dropped (0: forever)
  -U, --live-update          carry on from the state a live update left in the run
                             directory (state_dump); xenstore-control live-update
                             <binary> starts one: the daemon replaces its binary while
                             clients and guests stay connected
      --verify-state <file>  check that this binary can carry on from a state file
  -K, --keep-orphans         keep a released domain's nodes
  -b, --no-busy-poll         sleep as soon as no request is waiting (by default, after
                             serving requests it looks for the next one for a few
                             microseconds first, as long as that keeps paying)

Accepted for compatibility with the C xenstored, without effect:
  -R, --no-recovery          (the store lives in memory only)
  -I, --internal-db [on|off] (the store lives in memory only)
";

enum Arg {
    Flag,
    Value,
    OptionalValue,
}

/// (short, long, argument kind)
const SPEC: &[(char, &str, Arg)] = &[
    ('H', "help", Arg::Flag),
    ('F', "pid-file", Arg::Value),
    ('P', "output-pid", Arg::Flag),
    ('V', "verbose", Arg::Flag),
    ('E', "entry-nb", Arg::Value),
    ('S', "entry-size", Arg::Value),
    ('W', "watch-nb", Arg::Value),
    ('t', "transaction", Arg::Value),
    ('A', "perm-nb", Arg::Value),
    ('M', "path-max", Arg::Value),
    ('Q', "quota", Arg::Value),
    ('q', "quota-soft", Arg::Value),
    ('w', "timeout", Arg::Value),
    ('K', "keep-orphans", Arg::Flag),
    ('b', "no-busy-poll", Arg::Flag),
    ('N', "no-fork", Arg::Flag),
    ('D', "no-domain-init", Arg::Flag),
    ('X', "host-mode", Arg::Flag),
    ('U', "live-update", Arg::Flag),
    ('T', "trace-file", Arg::Value),
    ('R', "no-recovery", Arg::Flag),
    ('I', "internal-db", Arg::OptionalValue),
];

fn number(opt: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("option {opt}: '{v}' is not a non-negative number"))
}

fn key_value<'a>(opt: &str, v: &'a str) -> Result<(&'a str, &'a str), String> {
    v.split_once('=')
        .ok_or_else(|| format!("option {opt}: expected <what>=<value>, got '{v}'"))
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    if let [first, rest @ ..] = args.as_slice() {
        if first == "--verify-state" {
            return match rest {
                [file] => Ok(Command::VerifyState(PathBuf::from(file))),
                _ => Err("--verify-state takes one file and nothing else".into()),
            };
        }
    }
    let mut o = DaemonOptions::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        // Each element: (short letter, attached value if any). Bundled short flags expand to
        // several.
        let mut found: Vec<(char, Option<String>)> = Vec::new();
        if let Some(long) = a.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some((c, _, kind)) = SPEC.iter().find(|(_, l, _)| *l == name) else {
                return Err(format!("unknown option '--{name}' (see --help)"));
            };
            let value = match (kind, attached) {
                (Arg::Flag, Some(_)) => return Err(format!("option --{name} takes no value")),
                (Arg::Value, None) => {
                    let v = args
                        .get(i)
                        .ok_or(format!("option --{name} needs a value"))?;
                    i += 1;
                    Some(v.clone())
                }
                (_, v) => v,
            };
            found.push((*c, value));
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (pos, c) in shorts.char_indices() {
                let Some((_, _, kind)) = SPEC.iter().find(|(s, _, _)| *s == c) else {
                    return Err(format!("unknown option '-{c}' (see --help)"));
                };
                let rest = &shorts[pos + c.len_utf8()..];
                match kind {
                    Arg::Flag => found.push((c, None)),
                    Arg::OptionalValue => {
                        found.push((c, (!rest.is_empty()).then(|| rest.to_string())));
                        break;
                    }
                    Arg::Value => {
                        let v = if !rest.is_empty() {
                            rest.to_string()
                        } else {
                            let v = args.get(i).ok_or(format!("option -{c} needs a value"))?;
                            i += 1;
                            v.clone()
                        };
                        found.push((c, Some(v)));
                        break;
                    }
                }
            }
        } else {
            return Err(format!("unexpected argument '{a}' (see --help)"));
        }
        for (c, v) in found {
            let v = v.unwrap_or_default();
            let opt = format!("-{c}");
            match c {
                'H' => return Ok(Command::Help),
                'F' => o.pid_file = Some(PathBuf::from(v)),
                'P' => o.output_pid = true,
                'V' => o.verbose = true,
                'E' => o.entry_nb = Some(number(&opt, &v)?),
                'S' => o.entry_size = Some(number(&opt, &v)?),
                'W' => o.watch_nb = Some(number(&opt, &v)?),
                't' => o.transaction = Some(number(&opt, &v)?),
                'A' => o.perm_nb = Some(number(&opt, &v)?),
                'M' => o.path_max = Some(number(&opt, &v)?),
                'Q' => {
                    let (what, n) = key_value(&opt, &v)?;
                    let n = number(&opt, n)?;
                    match what {
                        "transaction-nodes" => o.transaction_nodes = Some(n),
                        "memory" => {
                            o.memory = Some(n);
                            o.notes.push(
                                "-Q memory ignored: memory is not accounted per domain".into(),
                            );
                        }
                        "outstanding" => o.outstanding = Some(n),
                        _ => return Err(format!("option -Q: unknown quota '{what}'")),
                    }
                }
                'q' => {
                    let (what, n) = key_value(&opt, &v)?;
                    let n = number(&opt, n)?;
                    match what {
                        "memory" => {
                            o.memory_soft = Some(n);
                            o.notes.push(
                                "-q memory ignored: memory is not accounted per domain".into(),
                            );
                        }
                        _ => return Err(format!("option -q: unknown soft quota '{what}'")),
                    }
                }
                'w' => {
                    let (what, n) = key_value(&opt, &v)?;
                    let n = number(&opt, n)?;
                    match what {
                        "watch-event" => o.watch_event_timeout = Some(n),
                        _ => return Err(format!("option -w: unknown timeout '{what}'")),
                    }
                }
                'K' => o.keep_orphans = true,
                'b' => o.no_busy_poll = true,
                'N' => o.no_fork = true,
                'D' => o.no_domain_init = true,
                'X' => o.host_mode = true,
                'U' => o.live_update = true,
                'T' => o.trace_file = Some(PathBuf::from(v)),
                'R' => o
                    .notes
                    .push("-R ignored: the store lives in memory only".into()),
                'I' => match v.as_str() {
                    "" | "on" => {}
                    "off" => o
                        .notes
                        .push("-I off ignored: the store lives in memory only".into()),
                    _ => return Err(format!("option -I: expected on or off, got '{v}'")),
                },
                _ => unreachable!("every SPEC letter is matched"),
            }
        }
    }
    Ok(Command::Run(o))
}

impl DaemonOptions {
    /// The engine's configuration these options imply (defaults for what is not given).
    pub fn store_config(&self) -> Config {
        let mut cfg = Config::default();
        let q = &mut cfg.quota;
        // The engine counts in u32; a larger limit is as good as none.
        let set = |slot: &mut u32, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v.min(u32::MAX as u64) as u32;
            }
        };
        set(&mut q.nodes, self.entry_nb);
        set(&mut q.node_size, self.entry_size);
        set(&mut q.watches, self.watch_nb);
        set(&mut q.transactions, self.transaction);
        set(&mut q.node_permissions, self.perm_nb);
        set(&mut q.path_max, self.path_max);
        set(&mut q.transaction_nodes, self.transaction_nodes);
        set(&mut q.outstanding, self.outstanding);
        cfg.keep_orphans = self.keep_orphans;
        cfg
    }

    /// The socket transport's settings these options imply.
    pub fn server_config(&self) -> ServerConfig {
        let mut cfg = ServerConfig {
            verbose: self.verbose,
            busy_poll: !self.no_busy_poll,
            ..ServerConfig::default()
        };
        if let Some(secs) = self.watch_event_timeout {
            cfg.watch_event_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> DaemonOptions {
        match parse(args.iter().copied()).unwrap() {
            Command::Run(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn live_update_options() {
        assert!(run(&["-U"]).live_update && run(&["--live-update", "-N"]).live_update);
        assert_eq!(
            parse(["--verify-state", "/run/x"]).unwrap(),
            Command::VerifyState(PathBuf::from("/run/x"))
        );
        assert!(parse(["--verify-state"]).is_err());
        assert!(parse(["--verify-state", "a", "b"]).is_err());
    }

    #[test]
    fn all_getopt_forms() {
        let o = run(&[
            "-E",
            "10",
            "-S5",
            "--watch-nb",
            "7",
            "--transaction=3",
            "-NV",
            "-A",
            "4",
        ]);
        assert_eq!(o.entry_nb, Some(10));
        assert_eq!(o.entry_size, Some(5));
        assert_eq!(o.watch_nb, Some(7));
        assert_eq!(o.transaction, Some(3));
        assert_eq!(o.perm_nb, Some(4));
        assert!(o.verbose && o.no_fork);
        assert!(!o.no_domain_init && !o.host_mode);
        assert!(o.notes.is_empty());
        let q = o.store_config().quota;
        assert_eq!(
            (
                q.nodes,
                q.node_size,
                q.watches,
                q.transactions,
                q.node_permissions
            ),
            (10, 5, 7, 3, 4)
        );
        let d = run(&[]).store_config();
        assert_eq!(
            d.quota,
            Config::default().quota,
            "no options, the engine's defaults"
        );
        assert_eq!(
            run(&["-E", "99999999999"]).store_config().quota.nodes,
            u32::MAX
        );
    }

    #[test]
    fn quotas_and_timeouts() {
        let o = run(&[
            "-Q",
            "transaction-nodes=100",
            "--quota=memory=2048",
            "-Qoutstanding=5",
            "-q",
            "memory=1024",
            "-w",
            "watch-event=0",
            "--path-max",
            "512",
        ]);
        assert_eq!(o.transaction_nodes, Some(100));
        assert_eq!(o.memory, Some(2048));
        assert_eq!(o.outstanding, Some(5));
        assert_eq!(o.memory_soft, Some(1024));
        assert_eq!(o.path_max, Some(512));
        assert_eq!(o.notes.len(), 2, "memory quotas are noted as ignored");
        assert_eq!(o.server_config().watch_event_timeout, None);
        let cfg = o.store_config();
        assert_eq!(
            (
                cfg.quota.transaction_nodes,
                cfg.quota.outstanding,
                cfg.quota.path_max
            ),
            (100, 5, 512)
        );
        let o = run(&["--timeout", "watch-event=3"]);
        assert_eq!(
            o.server_config().watch_event_timeout,
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            run(&[]).server_config().watch_event_timeout,
            Some(Duration::from_secs(20))
        );
    }

    #[test]
    fn compatibility_options_are_noted() {
        let o = run(&[
            "-D",
            "-T",
            "/tmp/t",
            "-R",
            "-I",
            "--internal-db=off",
            "-F",
            "/run/x.pid",
            "-P",
            "-K",
        ]);
        assert_eq!(o.notes.len(), 2);
        assert_eq!(o.trace_file, Some(PathBuf::from("/tmp/t")));
        assert_eq!(o.pid_file, Some(PathBuf::from("/run/x.pid")));
        assert!(o.output_pid && o.keep_orphans && o.no_domain_init);
        assert!(run(&["--host-mode"]).host_mode);
        assert!(o.store_config().keep_orphans);
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["-N", "-H"]).unwrap(), Command::Help);
        for bad in [
            &["-E"][..],
            &["-E", "x"],
            &["--bogus"],
            &["-Z"],
            &["-Q", "memory"],
            &["-Q", "nodes=3"],
            &["-q", "outstanding=1"],
            &["-w", "other=1"],
            &["stray"],
            &["--no-fork=1"],
            &["-Ix"],
        ] {
            let e = parse(bad.iter().copied()).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
