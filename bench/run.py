#!/usr/bin/env python3
"""Benchmarks: ours against the reference, alternating in one run, printing medians and ratios.

  bench/run.py [--rounds N] [--scale F] [section ...]   sections: client daemon embedded floors

client:   one xsbench binary, Debian's libxenstore vs ours (LD_LIBRARY_PATH), same C xenstored.
daemon:   Debian's libxenstore as the client, our xenstored vs Debian's C xenstored and oxenstored.
embedded: ours in-process (XENSTORE_EMBEDDED=1) vs Debian's libxenstore over a socket to the
          C xenstored.
floors:   bench/floor.c, no xenstore code: what the kernel charges here for a socket round trip
          and for handing an event to another thread that makes a pipe readable; the ceilings
          that any design built on those mechanisms stays under.
Each figure is the median operations per second over the rounds; the order of the contenders
alternates every round so drift on a noisy machine hits both alike.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_LIB = os.path.join(ROOT, ".reference/root/usr/lib/x86_64-linux-gnu")
OUR_LIB = os.path.join(ROOT, "target/release")
DAEMON = os.path.join(ROOT, "scripts/reference/daemon.sh")
BIN = os.path.join(tempfile.gettempdir(), "xsbench-%d" % os.getuid())
FLOOR_BIN = os.path.join(tempfile.gettempdir(), "xsfloor-%d" % os.getuid())


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, **kw)


def build():
    sh("gcc", "-O2", "-Wall", "-I", os.path.join(ROOT, "include"), "-o", BIN,
       os.path.join(ROOT, "bench/xsbench.c"), "-L", REF_LIB, "-Wl,-rpath-link," + REF_LIB,
       "-lxenstore", "-lpthread", "-ldl")
    sh("gcc", "-O2", "-Wall", "-o", FLOOR_BIN, os.path.join(ROOT, "bench/floor.c"), "-lpthread")


class Daemon:
    def __init__(self, kind):
        self.kind = kind
        self.rundir = tempfile.mkdtemp(prefix="xsbench-%s-" % kind)

    def __enter__(self):
        out = sh(DAEMON, "start", self.kind, self.rundir, stdout=subprocess.PIPE).stdout
        self.socket = out.strip().splitlines()[-1]
        return self

    def pid(self):
        with open(os.path.join(self.rundir, "daemon.pid")) as f:
            return int(f.read().split()[0])

    def __exit__(self, *exc):
        subprocess.run([DAEMON, "stop", self.rundir], stdout=subprocess.DEVNULL)


def env_for(lib, socket=None, embedded=False):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = OUR_LIB if lib == "ours" else REF_LIB
    env.pop("XENSTORE_EMBEDDED", None)
    if embedded:
        env["XENSTORE_EMBEDDED"] = "1"
    if socket:
        env["XENSTORED_PATH"] = socket
    return env


def run_once(workload, count, env, binary=BIN):
    """One run of `binary WORKLOAD COUNT` (xsbench or floor); the rate it prints."""
    p = subprocess.run([binary, workload, str(count)], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (workload, p.stderr.strip()))
    return float(p.stdout.split()[-1])


def compare(title, workloads, contenders, rounds, baseline):
    """contenders: name -> (env, count_scale); prints median ops/s and ratio to baseline."""
    print("\n## %s" % title)
    names = list(contenders)
    print("| workload | " + " | ".join("%s ops/s" % n for n in names) + " | " +
          " | ".join("%s/%s" % (n, baseline) for n in names if n != baseline) + " | target |")
    print("|---" * (1 + len(names) + len(names) - 1 + 1) + "|")
    results = {}
    for workload, count, target in workloads:
        samples = {n: [] for n in names}
        for r in range(rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for n in order:
                env = contenders[n]
                samples[n].append(run_once(workload, count, env))
        med = {n: statistics.median(samples[n]) for n in names}
        ratios = ["%.2fx" % (med[n] / med[baseline]) for n in names if n != baseline]
        print("| %s | " % workload + " | ".join("%.0f" % med[n] for n in names) + " | " +
              " | ".join(ratios) + " | %s |" % target, flush=True)
        results[workload] = med
    return results


def section_client(args):
    s = args.scale
    with Daemon("cxenstored") as d:
        compare("Client library: Debian's libxenstore vs ours, same C xenstored 4.17",
                [("read", int(20000 * s), ">= 0.9x"), ("write", int(20000 * s), ">= 0.9x"),
                 ("txn", int(5000 * s), ">= 0.9x"),
                 ("read_watched", int(20000 * s), ">= 1.3x"),
                 ("threads4", int(40000 * s), ">= 2x"),
                 ("watch_events", int(10000 * s), ">= 1.5x")],
                {"debian": env_for("debian", d.socket), "ours": env_for("ours", d.socket)},
                args.rounds, "debian")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fill_rss(kind, nodes):
    with Daemon(kind) as d:
        env = env_for("debian", d.socket)
        env["XSBENCH_HOLD"] = "1"
        p = subprocess.Popen([BIN, "fill", str(nodes)], env=env, stdout=subprocess.PIPE,
                             text=True)
        p.stdout.readline()
        time.sleep(0.5)
        rss = rss_kb(d.pid())
        p.kill()
        p.wait()
        return rss


def section_daemon(args):
    s = args.scale
    daemons = ["cxenstored", "oxenstored", "ours"]
    # Each daemon runs in turn for every round; all are started once.
    ctx = [Daemon(k) for k in daemons]
    started = []
    try:
        for d in ctx:
            started.append(d.__enter__())
        compare("Daemons: Debian's libxenstore as client, our xenstored vs C and OCaml xenstored",
                [("read", int(20000 * s), ">= 0.9x C"), ("write", int(20000 * s), ">= 0.9x C"),
                 ("directory", int(20000 * s), ">= 0.9x C"), ("txn", int(5000 * s), ">= 0.9x C"),
                 ("mixed64", int(64000 * s), ">= 1.5x C"),
                 ("fanout1000", max(5, int(40 * s)), ">= 2x C")],
                {k: env_for("debian", d.socket) for k, d in zip(daemons, started)},
                args.rounds, "cxenstored")
    finally:
        for d in started:
            d.__exit__()
    print("\n## Daemon resident memory holding 100,000 nodes (16-byte values)")
    print("| daemon | VmRSS KiB | target |\n|---|---|---|")
    for k in daemons:
        print("| %s | %d | %s |" % (k, fill_rss(k, int(100000 * min(1.0, s))),
                                    "<= cxenstored" if k == "ours" else ""), flush=True)


def section_embedded(args):
    s = args.scale
    with Daemon("cxenstored") as d:
        ref = env_for("debian", d.socket)
        emb = env_for("ours", embedded=True)
        print("\n## Embedded store vs Debian's libxenstore over a socket to the C xenstored")
        print("| workload | debian+cxenstored ops/s | ours embedded ops/s | ratio | target |")
        print("|---|---|---|---|---|")
        # The embedded loops run 50 (20) times as many operations, so that they too last a
        # few tenths of a second: shorter runs mostly measure the warm-up.
        for workload, ref_w, count, mult, target in [
                ("read", "read", 20000, 50, ">= 30x"),
                ("guest_read", "read", 20000, 50, ">= 10x"),
                ("watch_events", "watch_events", 10000, 20, ">= 10x")]:
            a, b = [], []
            for r in range(args.rounds):
                pair = [(a, ref_w, ref, 1), (b, workload, emb, mult)]
                if r % 2:
                    pair.reverse()
                for acc, w, env, mult in pair:
                    acc.append(run_once(w, int(count * s * mult), env))
            ma, mb = statistics.median(a), statistics.median(b)
            print("| %s | %.0f | %.0f | %.1fx | %s |" % (workload, ma, mb, mb / ma, target),
                  flush=True)


def section_floors(args):
    n = int(100000 * args.scale)
    print("\n## Mechanism floors on this machine (bench/floor.c, no xenstore code)")
    print("| mechanism | round trips/s | what it bounds |\n|---|---|---|")
    for mode, bounds in [
            ("socket_rtt", "any request/reply over a Unix socket to a sleeping peer"),
            ("hop_pipe", "events handed to a sleeping watch thread that fills the xs_fileno pipe"),
            ("spin_pipe", "the same with a watch thread that spins instead of sleeping"),
            ("direct_pipe", "the pipe filled by the writing thread itself (no second thread)")]:
        rate = statistics.median(run_once(mode, n, None, FLOOR_BIN) for _ in range(args.rounds))
        print("| %s | %.0f | %s |" % (mode, rate, bounds), flush=True)
    with Daemon("cxenstored") as d:
        env = dict(os.environ, XENSTORED_PATH=d.socket, XS_DEPTH="4")
        rate = statistics.median(run_once("daemon_pipeline", n, env, FLOOR_BIN)
                                 for _ in range(args.rounds))
        print("| daemon_pipeline (C xenstored, 4 in flight) | %.0f | threads4: one connection, "
              "four requests in flight, no library |" % rate, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    ap.add_argument("sections", nargs="*", default=["client", "daemon", "embedded", "floors"])
    args = ap.parse_args()
    sh(os.path.join(ROOT, "scripts/reference/fetch.sh"), stdout=subprocess.DEVNULL)
    build()
    print("# xsbench: %d rounds, scale %.2f, %s" % (args.rounds, args.scale,
                                                  time.strftime("%Y-%m-%d")))
    for sec in args.sections:
        {"client": section_client, "daemon": section_daemon,
         "embedded": section_embedded, "floors": section_floors}[sec](args)


if __name__ == "__main__":
    sys.exit(main())
