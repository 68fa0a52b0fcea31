#!/usr/bin/env python3
"""Turns an excerpt of the C xenstored's trace (`xenstored -T`) of one domain's creation into
the replay format bench/domain_create.c reads:

  bench/trace2replay.py bench/recorded/xl-create-pv.trace > bench/domain_create.trace

Every connection with requests in the excerpt becomes a part (`conn`), replayed by its own
thread with its own connection, all of one domain's parts at once. What the converter does:

- The domain id (the first INTRODUCE's, else the first GET_DOMAIN_PATH's) becomes $D where it
  is a path component, a permission's domain, the value of a node whose name ends in "id", or
  the number in a watch token such as "dom1"; the domain's UUID (the /vm/UUID it gets) becomes
  $U everywhere.
- Paths relative to the connection's home are made absolute (the connections of the excerpt
  are dom0's: /local/domain/0).
- The C trace does not say which requests belong to an open transaction: those sent on the
  connection between TRANSACTION_START and TRANSACTION_END are taken as inside it (but
  GET_DOMAIN_PATH, which has none).
- Order between parts is what the recorded processes waited for, kept as they kept it:
  * a read that returned a value another part had written, on a connection holding a watch
    that covers it, becomes `waitfor` (read until the value is there, waiting for an event
    between reads), as the toolstack waits for xenconsoled's tty;
  * a request that followed a watch event caused by another part's write, and is not such a
    read, is preceded by `waitfor` on the event's node and the value the write gave it (one
    read more than recorded);
  * a request that followed an event the replay cannot produce (@introduceDomain, fired by
    INTRODUCE, which needs a real domain and is not replayed) waits for the point where the
    other part sent it (`signal` / `await`, inside the replayer, no traffic);
  * a connection created in the excerpt after another one's last request (a process forked
    from it) starts after that part ends.
- Watches set before the excerpt (seen only by their events) are set before the timed part,
  narrowed to the domain's own nodes: the shallowest node above the events' paths that names
  the domain (one domain's replay then sees its own events only, as one shared watch would
  see each event once).
- Connections created in the excerpt are opened for each domain (`conn NAME new`, timed);
  the others belong to processes already running (xenconsoled, the kernel) and are opened once.
- Cleanup (untimed) removes, for every node written, its shallowest ancestor that names the
  domain or its UUID.
"""
import re
import sys

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINE = re.compile(r"^(IN|OUT) (\S+) \d{8} \d\d:\d\d:\d\d (\w+) \((.*)\)$")
HOME = "/local/domain/0"

# Requests replayed: trace name -> replay word.
SIMPLE = {"READ": "read", "DIRECTORY": "dir", "GET_PERMS": "getperms", "MKDIR": "mkdir",
          "RM": "rm"}
WRITES = ("WRITE", "MKDIR", "RM", "SET_PERMS")


class Request:
    def __init__(self, pos, conn, kind, payload):
        self.pos, self.conn, self.kind, self.payload = pos, conn, kind, payload
        self.reply = None  # (kind, payload)
        self.in_txn = False
        self.events = []  # watch events this connection got since its previous request


class Conn:
    def __init__(self, addr, created_at):
        self.addr, self.created_at = addr, created_at
        self.requests = []
        self.pending = []  # requests waiting for their reply
        self.events = []  # since the last request
        self.txn = False
        self.name = None


def fields(payload):
    """A request's payload as the C trace prints it: NULs shown as spaces."""
    return payload.split(" ")


def parse(lines):
    conns, order, header, names = {}, [], [], {}
    for pos, line in enumerate(lines):
        line = line.rstrip("\n")
        if line.startswith("#"):
            m = re.match(r"^# name (\S+) (\S+)$", line)
            if m:
                names[m.group(1)] = m.group(2)
            else:
                header.append(line)
            continue
        if line.startswith("CREATE connection "):
            addr = line.split()[2]
            conns[addr] = Conn(addr, pos)
            continue
        m = LINE.match(line)
        if not m:
            continue  # CREATE/DESTROY of watches and transactions, connections going away
        way, addr, kind, payload = m.groups()
        c = conns.get(addr)
        if c is None:
            c = conns[addr] = Conn(addr, None)
        if c not in order:
            order.append(c)
        if way == "IN":
            r = Request(pos, c, kind, payload)
            r.events, c.events = c.events, []
            if kind == "TRANSACTION_START":
                c.txn = True
            elif kind == "TRANSACTION_END":
                c.txn = False
            elif kind != "GET_DOMAIN_PATH":
                r.in_txn = c.txn
            c.requests.append(r)
            c.pending.append(r)
        elif kind == "WATCH_EVENT":
            path, token = fields(payload)[:2]
            c.events.append((pos, path, token))
        else:
            c.pending.pop(0).reply = (kind, payload)
    for c in order:
        c.name = names.get(c.addr)
    unnamed = [c for c in order if c.requests and not c.name]
    for i, c in enumerate(unnamed):
        c.name = "c%d" % (i + 1)
    return [c for c in order if c.requests], header


def absolute(path):
    return path if path.startswith("/") or path.startswith("@") else HOME + "/" + path


class Generaliser:
    def __init__(self, domid, uuid):
        self.domid, self.uuid = domid, uuid

    def path(self, p):
        if self.uuid:
            p = p.replace(self.uuid, "$U")
        if p.startswith("@"):
            return p
        return "/".join("$D" if part == self.domid else part for part in p.split("/"))

    def value(self, path, v):
        if self.uuid:
            v = v.replace(self.uuid, "$U")
        if v == self.domid and path.rsplit("/", 1)[-1].endswith("id"):
            return "$D"
        if v.startswith("/"):
            return self.path(v)
        return v

    def perm(self, p):
        return p[0] + "$D" if p[1:] == self.domid else p

    def token(self, t):
        return re.sub(r"(?<=[A-Za-z])%s(?![0-9])" % re.escape(self.domid), "$D", t)


def find_ids(conns):
    domid = uuid = None
    for c in conns:
        for r in c.requests:
            if r.kind == "INTRODUCE":
                domid = fields(r.payload)[0]
                break
        if domid:
            break
    if domid is None:
        for c in conns:
            for r in c.requests:
                if r.kind == "GET_DOMAIN_PATH" and fields(r.payload)[0] != "0":
                    domid = fields(r.payload)[0]
                    break
            if domid:
                break
    for c in conns:
        for r in c.requests:
            m = UUID.search(r.payload)
            if r.kind == "WRITE" and r.payload.startswith("/vm/") and m:
                uuid = m.group(0)
                break
        if uuid:
            break
    if domid is None:
        sys.exit("trace2replay: no INTRODUCE or GET_DOMAIN_PATH names the domain")
    return domid, uuid


class Store:
    """What the excerpt's writes left in each node: path -> (value, writer, position). Nodes
    from before the excerpt are unknown; a transaction's writes land at its commit."""

    def __init__(self):
        self.nodes, self.txn = {}, {}

    def apply(self, r, path, value, at):
        if r.kind == "RM":
            for p in [p for p in self.nodes if p == path or p.startswith(path + "/")]:
                del self.nodes[p]
            return
        parts = path.split("/")
        for i in range(2, len(parts)):  # ancestors created on the way
            self.nodes.setdefault("/".join(parts[:i]), ("", r.conn, at))
        if r.kind == "WRITE":
            self.nodes[path] = (value, r.conn, at)
        elif r.kind == "MKDIR":
            self.nodes.setdefault(path, ("", r.conn, at))

    def request(self, r):
        if r.reply is None or r.reply[0] == "ERROR":
            return
        if r.kind == "TRANSACTION_END":
            for w, path, value in self.txn.pop(r.conn, []):
                self.apply(w, path, value, r.pos)
            return
        if r.kind not in ("WRITE", "MKDIR", "RM"):
            return
        path, _, value = r.payload.partition(" ")
        path = absolute(path)
        if r.in_txn:
            self.txn.setdefault(r.conn, []).append((r, path, value))
        else:
            self.apply(r, path, value, r.pos)


def covered(watches, path):
    return any(path == w or path.startswith(w.rstrip("/") + "/") for w in watches)


def convert(lines):
    conns, header = parse(lines)
    domid, uuid = find_ids(conns)
    g = Generaliser(domid, uuid)
    # Watches from before the excerpt: tokens a connection got events for but never set.
    set_tokens = {c: {fields(r.payload)[1] for r in c.requests if r.kind == "WATCH"}
                  for c in conns}
    prewatch = {c: {} for c in conns}
    for c in conns:
        for r in c.requests:
            for _, path, token in r.events:
                if token in set_tokens[c] or path.startswith("@"):
                    continue
                parts = absolute(path).split("/")
                if domid in parts:
                    narrowed = "/".join(parts[:parts.index(domid) + 1])
                    prewatch[c].setdefault(token, narrowed)
    # Every request in the order the daemon saw them, to replay the store's changes.
    everything = sorted((r for c in conns for r in c.requests), key=lambda r: r.pos)
    store = Store()
    snapshot = {}  # request -> the store as that request found it (only what it needs)
    introduced_by = None
    for r in everything:
        snapshot[r] = dict(store.nodes)
        if r.kind == "INTRODUCE":
            introduced_by = r
        store.request(r)
    written = set()
    for r in everything:
        if r.kind in ("WRITE", "MKDIR") and r.reply and r.reply[0] != "ERROR":
            written.add(absolute(r.payload.partition(" ")[0]))

    # A part started after another one's last request: created after it, both in the excerpt.
    after = {}
    for c in conns:
        if c.created_at is None:
            continue
        before = [o for o in conns if o is not c and o.created_at is not None and
                  o.requests[-1].pos < c.created_at]
        if before:
            after[c] = max(before, key=lambda o: o.requests[-1].pos)
    signals = {o: "%s-end" % o.name for o in after.values()}

    out = []
    emit = out.append
    for c in conns:
        emit("")
        emit("conn %s%s" % (c.name, " new" if c.created_at is not None else ""))
        emit("# recorded as connection %s%s" % (
            c.addr, ", created in the excerpt" if c.created_at is not None
            else ", open before the excerpt"))
        for token, path in sorted(prewatch[c].items()):
            emit("# a watch set before the excerpt, narrowed to this domain's nodes")
            emit("prewatch %s %s" % (g.path(path), g.token(token)))
        if c in after:
            emit("await %s" % signals[after[c]])
        watches = set(prewatch[c].values())
        synced = -1  # the latest write of another part this part has waited for
        for r in c.requests:
            nodes = snapshot[r]
            need = None  # (path, value, position) to wait for before r
            for pos, path, token in r.events:
                if path.startswith("@"):
                    if path == "@introduceDomain" and introduced_by is not None and \
                            introduced_by.conn is not c and introduced_by.pos > synced:
                        emit("await introduce")
                        synced = introduced_by.pos
                    continue
                node = nodes.get(absolute(path))
                if node is None or node[1] is c or node[2] <= synced:
                    continue
                if need is None or node[2] > need[2]:
                    need = (absolute(path), node[0], node[2])
            fold = None
            if r.kind == "READ" and r.reply and r.reply[0] == "READ":
                path = absolute(fields(r.payload)[0])
                node = nodes.get(path)
                if node and node[1] is not c and node[0] == r.reply[1] and \
                        covered(watches, path):
                    fold = (path, node[0], node[2])
            if need and not (fold and fold[2] >= need[2]) and covered(watches, need[0]):
                emit(("waitfor %s %s" % (g.path(need[0]), g.value(need[0], need[1]))).rstrip())
                synced = max(synced, need[2])
            if fold:
                emit(("waitfor %s %s" % (g.path(fold[0]), g.value(fold[0], fold[1]))).rstrip())
                synced = max(synced, fold[2])
                continue
            line = request(r, g, introduced_by)
            if line:
                emit(line)
            if r.kind == "WATCH":
                watches.add(absolute(fields(r.payload)[0]))
            elif r.kind == "UNWATCH":
                watches.discard(absolute(fields(r.payload)[0]))
        if c in signals:
            emit("signal %s" % signals[c])

    cleanup = set()
    for p in written:
        parts = g.path(p).split("/")
        for i, part in enumerate(parts):
            if part in ("$D", "$U"):
                cleanup.add("/".join(parts[:i + 1]))
                break
    emit("")
    emit("cleanup")
    for p in sorted(cleanup, key=lambda p: (-p.count("/"), p)):
        emit("rm %s" % p)
    return header, out, domid, uuid


def request(r, g, introduced_by):
    f = fields(r.payload)
    if r.kind in SIMPLE:
        return "%s %s" % (SIMPLE[r.kind], g.path(absolute(f[0])))
    if r.kind == "WRITE":
        path, _, value = r.payload.partition(" ")
        path = absolute(path)
        return ("write %s %s" % (g.path(path), g.value(path, value))).rstrip(" ")
    if r.kind == "SET_PERMS":
        return "perms %s %s" % (g.path(absolute(f[0])), " ".join(g.perm(p) for p in f[1:] if p))
    if r.kind == "TRANSACTION_START":
        return "start"
    if r.kind == "TRANSACTION_END":
        return "commit" if f[0] == "T" else "abort"
    if r.kind in ("WATCH", "UNWATCH"):
        return "%s %s %s" % (r.kind.lower(), g.path(absolute(f[0])), g.token(f[1]))
    if r.kind == "GET_DOMAIN_PATH":
        return "getdomainpath %s" % ("$D" if f[0] == g.domid else f[0])
    if r.kind == "INTRODUCE":
        return ("# INTRODUCE %s: not replayed (it needs a real domain)\nsignal introduce"
                % " ".join(["$D"] + [x for x in f[1:] if x]))
    sys.exit("trace2replay: no replay for %s (trace line %d)" % (r.kind, r.pos + 1))


FORMAT = """\
# The XenStore traffic of creating one domain, as bench/domain_create.c replays it, made by
# bench/trace2replay.py from a recording (below); do not edit, run
#   bench/trace2replay.py bench/recorded/xl-create-pv.trace > bench/domain_create.trace
#
# Substitutions: $D the domain id, $U a UUID derived from it.
# Parts: `conn NAME` starts one connection's requests, replayed by a thread of its own, all
# of one domain's parts at once; `new`: a connection opened for each domain (timed),
# otherwise one opened before timing and used for domain after domain.
# Operations (paths absolute; values are the rest of the line):
#   start / commit        a transaction around the operations between them (retried from
#                         `start` on EAGAIN, as libxl does); abort ends one without effect
#   mkdir P | write P V | rm P | read P | dir P | getperms P | getdomainpath DOMID
#   perms P ACL...        xs_set_permissions with permission strings (n0 r5 b3 ...)
#   watch P TOKEN | unwatch P TOKEN
#   prewatch P TOKEN      a watch set before timing (one the process had set already)
#   waitfor P V           read P until it is V, waiting for a watch event between reads
#                         (a watch covering P is set)
#   signal NAME / await NAME   order between parts where the recording's cause cannot be
#                         replayed (no traffic)
#   cleanup               what follows is run after timing (removing the domain's nodes)
"""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: trace2replay.py RECORDED-TRACE")
    with open(sys.argv[1]) as f:
        header, out, domid, uuid = convert(f.readlines())
    sys.stdout.write(FORMAT)
    sys.stdout.write("#\n# Recorded (domain %s, UUID %s):\n" % (domid, uuid))
    for line in header:
        sys.stdout.write("#   %s\n" % line[1:].strip() if line.strip() != "#" else "#\n")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
