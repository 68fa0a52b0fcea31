/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Stress: WORKERS threads share one handle (opened with XS_UNWATCH_FILTER) doing writes,
 * read-backs, directory listings and transactions on a shared counter, while a second handle
 * writes a stream of watched nodes that a consumer thread takes with xs_read_watch, and another
 * thread removes one of the two watches half-way through the stream.
 *
 * Expectations: every reply is the one for that thread's request (values carry the writer and
 * round, and vary in length up to ~3 KiB); the counter equals the number of commits; the kept
 * watch's events all arrive, in order, once each; no event of the removed watch is returned
 * by an xs_read_watch that began after xs_unwatch had returned; xs_close after all threads
 * have finished. Made for running under valgrind too (see scripts/memcheck.sh), so the sizes
 * come from the environment: XST_STRESS_ROUNDS (per worker, default 200) and
 * XST_STRESS_EVENTS (per watch, default 500).
 *
 * Threads: main starts the workers, the consumer, the event writer and the unwatcher; each
 * writes only its own struct; shared flags are C11 atomics; main reads the structs after
 * pthread_join. The transcript holds only what does not vary between runs; counts that do
 * (EAGAIN retries, events before the unwatch) go to stderr.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../common/xst.h"

#define BASE "/ctest/stress"
#define WORKERS 8
#define TX_EVERY 15
#define MAXVAL 3200

static struct xs_handle *h, *h2;
static int rounds = 200, events = 500;
static atomic_int unwatched, written;

struct worker {
	pthread_t thr;
	int id;
	int requests, commits, retries, errors;
	char err[160];
};

struct consumer {
	pthread_t thr;
	int kept, dropped_before, dropped_after, initial, other;
	int last_dropped; /* highest node number of the removed watch's events */
	char err[160];
};

struct helper {
	pthread_t thr;
	char err[160];
};

static size_t make_value(char *buf, int w, int r)
{
	size_t n = (size_t)snprintf(buf, MAXVAL, "w%dr%d:", w, r);
	size_t extra = (size_t)((r * 37 + w * 101) % 3000);

	for (size_t k = 0; k < extra; k++)
		buf[n + k] = (char)('a' + (k + w + r) % 26);
	return n + extra;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fail(char *err, size_t size, const char *what, int e)
{
	if (!err[0])
		snprintf(err, size, "%s: %s", what, xst_errname(e));
}

static void transact(struct worker *w)
{
	for (;;) {
		xs_transaction_t t = xs_transaction_start(h);
		unsigned int len;
		char *v, buf[32];

		if (t == XBT_NULL) {
			w->errors++;
			fail(w->err, sizeof(w->err), "transaction_start", errno);
			return;
		}
		v = xs_read(h, t, BASE "/counter", &len);
		if (!v) {
			w->errors++;
			fail(w->err, sizeof(w->err), "read counter", errno);
			xs_transaction_end(h, t, true);
			return;
		}
		snprintf(buf, sizeof(buf), "%ld", strtol(v, NULL, 10) + 1);
		free(v);
		if (!xs_write(h, t, BASE "/counter", buf, strlen(buf))) {
			w->errors++;
			fail(w->err, sizeof(w->err), "write counter", errno);
			xs_transaction_end(h, t, true);
			return;
		}
		w->requests += 4;
		if (xs_transaction_end(h, t, false)) {
			w->commits++;
			return;
		}
		if (errno != EAGAIN) {
			w->errors++;
			fail(w->err, sizeof(w->err), "commit", errno);
			return;
		}
		w->retries++;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char *val = malloc(MAXVAL), dir[64];

	snprintf(dir, sizeof(dir), BASE "/w%d", w->id);
	for (int r = 0; r < rounds && val; r++) {
		char path[96];
		size_t n = make_value(val, w->id, r);
		unsigned int len;
		char *got;

		snprintf(path, sizeof(path), "%s/k%d", dir, r % 5);
		if (!xs_write(h, XBT_NULL, path, val, (unsigned int)n)) {
			w->errors++;
			fail(w->err, sizeof(w->err), "write", errno);
			continue;
		}
		got = xs_read(h, XBT_NULL, path, &len);
		if (!got || len != n || memcmp(got, val, n)) {
			w->errors++;
			if (!w->err[0])
				snprintf(w->err, sizeof(w->err), "round %d: read back %s", r,
					 got ? "another value" : xst_errname(errno));
		}
		free(got);
		w->requests += 2;
		if (r % 25 == 24) {
			unsigned int num;
			char **list = xs_directory(h, XBT_NULL, dir, &num);
			static const char *want[] = { "k0", "k1", "k2", "k3", "k4" };
			bool same = list && num == 5;

			if (list)
				qsort(list, num, sizeof(*list), cmp_str);
			for (unsigned int i = 0; same && i < num; i++)
				same = !strcmp(list[i], want[i]);
			if (!same) {
				w->errors++;
				fail(w->err, sizeof(w->err), "directory", list ? 0 : errno);
			}
			free(list);
			w->requests++;
		}
		if (r % TX_EVERY == TX_EVERY - 1)
			transact(w);
	}
	free(val);
	return NULL;
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;

	for (;;) {
		/* Whether xs_unwatch had returned before this read began. */
		int after = atomic_load(&unwatched);
		unsigned int num;
		char **ev = xs_read_watch(h, &num);
		const char *path, *token;

		if (!ev) {
			fail(c->err, sizeof(c->err), "xs_read_watch", errno);
			return NULL;
		}
		path = ev[XS_WATCH_PATH];
		token = ev[XS_WATCH_TOKEN];
		if (num < 2) {
			c->other++;
		} else if (!strcmp(path, BASE "/ev/keep") || !strcmp(path, BASE "/ev/drop") ||
			   !strcmp(path, BASE "/done")) {
			c->initial++;
		} else if (!strcmp(token, "K")) {
			int k = -1;

			sscanf(path, BASE "/ev/keep/%d", &k);
			if (k != c->kept && !c->err[0])
				snprintf(c->err, sizeof(c->err), "kept watch: event %d where %d was due",
					 k, c->kept);
			c->kept++;
		} else if (!strcmp(token, "D")) {
			int k = -1;

			sscanf(path, BASE "/ev/drop/%d", &k);
			if (k > c->last_dropped)
				c->last_dropped = k;
			if (after)
				c->dropped_after++;
			else
				c->dropped_before++;
		} else if (!strcmp(token, "E")) {
			free(ev);
			return NULL;
		} else {
			c->other++;
		}
		free(ev);
	}
}

static void *writer_main(void *arg)
{
	struct helper *hp = arg;

	for (int k = 0; k < events; k++) {
		static const char *dirs[] = { "keep", "drop" };

		/*
		 * The unwatch races with the events written from events / 2 on; the last quarter
		 * is written only once it has returned, so some writes surely follow it.
		 */
		while (k == events * 3 / 4 && !atomic_load(&unwatched))
			usleep(200);

		for (int d = 0; d < 2; d++) {
			char path[96];

			snprintf(path, sizeof(path), BASE "/ev/%s/%d", dirs[d], k);
			if (!xs_write(h2, XBT_NULL, path, "x", 1)) {
				fail(hp->err, sizeof(hp->err), "event write", errno);
				return NULL;
			}
		}
		atomic_store(&written, k + 1);
	}
	if (!xs_write(h2, XBT_NULL, BASE "/done/final", "1", 1))
		fail(hp->err, sizeof(hp->err), "final write", errno);
	return NULL;
}

static void *unwatcher_main(void *arg)
{
	struct helper *hp = arg;
	bool ok;

	while (atomic_load(&written) < events / 2)
		usleep(200);
	ok = xs_unwatch(h, BASE "/ev/drop", "D");
	atomic_store(&unwatched, 1);
	if (!ok)
		fail(hp->err, sizeof(hp->err), "xs_unwatch", errno);
	return NULL;
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);

	return v && atoi(v) > 0 ? atoi(v) : dflt;
}

int main(void)
{
	struct worker workers[WORKERS];
	struct consumer consumer;
	struct helper writer, unwatcher;
	int commits = 0, retries = 0, requests = 0, errors = 0;
	struct timespec deadline;
	unsigned int len;
	char *v;
	bool ok;

	rounds = env_int("XST_STRESS_ROUNDS", rounds);
	events = env_int("XST_STRESS_EVENTS", events);
	xst_begin("stress");
	h = xst_open(XS_UNWATCH_FILTER);
	h2 = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_write(h2, XBT_NULL, BASE "/counter", "0", 1) &&
	     xs_mkdir(h2, XBT_NULL, BASE "/ev/keep") && xs_mkdir(h2, XBT_NULL, BASE "/ev/drop") &&
	     xs_mkdir(h2, XBT_NULL, BASE "/done");
	xst_check(ok, "set up " BASE " -> %s", xst_res(ok));
	ok = xs_watch(h, BASE "/ev/keep", "K") && xs_watch(h, BASE "/ev/drop", "D") &&
	     xs_watch(h, BASE "/done", "E");
	xst_check(ok, "three watches on the shared handle -> %s", xst_res(ok));

	memset(workers, 0, sizeof(workers));
	memset(&consumer, 0, sizeof(consumer));
	consumer.last_dropped = -1;
	memset(&writer, 0, sizeof(writer));
	memset(&unwatcher, 0, sizeof(unwatcher));
	if (pthread_create(&consumer.thr, NULL, consumer_main, &consumer) ||
	    pthread_create(&writer.thr, NULL, writer_main, &writer) ||
	    pthread_create(&unwatcher.thr, NULL, unwatcher_main, &unwatcher))
		xst_fatal("pthread_create");
	for (int i = 0; i < WORKERS; i++) {
		workers[i].id = i;
		if (pthread_create(&workers[i].thr, NULL, worker_main, &workers[i]))
			xst_fatal("pthread_create");
	}
	xst_say("%d workers x %d rounds on one handle; %d events per watch from a second handle",
		WORKERS, rounds, events);

	for (int i = 0; i < WORKERS; i++) {
		struct worker *w = &workers[i];

		pthread_join(w->thr, NULL);
		if (w->errors)
			xst_check(false, "worker %d: %d errors, first: %s", i, w->errors, w->err);
		commits += w->commits;
		retries += w->retries;
		requests += w->requests;
		errors += w->errors;
	}
	xst_check(errors == 0, "every worker got the right reply to every request");
	pthread_join(unwatcher.thr, NULL);
	xst_check(!unwatcher.err[0], "xs_unwatch during delivery%s%s", unwatcher.err[0] ? ": " : "",
		  unwatcher.err);
	pthread_join(writer.thr, NULL);
	xst_check(!writer.err[0], "event writer%s%s", writer.err[0] ? ": " : "", writer.err);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60;
	if (pthread_timedjoin_np(consumer.thr, NULL, &deadline))
		xst_fatal("the consumer did not see the final event within 60 s (%d kept so far)",
			  consumer.kept);
	xst_check(!consumer.err[0], "consumer%s%s", consumer.err[0] ? ": " : "", consumer.err);
	xst_check(consumer.initial == 3, "one initial event per watch (%d)", consumer.initial);
	xst_check(consumer.kept == events, "kept watch: all %d events, in order (got %d)", events,
		  consumer.kept);
	xst_check(consumer.dropped_after == 0,
		  "removed watch: no event after xs_unwatch returned (got %d)",
		  consumer.dropped_after);
	xst_check(consumer.last_dropped < events * 3 / 4,
		  "removed watch: no event for a node written after xs_unwatch");
	xst_check(consumer.other == 0, "no other events (%d)", consumer.other);

	v = xs_read(h, XBT_NULL, BASE "/counter", &len);
	xst_check(v && atoi(v) == commits, "counter equals the number of commits");
	free(v);
	v = (char *)xs_check_watch(h);
	xst_check(!v && errno == EAGAIN, "no event left over");
	free(v);
	ok = xs_unwatch(h, BASE "/ev/keep", "K") && xs_unwatch(h, BASE "/done", "E");
	xst_check(ok, "remove the other watches -> %s", xst_res(ok));
	ok = xs_rm(h2, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	xs_close(h2);
	fprintf(stderr, "stress: %d requests, %d commits, %d EAGAIN retries, %d events of the "
		"removed watch before xs_unwatch returned\n", requests, commits, retries,
		consumer.dropped_before);
	return xst_end();
}
