/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * A toolstack and a guest, with no daemon and no hypervisor.
 *
 * Run with XENSTORE_EMBEDDED=1 (scripts/demo.sh does): xs_open() then gives domain 0 a
 * handle on an in-process store, and xs_embedded_open_domain() gives "domain 1" a handle
 * whose every message crosses that domain's ring page, as a real guest's would.
 *
 * The story is the classic xenbus handshake of a network device:
 *   dom0   introduces domain 1, creates its home, a vif frontend (owned by the guest) and
 *          the matching backend (owned by dom0, readable by the guest), backend -> InitWait;
 *   guest  finds its device (relative paths), watches the backend's state, publishes its ring
 *          references in a transaction and goes Connected;
 *   dom0   sees the frontend Connected, reads the references, backend -> Connected;
 *   guest  sees the link up and says hello in its data directory;
 *   dom0   asks it to power off (control/shutdown); the guest closes its device; dom0 closes
 *          the backend, removes the device and releases the domain; the guest's handle fails.
 *
 * Both sides are state machines driven by one poll() loop over their xs_fileno()
 * descriptors; every reaction is to a watch event, so it also shows how the events flow.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>
#include <xenstore_embedded.h>

#define GUEST 1
#define HOME "/local/domain/1"
#define FE HOME "/device/vif/0"
#define BE "/local/domain/0/backend/vif/1/0"

enum xenbus_state { UNKNOWN, INITIALISING, INITWAIT, INITIALISED, CONNECTED, CLOSING, CLOSED };
static const char *const state_names[] = { "Unknown", "Initialising", "InitWait",
					   "Initialised", "Connected", "Closing", "Closed" };

static const char *state_name(int s)
{
	return s >= 0 && s <= CLOSED ? state_names[s] : "?";
}

static void say(const char *who, const char *fmt, ...)
{
	va_list ap;

	printf("[%-5s] ", who);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void die(const char *what)
{
	fprintf(stderr, "demo: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The value of path as a string (NULL if unreadable; errno says why). Free it. */
static char *get(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	unsigned int len;

	return xs_read(h, t, path, &len);
}

static int get_state(struct xs_handle *h, const char *path)
{
	char *v = get(h, XBT_NULL, path);
	int s = v ? atoi(v) : UNKNOWN;

	free(v);
	return s;
}

static void put(struct xs_handle *h, xs_transaction_t t, const char *path, const char *value)
{
	if (!xs_write(h, t, path, value, strlen(value)))
		die(path);
}

static void set_perms(struct xs_handle *h, xs_transaction_t t, const char *path,
		      unsigned int owner, unsigned int reader)
{
	struct xs_permissions p[2] = { { .id = owner, .perms = XS_PERM_NONE },
				       { .id = reader, .perms = XS_PERM_READ } };

	if (!xs_set_permissions(h, t, path, p, 2))
		die(path);
}

static void set_state(struct xs_handle *h, const char *who, const char *dir, int s)
{
	char path[128], v[4];

	snprintf(path, sizeof(path), "%s/state", dir);
	snprintf(v, sizeof(v), "%d", s);
	put(h, XBT_NULL, path, v);
	say(who, "%s/state -> %s", dir, state_name(s));
}

/* ---- domain 0: toolstack and network backend ---- */

struct dom0 {
	struct xs_handle *h;
	int be_state;
	bool released;
};

static void dom0_create_guest(struct dom0 *d)
{
	xs_transaction_t t;

	if (!xs_introduce_domain(d->h, GUEST, 0x12345, 7))
		die("xs_introduce_domain");
	say("dom0", "introduced domain %d (ring page mfn 0x12345, event channel 7)", GUEST);

	/* Everything a guest needs, all at once, as a toolstack does: in one transaction. */
	do {
		t = xs_transaction_start(d->h);
		if (!t)
			die("xs_transaction_start");
		if (!xs_mkdir(d->h, t, HOME))
			die("xs_mkdir " HOME);
		set_perms(d->h, t, HOME, 0, GUEST); /* children inherit: the guest may read */
		put(d->h, t, HOME "/name", "guest1");
		put(d->h, t, HOME "/data", "");
		set_perms(d->h, t, HOME "/data", GUEST, 0);
		put(d->h, t, HOME "/control/shutdown", "");
		set_perms(d->h, t, HOME "/control", 0, GUEST);
		set_perms(d->h, t, HOME "/control/shutdown", GUEST, 0);
		put(d->h, t, HOME "/device", "");
		set_perms(d->h, t, HOME "/device", 0, GUEST);
		put(d->h, t, FE, "");
		set_perms(d->h, t, FE, GUEST, 0); /* the frontend belongs to the guest */
		put(d->h, t, FE "/backend", BE);
		put(d->h, t, FE "/backend-id", "0");
		put(d->h, t, FE "/mac", "00:16:3e:00:00:01");
		put(d->h, t, FE "/state", "1");
		put(d->h, t, BE, "");
		set_perms(d->h, t, BE, 0, GUEST); /* the backend: dom0's, readable by the guest */
		put(d->h, t, BE "/frontend", FE);
		put(d->h, t, BE "/frontend-id", "1");
		put(d->h, t, BE "/mac", "00:16:3e:00:00:01");
		put(d->h, t, BE "/bridge", "xenbr0");
		put(d->h, t, BE "/state", "1");
	} while (!xs_transaction_end(d->h, t, false) && errno == EAGAIN);
	say("dom0", "created %s and %s", FE, BE);

	if (!xs_watch(d->h, FE "/state", "frontend") || !xs_watch(d->h, HOME "/data", "data") ||
	    !xs_watch(d->h, "@releaseDomain", "released"))
		die("xs_watch");
	/* The backend driver would now run its hotplug script, then wait for the frontend. */
	set_state(d->h, "dom0", BE, INITWAIT);
	d->be_state = INITWAIT;
}

static void dom0_frontend_changed(struct dom0 *d)
{
	int fe = get_state(d->h, FE "/state");

	if (fe == CONNECTED && d->be_state < CONNECTED) {
		char *tx = get(d->h, XBT_NULL, FE "/tx-ring-ref");
		char *rx = get(d->h, XBT_NULL, FE "/rx-ring-ref");
		char *ev = get(d->h, XBT_NULL, FE "/event-channel");

		say("dom0", "frontend is Connected: tx-ring-ref %s, rx-ring-ref %s, event-channel %s",
		    tx ? tx : "?", rx ? rx : "?", ev ? ev : "?");
		free(tx);
		free(rx);
		free(ev);
		set_state(d->h, "dom0", BE, CONNECTED);
		d->be_state = CONNECTED;
	}
	if (fe >= CLOSING && d->be_state < CLOSING) {
		set_state(d->h, "dom0", BE, CLOSING);
		d->be_state = CLOSING;
	}
	if (fe == CLOSED && d->be_state < CLOSED) {
		set_state(d->h, "dom0", BE, CLOSED);
		d->be_state = CLOSED;
		if (!xs_rm(d->h, XBT_NULL, BE) || !xs_rm(d->h, XBT_NULL, FE))
			die("xs_rm");
		say("dom0", "device removed; releasing domain %d", GUEST);
		if (!xs_release_domain(d->h, GUEST))
			die("xs_release_domain");
		if (!xs_rm(d->h, XBT_NULL, HOME))
			die("xs_rm " HOME);
	}
}

static void dom0_data_changed(struct dom0 *d)
{
	char *hello = get(d->h, XBT_NULL, HOME "/data/greeting");

	if (!hello)
		return;
	say("dom0", "guest says \"%s\"; asking it to power off", hello);
	free(hello);
	put(d->h, XBT_NULL, HOME "/control/shutdown", "poweroff");
}

static void dom0_event(struct dom0 *d, char **ev)
{
	const char *token = ev[XS_WATCH_TOKEN];

	if (!strcmp(token, "frontend"))
		dom0_frontend_changed(d);
	else if (!strcmp(token, "data"))
		dom0_data_changed(d);
	else if (!strcmp(token, "released") && d->be_state == CLOSED && !d->released) {
		bool still = xs_is_domain_introduced(d->h, GUEST);

		if (!still) {
			say("dom0", "@releaseDomain fired: domain %d is gone", GUEST);
			d->released = true;
		}
	}
}

/* ---- domain 1: the guest's network frontend ---- */

struct guest {
	struct xs_handle *h;
	char *backend; /* from device/vif/0/backend */
	char be_state_path[128];
	int fe_state;
	bool link_up, gone;
};

static void guest_boot(struct guest *g)
{
	char *name, **devs;
	unsigned int n;

	g->h = xs_embedded_open_domain(GUEST);
	if (!g->h)
		die("xs_embedded_open_domain");
	name = get(g->h, XBT_NULL, "name");
	say("guest", "booted; my name is \"%s\" (read as the relative path \"name\")", name ? name : "?");
	free(name);

	devs = xs_directory(g->h, XBT_NULL, "device/vif", &n);
	say("guest", "device/vif lists %u device(s)%s%s", devs ? n : 0, devs && n ? ": " : "",
	    devs && n ? devs[0] : "");
	free(devs);
	g->backend = get(g->h, XBT_NULL, "device/vif/0/backend");
	if (!g->backend)
		die("reading device/vif/0/backend");
	say("guest", "vif 0's backend is %s", g->backend);

	/* Permissions are enforced: the backend is readable but not writable by the guest. */
	snprintf(g->be_state_path, sizeof(g->be_state_path), "%s/state", g->backend);
	if (!xs_write(g->h, XBT_NULL, g->be_state_path, "4", 1))
		say("guest", "writing the backend's state is refused: %s", strerror(errno));
	if (!get(g->h, XBT_NULL, "/local/domain/0/name") && errno == EACCES)
		say("guest", "reading dom0's own nodes is refused: %s", strerror(errno));

	if (!xs_watch(g->h, g->be_state_path, "backend") ||
	    !xs_watch(g->h, "control/shutdown", "shutdown"))
		die("guest xs_watch");
	g->fe_state = INITIALISING;
}

static void guest_backend_changed(struct guest *g)
{
	int be = get_state(g->h, g->be_state_path);
	xs_transaction_t t;

	say("guest", "backend state is %s", state_name(be));
	if (be == INITWAIT && g->fe_state < CONNECTED) {
		do {
			t = xs_transaction_start(g->h);
			if (!t)
				die("guest xs_transaction_start");
			put(g->h, t, "device/vif/0/tx-ring-ref", "8");
			put(g->h, t, "device/vif/0/rx-ring-ref", "9");
			put(g->h, t, "device/vif/0/event-channel", "11");
			put(g->h, t, "device/vif/0/state", "4");
		} while (!xs_transaction_end(g->h, t, false) && errno == EAGAIN);
		g->fe_state = CONNECTED;
		say("guest", "published ring references; device/vif/0/state -> Connected");
	}
	if (be == CONNECTED && !g->link_up) {
		g->link_up = true;
		say("guest", "link is up");
		put(g->h, XBT_NULL, "data/greeting", "hello from domain 1");
	}
}

static void guest_shutdown_requested(struct guest *g, const char *fired)
{
	char *what = get(g->h, XBT_NULL, "control/shutdown");

	if (what && *what) {
		say("guest", "watch fired on \"%s\" (relative, as watched): \"%s\"; "
		    "closing my devices", fired, what);
		put(g->h, XBT_NULL, "control/shutdown", "");
		set_state(g->h, "guest", "device/vif/0", CLOSING);
		set_state(g->h, "guest", "device/vif/0", CLOSED);
		g->fe_state = CLOSED;
	}
	free(what);
}

static void guest_event(struct guest *g, char **ev)
{
	const char *token = ev[XS_WATCH_TOKEN];

	if (!strcmp(token, "shutdown")) {
		/* A relative watch reports relative paths: ev[XS_WATCH_PATH] is "control/shutdown". */
		guest_shutdown_requested(g, ev[XS_WATCH_PATH]);
	} else if (!strcmp(token, "backend") && g->fe_state != CLOSED) {
		guest_backend_changed(g);
	}
}

/* Handles every event waiting on h; false once h's connection is gone. */
static bool drain(struct xs_handle *h, void (*fn)(void *, char **), void *arg)
{
	char **ev;

	while ((ev = xs_check_watch(h))) {
		fn(arg, ev);
		free(ev);
	}
	return errno == EAGAIN;
}

static void on_dom0(void *d, char **ev) { dom0_event(d, ev); }
static void on_guest(void *g, char **ev) { guest_event(g, ev); }

int main(void)
{
	struct dom0 d = { 0 };
	struct guest g = { 0 };
	struct pollfd fds[2];
	char *check;

	d.h = xs_open(0);
	if (!d.h)
		die("xs_open (is XENSTORE_EMBEDDED=1 set?)");
	dom0_create_guest(&d);
	guest_boot(&g);

	fds[0] = (struct pollfd){ .fd = xs_fileno(d.h), .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = xs_fileno(g.h), .events = POLLIN };
	while (!d.released || !g.gone) {
		if (poll(fds, 2, 5000) == 0) {
			fprintf(stderr, "demo: stuck (no event for 5 s)\n");
			return 1;
		}
		if (!drain(d.h, on_dom0, &d))
			die("dom0 handle");
		if (!g.gone && !drain(g.h, on_guest, &g)) {
			/* Released: the guest's handle has failed for good. */
			char *v = get(g.h, XBT_NULL, "name");

			say("guest", "my store connection is gone (%s)", v ? "?" : strerror(errno));
			free(v);
			g.gone = true;
			fds[1].fd = -1;
		}
	}
	xs_close(g.h);
	free(g.backend);

	check = xs_control_command(d.h, "check", NULL, 0);
	say("dom0", "store consistency check: %s", check ? check : strerror(errno));
	free(check);
	xs_close(d.h);
	return 0;
}
