/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * One handle shared by several threads: writers (each on its own nodes, with a transaction on a
 * shared counter now and then), readers, and one thread blocked in xs_read_watch. The
 * interleaving changes from run to run, so only totals are printed.
 *
 * Threads: main starts WRITERS writers, READERS readers and one watcher, all on handle h;
 * each worker writes only its own struct; main reads them after pthread_join.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/xst.h"

#define BASE "/ctest/threads"
#define WRITERS 4
#define READERS 2
#define ROUNDS 100
#define TX_EVERY 25

static struct xs_handle *h;

struct writer {
	pthread_t thr;
	int id;
	int bad_reads, failed_writes, tx_failures, tx_retries;
	char last_err[64];
};

struct reader {
	pthread_t thr;
	int reads, bad_values;
	volatile int *stop;
};

struct watcher {
	pthread_t thr;
	int events, initial, done_seen, per_writer[WRITERS], counter_events, other;
	char bad[128];
};

static void bump_counter(struct writer *w)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		xs_transaction_t t = xs_transaction_start(h);
		unsigned int len;
		char *v, buf[32];

		if (t == XBT_NULL) {
			w->tx_failures++;
			return;
		}
		v = xs_read(h, t, BASE "/counter", &len);
		snprintf(buf, sizeof(buf), "%ld", v ? strtol(v, NULL, 10) + 1 : -1000);
		free(v);
		if (!xs_write(h, t, BASE "/counter", buf, strlen(buf))) {
			xs_transaction_end(h, t, true);
			w->tx_failures++;
			return;
		}
		if (xs_transaction_end(h, t, false))
			return;
		if (errno != EAGAIN) {
			w->tx_failures++;
			return;
		}
		w->tx_retries++;
	}
	w->tx_failures++;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < ROUNDS; i++) {
		char path[96], val[64];
		unsigned int len;
		char *v;

		snprintf(path, sizeof(path), BASE "/w%d/k%d", w->id, i % 10);
		snprintf(val, sizeof(val), "writer %d round %d", w->id, i);
		if (!xs_write(h, XBT_NULL, path, val, strlen(val))) {
			w->failed_writes++;
			snprintf(w->last_err, sizeof(w->last_err), "write: %s", xst_errname(errno));
			continue;
		}
		v = xs_read(h, XBT_NULL, path, &len);
		if (!v || len != strlen(val) || strcmp(v, val)) {
			w->bad_reads++;
			snprintf(w->last_err, sizeof(w->last_err), "read: %s",
				 v ? v : xst_errname(errno));
		}
		free(v);
		if (i % TX_EVERY == TX_EVERY - 1)
			bump_counter(w);
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	for (int i = 0; !*r->stop; i++) {
		char path[96];
		unsigned int len, num;
		char *v, **d;

		snprintf(path, sizeof(path), BASE "/w%d/k%d", i % WRITERS, i % 10);
		v = xs_read(h, XBT_NULL, path, &len);
		if (v ? strncmp(v, "writer ", 7) != 0 : errno != ENOENT)
			r->bad_values++;
		free(v);
		d = xs_directory(h, XBT_NULL, BASE, &num);
		if (!d)
			r->bad_values++;
		free(d);
		r->reads++;
	}
	return NULL;
}

static void *watcher_main(void *arg)
{
	struct watcher *w = arg;

	while (!w->done_seen) {
		unsigned int num;
		char **ev = xs_read_watch(h, &num);
		int id;

		if (!ev) {
			snprintf(w->bad, sizeof(w->bad), "xs_read_watch: %s", xst_errname(errno));
			return NULL;
		}
		w->events++;
		if (strcmp(ev[XS_WATCH_TOKEN], "all"))
			w->other++;
		else if (!strcmp(ev[XS_WATCH_PATH], BASE))
			w->initial++;
		else if (!strcmp(ev[XS_WATCH_PATH], BASE "/done"))
			w->done_seen = 1;
		else if (!strcmp(ev[XS_WATCH_PATH], BASE "/counter"))
			w->counter_events++;
		else if (sscanf(ev[XS_WATCH_PATH], BASE "/w%d/", &id) == 1 && id >= 0 &&
			 id < WRITERS)
			w->per_writer[id]++;
		else
			w->other++;
		free(ev);
	}
	return NULL;
}

int main(void)
{
	struct writer writers[WRITERS];
	struct reader readers[READERS];
	struct watcher watcher;
	volatile int stop = 0;
	struct timespec deadline;
	unsigned int len;
	char *v;
	bool ok;
	int rc;

	xst_begin("threads");
	h = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_write(h, XBT_NULL, BASE "/counter", "0", 1);
	xst_check(ok, "write " BASE "/counter = 0 -> %s", xst_res(ok));
	ok = xs_watch(h, BASE, "all");
	xst_check(ok, "watch " BASE " all -> %s", xst_res(ok));

	memset(&watcher, 0, sizeof(watcher));
	memset(writers, 0, sizeof(writers));
	memset(readers, 0, sizeof(readers));
	if (pthread_create(&watcher.thr, NULL, watcher_main, &watcher))
		xst_fatal("pthread_create");
	for (int i = 0; i < READERS; i++) {
		readers[i].stop = &stop;
		if (pthread_create(&readers[i].thr, NULL, reader_main, &readers[i]))
			xst_fatal("pthread_create");
	}
	for (int i = 0; i < WRITERS; i++) {
		writers[i].id = i;
		if (pthread_create(&writers[i].thr, NULL, writer_main, &writers[i]))
			xst_fatal("pthread_create");
	}
	xst_say("started %d writers x %d rounds, %d readers, 1 watcher on one handle", WRITERS,
		ROUNDS, READERS);

	for (int i = 0; i < WRITERS; i++) {
		struct writer *w = &writers[i];

		pthread_join(w->thr, NULL);
		xst_check(!w->failed_writes && !w->bad_reads && !w->tx_failures,
			  "writer %d: failed writes %d, wrong read-backs %d, failed transactions %d%s%s",
			  i, w->failed_writes, w->bad_reads, w->tx_failures,
			  w->last_err[0] ? " last: " : "", w->last_err);
	}
	stop = 1;
	for (int i = 0; i < READERS; i++) {
		pthread_join(readers[i].thr, NULL);
		xst_check(readers[i].reads > 0 && !readers[i].bad_values,
			  "reader %d: unexpected results %d", i, readers[i].bad_values);
	}

	v = xs_read(h, XBT_NULL, BASE "/counter", &len);
	xst_check(v && atoi(v) == WRITERS * (ROUNDS / TX_EVERY), "counter after %d transactions -> %s",
		  WRITERS * (ROUNDS / TX_EVERY), v ? v : xst_errname(errno));
	free(v);

	ok = xs_write(h, XBT_NULL, BASE "/done", "1", 1);
	xst_check(ok, "write " BASE "/done -> %s", xst_res(ok));
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	rc = pthread_timedjoin_np(watcher.thr, NULL, &deadline);
	if (rc)
		xst_fatal("watcher did not see " BASE "/done within 30s (%d events so far)",
			  watcher.events);
	xst_check(!watcher.bad[0], "watcher ended cleanly%s%s", watcher.bad[0] ? ": " : "",
		  watcher.bad);
	xst_check(watcher.initial == 1, "watcher: initial events %d", watcher.initial);
	for (int i = 0; i < WRITERS; i++)
		xst_check(watcher.per_writer[i] == ROUNDS, "watcher: events for writer %d: %d", i,
			  watcher.per_writer[i]);
	xst_check(watcher.counter_events == WRITERS * (ROUNDS / TX_EVERY),
		  "watcher: events for the counter: %d", watcher.counter_events);
	xst_check(watcher.other == 0, "watcher: other events %d", watcher.other);
	xst_check(watcher.events == 1 + WRITERS * ROUNDS + WRITERS * (ROUNDS / TX_EVERY) + 1,
		  "watcher: %d events in all", watcher.events);

	ok = xs_unwatch(h, BASE, "all");
	xst_check(ok, "unwatch -> %s", xst_res(ok));
	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
