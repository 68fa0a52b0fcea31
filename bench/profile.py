#!/usr/bin/env python3
"""Where the time of one bench/xsbench.c workload goes, per operation, for client and daemon:
user and system CPU time, context switches, system calls (strace -c) and user-space
instructions (valgrind --tool=callgrind, with the functions that execute the most). The
counts bound what a change can gain: system calls and wake-ups cost the same whoever makes
them, instructions are what the code itself costs. No hardware counters are needed (this VM
has none).

  bench/profile.py [--ops N] [--pinned] [--callgrind client|daemon] [--top K]
                   WORKLOAD PAIRING [PAIRING ...]

PAIRING is library+daemon: the library debian, ours or ours-nopoll (XENSTORE_BUSY_POLL=0),
the daemon C, oxenstored, ours or ours-nopoll (--no-busy-poll); e.g. debian+C. Under callgrind
measure without busy polling: a polling side counts the instructions of its spinning, which
depend on how long the other side takes. --pinned puts client and daemon on CPU 0. Each pairing is measured in
three runs: a plain one (CPU time, context switches), one under strace (system calls of the
side not traced are not slowed), and with --callgrind one with that side under callgrind.
CPU time, context switches and system calls cover the whole client process and the daemon's
threads over the run, set-up included: use enough operations, or --base B to subtract a run
of B operations (per operation then means per operation beyond B). Instructions cover the
timed loop and its set-up alike. Take the same lock as for bench/run.py: only one benchmark at a time.
"""
import argparse, os, re, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: daemons, libraries, the build)

TICK = os.sysconf("SC_CLK_TCK")


def daemon_stats(pid):
    """User and system seconds, context switches, over all the daemon's threads."""
    user = system = switches = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
        except OSError:
            continue
        user += int(fields[11]) / TICK
        system += int(fields[12]) / TICK
        switches += sum(int(x) for x in re.findall(r"ctxt_switches:\s+(\d+)", status))
    return user, system, switches


def client_cmd(args, pinned, ops=None):
    return (["taskset", "-c", ",".join(map(str, run.PIN))] if pinned else []) + \
        [run.BIN, args.workload, str(ops or args.ops)]


def totals(args, env, daemon, ops):
    """Client and daemon CPU (user, system), context switches and ops/s of one run."""
    before = daemon_stats(daemon.pid())
    p = subprocess.Popen(client_cmd(args, args.pinned, ops), env=env, stdout=subprocess.PIPE,
                         text=True)
    _, status, ru = os.wait4(p.pid, 0)
    out = p.stdout.read()
    if status:
        raise RuntimeError("xsbench failed: %s" % out)
    after = daemon_stats(daemon.pid())
    return [float(out.split()[1]), ru.ru_utime, ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw] + \
        [a - b for a, b in zip(after, before)]


def plain(args, env, daemon):
    """Client and daemon CPU (user, system) and context switches per operation."""
    t = totals(args, env, daemon, args.ops)
    if args.base:
        b = totals(args, env, daemon, args.base)
        t = [t[0]] + [x - y for x, y in zip(t[1:], b[1:])]
    n = args.ops - args.base
    return {
        "ops/s": t[0],
        "client user us": t[1] / n * 1e6, "client sys us": t[2] / n * 1e6,
        "client switches": t[3] / n,
        "daemon user us": t[4] / n * 1e6, "daemon sys us": t[5] / n * 1e6,
        "daemon switches": t[6] / n,
    }


def strace_counts(path):
    """{syscall: calls} from strace -c output."""
    calls = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    return calls


def traced(args, env, daemon, ops):
    """{syscall: calls} of the client and of the daemon, each traced in a run of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "client")
        subprocess.run(["strace", "-f", "-c", "-o", out] + client_cmd(args, args.pinned, ops),
                       env=env, check=True, stdout=subprocess.DEVNULL)
        client = strace_counts(out)
        out = os.path.join(tmp, "daemon")
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(daemon.pid())],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)  # strace attaches to every thread
        subprocess.run(client_cmd(args, args.pinned, ops), env=env, check=True,
                       stdout=subprocess.DEVNULL)
        tracer.terminate()
        tracer.wait()
        return client, strace_counts(out)


def syscalls(args, env, daemon):
    """System calls per operation of each side."""
    client, server = traced(args, env, daemon, args.ops)
    if args.base:
        bc, bs = traced(args, env, daemon, args.base)
        client = {k: v - bc.get(k, 0) for k, v in client.items()}
        server = {k: v - bs.get(k, 0) for k, v in server.items()}
    n = args.ops - args.base
    fmt = lambda calls: ", ".join("%s %.2f" % (k, v / n) for k, v in
                                  sorted(calls.items(), key=lambda kv: -kv[1])
                                  if v / n >= 0.01)
    return {"client syscalls/op": "%.2f (%s)" % (sum(client.values()) / n, fmt(client)),
            "daemon syscalls/op": "%.2f (%s)" % (sum(server.values()) / n, fmt(server))}


def annotate(path, n, top):
    """Instructions per operation, and the `top` functions below the outermost frames (more
    than 99% of the total) with their inclusive share. Inclusive, since a dump taken while
    the program runs (callgrind_control -d) charges exclusive costs to the outermost frame."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path], text=True,
                         stdout=subprocess.PIPE, check=True).stdout
    total = None
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.+?)(?: \[.*\])?$", line)
        if m and total is not None and float(m.group(2)) < 99 and len(rows) < top:
            rows.append("%s %.0f%%" % (m.group(3).split(":", 1)[-1], float(m.group(2))))
    return total / n, rows


def callgrind_client(args, env):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] +
                       client_cmd(args, False), env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return annotate(out, args.ops, args.top)


def callgrind_daemon(args, env, kind, dargs):
    """The daemon started under callgrind; counters zeroed once it serves, dumped after."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        os.environ["XS_DAEMON_WRAP"] = "valgrind --tool=callgrind --callgrind-out-file=" + out
        os.environ["XS_DAEMON_TIMEOUT"] = "60"
        try:
            with run.Daemon(kind, dargs) as d:
                subprocess.run(["callgrind_control", "-z", str(d.pid())], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(client_cmd(args, False), env=dict(env, XENSTORED_PATH=d.socket),
                               check=True, stdout=subprocess.DEVNULL)
                subprocess.run(["callgrind_control", "-d", str(d.pid())], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                dumps = sorted(p for p in os.listdir(tmp) if p.startswith("cg.out."))
                return annotate(os.path.join(tmp, dumps[-1]), args.ops, args.top)
        finally:
            os.environ.pop("XS_DAEMON_WRAP")
            os.environ.pop("XS_DAEMON_TIMEOUT")


def pairing(name):
    """(library, busy polling of the library, daemon kind, daemon arguments)."""
    lib, daemon = name.split("+")
    kind = {"C": "cxenstored", "oxenstored": "oxenstored", "ours": "ours",
            "ours-nopoll": "ours"}[daemon]
    return (lib.split("-")[0], lib != "ours-nopoll", kind,
            "--no-busy-poll" if daemon == "ours-nopoll" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=30000)
    ap.add_argument("--base", type=int, default=0,
                    help="subtract a run of this many operations (set-up cancels out)")
    ap.add_argument("--pinned", action="store_true")
    ap.add_argument("--callgrind", choices=("client", "daemon"))
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("workload")
    ap.add_argument("pairings", nargs="+")
    args = ap.parse_args()
    run.build()
    print("# %s, %d operations%s, %s" % (
        args.workload, args.ops, " less a run of %d" % args.base if args.base else "",
        "pinned to CPU 0" if args.pinned else "not pinned"))
    for name in args.pairings:
        lib, poll, kind, dargs = pairing(name)
        with run.Daemon(kind, dargs) as d:
            d.pin(run.PIN if args.pinned else run.ALL_CPUS)
            env = run.env_for(lib, d, busy_poll=poll)
            row = plain(args, env, d)
            row.update(syscalls(args, env, d))
        print("\n## %s" % name)
        for k, v in row.items():
            print("- %s: %s" % (k, "%.2f" % v if isinstance(v, float) else v))
        if args.callgrind:
            if args.callgrind == "client":
                with run.Daemon(kind, dargs) as d:
                    ir, top = callgrind_client(args, run.env_for(lib, d, busy_poll=poll))
            else:
                ir, top = callgrind_daemon(args, run.env_for(lib, busy_poll=poll), kind,
                                           dargs)
            print("- %s instructions/op (callgrind): %.0f" % (args.callgrind, ir))
            print("- where: %s" % "; ".join(top))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
