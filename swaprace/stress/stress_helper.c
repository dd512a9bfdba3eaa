/* swaprace stress helper: N pthreads faulting the same swapped-out pages at the same moment.
 *
 * Loaded with ctypes by swaprace/stress/native.py (a ctypes call releases the GIL, and the work runs in
 * pthreads of its own, so Python never serializes the faults). Every page carries content fully
 * determined by (tag, generation): a header {magic, tag, generation, checksum} and a pseudo-random body.
 * The expected (tag, generation) of every page lives outside the region, so each read is checked against
 * what was last written: that is the oracle, independent of any tracer.
 *
 * One round: all threads meet at a barrier, then walk the same batch of pages in the same order (the
 * pages were just pushed out with MADV_PAGEOUT, so several threads fault the same swap entry at once);
 * a few pages of the batch are rewritten by one thread each (writes that COW KSM pages or fault on a
 * swap entry with FAULT_FLAG_WRITE). Between rounds the leader picks and pages out the next batch and,
 * every few rounds, forks a child that reads a sample of the region (swap entries shared by two mms).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define SR_MAGIC 0x7377617072616365ULL /* "swaprace" */
#define SR_SHARED_TAG_BIT (1ULL << 63)
#define SR_MAX_THREADS 64
#define SR_MAX_CHILDREN 2

enum sr_phase { SR_READ = 0, SR_WRITE = 1, SR_CHILD_READ = 2, SR_FINAL_SWEEP = 3, SR_LOCKED_CHECK = 4 };

/* Scenarios (swaprace stress --scenario): workloads aimed at one known race, see swaprace/stress/scenarios.py.
 * SR_SCENARIO_ROUNDS is the general workload of the rounds above (ksm-2010 is a preset of it). */
enum sr_scenario { SR_SCENARIO_ROUNDS = 0, SR_SCENARIO_SKIP_SWAPCACHE = 1, SR_SCENARIO_SWAPCACHE_FREED = 2 };

struct sr_config {
	uint64_t npages;
	uint64_t seed;
	uint64_t duration_ns;
	uint64_t slow_ns;          /* a first touch slower than this is kept as a fault window */
	uint64_t max_windows;      /* per thread */
	uint64_t max_mismatches;
	uint32_t proc_index;       /* which worker process: part of every private page's tag */
	uint32_t threads;
	uint32_t batch;            /* pages per round */
	uint32_t shared_permille;  /* share of the region made of KSM groups (identical pages) */
	uint32_t group_size;       /* identical pages per group inside one process */
	uint32_t write_permille;   /* share of a batch rewritten in a round */
	uint32_t fork_every;       /* rounds between forked reader children; 0 = none */
	uint32_t pageout;          /* MADV_PAGEOUT the next batch between rounds */
	uint32_t mergeable;        /* MADV_MERGEABLE on the shared part */
	uint32_t scenario;         /* SR_SCENARIO_*: 0 = the rounds above */
	uint32_t pager_us;         /* scenario skip-swapcache-2024: pause between the pager's MADV_PAGEOUTs */
	uint32_t pad;
};

struct sr_mismatch {
	uint64_t addr;
	uint64_t page_index;
	uint64_t expected_tag;
	uint64_t expected_gen;
	uint64_t got_tag;
	uint64_t got_gen;
	uint64_t mono_ns;
	uint64_t real_ns;
	int32_t pid;
	int32_t tid;
	int32_t cpu;
	uint32_t first_bad_offset;
	uint32_t phase;
	uint32_t got_magic_ok;
};

struct sr_window {
	uint64_t start_ns;         /* CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads */
	uint64_t end_ns;
	uint64_t page_index;
	int32_t tid;
	int16_t cpu_start;
	int16_t cpu_end;
	uint32_t phase;
	uint32_t pad;
};

struct sr_result {
	uint64_t region_addr;
	uint64_t page_size;
	uint64_t rounds;
	uint64_t pages_read;
	uint64_t pages_written;
	uint64_t child_pages_read;
	uint64_t final_pages_checked;
	uint64_t forks;
	uint64_t fork_failures;
	uint64_t children_failed;
	uint64_t pageouts;
	uint64_t pageout_errors;
	uint64_t mismatches;       /* total seen, may exceed max_mismatches */
	uint64_t windows;          /* total kept over all threads */
	uint64_t windows_dropped;  /* slow touches not kept because a thread's buffer was full */
	uint64_t start_mono_ns;
	uint64_t end_mono_ns;
	uint64_t start_real_ns;
	int32_t pageout_errno;
	int32_t mergeable_errno;
};

struct sr_thread {
	pthread_t thread;
	uint32_t index;
	uint8_t *expected;         /* one page: what the page being checked must hold */
	struct sr_window *windows;
	uint64_t nwindows;
	uint64_t dropped;
	uint64_t reads;
	uint64_t writes;
};

static struct {
	struct sr_config cfg;
	struct sr_result *res;
	uint8_t *region;
	size_t page;
	uint64_t words;            /* 64-bit words per page */
	uint64_t shared_start;     /* first page index of the shared (KSM group) part */
	uint64_t *tag;             /* expected tag per page */
	uint64_t *gen;             /* expected generation per page */
	uint64_t *stamp;           /* round a page was last picked in: no page twice in one batch */
	uint64_t *batch;
	uint8_t *batch_writer;     /* 0 = read by all, k+1 = rewritten by thread k */
	uint64_t round;
	uint64_t deadline;
	volatile int done;
	pthread_barrier_t start_barrier;
	pthread_barrier_t end_barrier;
	struct sr_thread threads[SR_MAX_THREADS];
	struct sr_mismatch *mismatches; /* MAP_SHARED: forked children report here too */
	uint64_t *mismatch_count;       /* in the same shared mapping */
	uint64_t *child_reads;          /* pages checked by forked children, same mapping */
	pid_t children[SR_MAX_CHILDREN];
	uint64_t rng;
	uint32_t *page_lock;            /* scenario skip-swapcache: one spinlock per page, outside the region */
	uint64_t pager_passes;
} S;

static volatile sig_atomic_t stop_requested;

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t next_random(uint64_t *state)
{
	*state = splitmix(*state);
	return *state;
}

static uint64_t private_tag(uint64_t index)
{
	return splitmix(S.cfg.seed ^ ((uint64_t)S.cfg.proc_index << 40) ^ index) & ~SR_SHARED_TAG_BIT;
}

/* Same seed, same group: same content in every worker process, so KSM also merges across processes
 * (different anon_vma roots: the case where ksm_might_need_to_copy() copies on swap-in). */
static uint64_t shared_tag(uint64_t group)
{
	return splitmix(S.cfg.seed * 31 + group) | SR_SHARED_TAG_BIT;
}

static void make_page(uint8_t *buf, uint64_t tag, uint64_t gen)
{
	uint64_t *w = (uint64_t *)buf;
	uint64_t state = splitmix(tag ^ (gen * 0x100000001b3ULL));
	uint64_t sum = 0;
	for (uint64_t i = 4; i < S.words; i++) {
		w[i] = next_random(&state);
		sum = sum * 0x100000001b3ULL + w[i];
	}
	w[0] = SR_MAGIC;
	w[1] = tag;
	w[2] = gen;
	w[3] = sum;
}

static void record_mismatch(uint64_t index, const uint8_t *page, const uint8_t *expected, uint32_t phase)
{
	const uint64_t *got = (const uint64_t *)page;
	uint64_t slot = __atomic_fetch_add(S.mismatch_count, 1, __ATOMIC_RELAXED);
	if (slot >= S.cfg.max_mismatches)
		return;
	struct sr_mismatch *m = &S.mismatches[slot];
	uint32_t off = 0;
	while (off < S.page && page[off] == expected[off])
		off++;
	m->addr = (uint64_t)(uintptr_t)page;
	m->page_index = index;
	m->expected_tag = S.tag[index];
	m->expected_gen = S.gen[index];
	m->got_tag = got[1];
	m->got_gen = got[2];
	m->got_magic_ok = got[0] == SR_MAGIC;
	m->mono_ns = now_ns(CLOCK_MONOTONIC);
	m->real_ns = now_ns(CLOCK_REALTIME);
	m->pid = getpid();
	m->tid = (int32_t)syscall(SYS_gettid);
	m->cpu = sched_getcpu();
	m->first_bad_offset = off;
	m->phase = phase;
}

static void keep_window(struct sr_thread *t, uint64_t start, uint64_t end, int cpu0, int cpu1,
			uint64_t index, uint32_t phase)
{
	if (end - start < S.cfg.slow_ns)
		return;
	if (t->nwindows >= S.cfg.max_windows) {
		t->dropped++;
		return;
	}
	struct sr_window *w = &t->windows[t->nwindows++];
	w->start_ns = start;
	w->end_ns = end;
	w->page_index = index;
	w->tid = (int32_t)syscall(SYS_gettid);
	w->cpu_start = (int16_t)cpu0;
	w->cpu_end = (int16_t)cpu1;
	w->phase = phase;
}

/* First touch timed alone (that is where the fault happens), then the whole page compared. */
static void check_page(struct sr_thread *t, uint64_t index, uint32_t phase)
{
	uint8_t *page = S.region + index * S.page;
	int cpu0 = sched_getcpu();
	uint64_t start = now_ns(CLOCK_MONOTONIC);
	(void)*(volatile uint64_t *)page;
	uint64_t end = now_ns(CLOCK_MONOTONIC);
	int cpu1 = sched_getcpu();
	if (t)
		keep_window(t, start, end, cpu0, cpu1, index, phase);
	uint8_t *expected = t ? t->expected : S.threads[0].expected;
	make_page(expected, S.tag[index], S.gen[index]);
	if (memcmp(page, expected, S.page) != 0)
		record_mismatch(index, page, expected, phase);
}

static void write_page(struct sr_thread *t, uint64_t index)
{
	uint8_t *page = S.region + index * S.page;
	uint64_t tag = S.tag[index];
	/* a rewritten group page is no longer identical to its group: it becomes private */
	if (tag & SR_SHARED_TAG_BIT)
		tag = private_tag(index);
	uint64_t gen = S.gen[index] + 1;
	make_page(t->expected, tag, gen);
	int cpu0 = sched_getcpu();
	uint64_t start = now_ns(CLOCK_MONOTONIC);
	*(volatile uint64_t *)(page + 8) = 0; /* the write fault: COW of a KSM page or swap-in for write */
	uint64_t end = now_ns(CLOCK_MONOTONIC);
	int cpu1 = sched_getcpu();
	keep_window(t, start, end, cpu0, cpu1, index, SR_WRITE);
	memcpy(page, t->expected, S.page);
	S.tag[index] = tag;
	S.gen[index] = gen;
}

static void run_round(struct sr_thread *t)
{
	for (uint32_t i = 0; i < S.cfg.batch; i++) {
		uint64_t index = S.batch[i];
		uint8_t writer = S.batch_writer[i];
		if (writer == 0) {
			check_page(t, index, SR_READ);
			t->reads++;
		} else if (writer == t->index + 1) {
			write_page(t, index);
			t->writes++;
		}
	}
}

static void pick_batch(uint64_t round)
{
	uint64_t shared_pages = S.cfg.npages - S.shared_start;
	for (uint32_t i = 0; i < S.cfg.batch; i++) {
		uint64_t index;
		do {
			uint64_t r = next_random(&S.rng);
			/* a quarter of the batch from the KSM groups, the rest from private pages */
			if (shared_pages && (r & 3) == 0)
				index = S.shared_start + (r >> 8) % shared_pages;
			else
				index = (r >> 8) % (S.shared_start ? S.shared_start : S.cfg.npages);
		} while (S.stamp[index] == round);
		S.stamp[index] = round;
		S.batch[i] = index;
		uint64_t w = next_random(&S.rng);
		S.batch_writer[i] = (w % 1000) < S.cfg.write_permille ? (uint8_t)(1 + (w >> 16) % S.cfg.threads) : 0;
	}
}

static void page_out_batch(void)
{
	if (!S.cfg.pageout)
		return;
	for (uint32_t i = 0; i < S.cfg.batch; i++) {
		uint64_t index = S.batch[i];
		/* merged KSM pages are left to the cgroup limit: MADV_PAGEOUT skips pages mapped more than once */
		if (index >= S.shared_start)
			continue;
		if (madvise(S.region + index * S.page, S.page, MADV_PAGEOUT) == 0) {
			S.res->pageouts++;
		} else {
			S.res->pageout_errors++;
			S.res->pageout_errno = errno;
			/* Since Linux kernel commit 1a4e58cce84e ("mm: introduce MADV_PAGEOUT"); before it, EINVAL:
			 * the cgroup limit alone pushes pages out */
			if (errno == EINVAL)
				S.cfg.pageout = 0;
			return;
		}
	}
}

static void child_reads(void)
{
	uint64_t state = S.rng ^ 0x5bd1e995ULL;
	uint64_t n = (uint64_t)S.cfg.batch * 4;
	for (uint64_t i = 0; i < n && !stop_requested; i++) {
		uint64_t index = next_random(&state) % S.cfg.npages;
		check_page(NULL, index, SR_CHILD_READ);
		__atomic_fetch_add(S.child_reads, 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

static void reap_children(int block)
{
	for (int i = 0; i < SR_MAX_CHILDREN; i++) {
		if (!S.children[i])
			continue;
		int status;
		pid_t pid = waitpid(S.children[i], &status, block ? 0 : WNOHANG);
		if (pid == S.children[i] || (pid < 0 && errno == ECHILD)) {
			if (pid > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
				S.res->children_failed++;
			S.children[i] = 0;
		}
	}
}

/* Runs in thread 0 while every other thread waits at the start barrier: no page is being touched. */
static void between_rounds(void)
{
	reap_children(0);
	S.round++;
	if (stop_requested || now_ns(CLOCK_MONOTONIC) >= S.deadline) {
		S.done = 1;
		return;
	}
	if (S.cfg.fork_every && S.round % S.cfg.fork_every == 0) {
		for (int i = 0; i < SR_MAX_CHILDREN; i++) {
			if (S.children[i])
				continue;
			pid_t pid = fork();
			if (pid == 0)
				child_reads();
			if (pid > 0) {
				S.children[i] = pid;
				S.res->forks++;
			} else {
				S.res->fork_failures++;
			}
			break;
		}
	}
	pick_batch(S.round);
	page_out_batch();
}

static void *thread_main(void *arg)
{
	struct sr_thread *t = arg;
	for (;;) {
		pthread_barrier_wait(&S.start_barrier);
		if (S.done)
			break;
		run_round(t);
		pthread_barrier_wait(&S.end_barrier);
		if (t->index == 0)
			between_rounds();
	}
	return NULL;
}

/* --- scenario skip-swapcache-2024 ---------------------------------------------------------------------
 *
 * Every page is private to this process and swapped out to zram with swap count 1: the SWP_SYNCHRONOUS_IO
 * skip-swapcache path. A pager thread pushes the whole region out with MADV_PAGEOUT again and again while
 * the other threads walk the pages in the same order: each first touches a page without a lock (the fault,
 * several threads on one entry at once), then takes that page's lock, checks the whole page against the
 * expected (tag, generation) and writes the next generation. Without 13ddaf26be32 one thread installs its
 * page and frees the entry, the page is written and paged out again to the same slot, and a second thread,
 * still in its fault with the old data, passes pte_same() and installs it: the next locked check sees an
 * older generation than the last write (a lost write). The oracle records it and the page is rewritten with
 * the expected content, so each lost write is counted once. */

static void page_lock(uint64_t index)
{
	while (__atomic_exchange_n(&S.page_lock[index], 1, __ATOMIC_ACQUIRE))
		sched_yield();
}

static void page_unlock(uint64_t index)
{
	__atomic_store_n(&S.page_lock[index], 0, __ATOMIC_RELEASE);
}

static void *skip_pager_main(void *arg)
{
	(void)arg;
	struct timespec pause = { .tv_sec = 0, .tv_nsec = (long)S.cfg.pager_us * 1000 };
	while (!S.done) {
		if (madvise(S.region, S.cfg.npages * S.page, MADV_PAGEOUT) == 0) {
			S.res->pageouts++;
		} else {
			S.res->pageout_errors++;
			S.res->pageout_errno = errno;
		}
		S.pager_passes++;
		if (S.cfg.pager_us)
			nanosleep(&pause, NULL);
	}
	return NULL;
}

static void *skip_thread_main(void *arg)
{
	struct sr_thread *t = arg;
	uint64_t pass = 0;
	while (!S.done) {
		for (uint64_t index = 0; index < S.cfg.npages && !S.done; index++) {
			uint8_t *page = S.region + index * S.page;
			int cpu0 = sched_getcpu();
			uint64_t start = now_ns(CLOCK_MONOTONIC);
			(void)*(volatile uint64_t *)page; /* the fault: several threads on one swap entry */
			uint64_t end = now_ns(CLOCK_MONOTONIC);
			keep_window(t, start, end, cpu0, sched_getcpu(), index, SR_READ);
			page_lock(index);
			make_page(t->expected, S.tag[index], S.gen[index]);
			if (memcmp(page, t->expected, S.page) != 0)
				record_mismatch(index, page, t->expected, SR_LOCKED_CHECK);
			t->reads++;
			S.gen[index]++;
			make_page(t->expected, S.tag[index], S.gen[index]);
			if (S.cfg.scenario == SR_SCENARIO_SWAPCACHE_FREED)
				/* swapcache-2010: drop the page this fault installed (whose slot the fault freed: swap
				 * more than half full) and write the next generation into a fresh page ... */
				madvise(page, S.page, MADV_DONTNEED);
			memcpy(page, t->expected, S.page);
			if (S.cfg.scenario == SR_SCENARIO_SWAPCACHE_FREED)
				/* ... and push it out at once: it may get the slot just freed, while a thread that found
				 * the old page in the swap cache still sleeps in its fault (see scenarios.py) */
				madvise(page, S.page, MADV_PAGEOUT);
			t->writes++;
			page_unlock(index);
		}
		pass++;
		if (t->index == 0 && (stop_requested || now_ns(CLOCK_MONOTONIC) >= S.deadline))
			S.done = 1;
	}
	(void)pass;
	return NULL;
}

static int run_skip_swapcache(void)
{
	pthread_t pager;
	uint32_t started = 1;
	for (uint32_t i = 1; i < S.cfg.threads; i++) {
		if (pthread_create(&S.threads[i].thread, NULL, skip_thread_main, &S.threads[i]) != 0)
			break;
		started++;
	}
	int pager_ok = pthread_create(&pager, NULL, skip_pager_main, NULL) == 0;
	if (started == S.cfg.threads && pager_ok)
		skip_thread_main(&S.threads[0]);
	S.done = 1;
	for (uint32_t i = 1; i < started; i++)
		pthread_join(S.threads[i].thread, NULL);
	if (pager_ok)
		pthread_join(pager, NULL);
	S.res->rounds = S.pager_passes;
	return started == S.cfg.threads && pager_ok ? 0 : EAGAIN;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* SIGINT/SIGTERM end the run at the next round boundary; the final sweep and the report still happen. */
void sr_install_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int sr_stop_requested(void)
{
	return stop_requested;
}

/* The structs native.py mirrors with ctypes, as this compiler laid them out: the loader compares them with its
 * own before the first call, so a field added on one side only is an error, not a silently shifted read. */
void sr_struct_sizes(uint64_t out[4])
{
	out[0] = sizeof(struct sr_config);
	out[1] = sizeof(struct sr_result);
	out[2] = sizeof(struct sr_window);
	out[3] = sizeof(struct sr_mismatch);
}

void sr_request_stop(void)
{
	stop_requested = 1;
}

/* The oracle's own bookkeeping (tags, generations, per-thread window records, the shared mismatch area),
 * allocated and touched before the worker joins the memory cgroup: a page is charged where it is first
 * touched, so none of it is charged to the workload's group. At the defaults the window records alone are
 * 16 MiB per process (4 threads x 100,000 x 40 B): charged to the group they were swapped out with the
 * region, filled the swap file (the region plus them is more than the file holds) and made the group's
 * reclaim fail -- the OOM kill the default run met. Returns 0, or an errno. */
int sr_reserve(const struct sr_config *cfg, struct sr_result *res)
{
	memset(&S, 0, sizeof(S));
	memset(res, 0, sizeof(*res));
	S.cfg = *cfg;
	S.res = res;
	if (S.cfg.threads < 1 || S.cfg.threads > SR_MAX_THREADS || S.cfg.batch < 1 || S.cfg.npages < 2 ||
	    S.cfg.batch > S.cfg.npages / 2 || S.cfg.group_size < 2)
		return EINVAL;
	S.page = (size_t)sysconf(_SC_PAGESIZE);
	S.words = S.page / 8;
	S.tag = calloc(S.cfg.npages, sizeof(uint64_t));
	S.gen = calloc(S.cfg.npages, sizeof(uint64_t));
	S.stamp = calloc(S.cfg.npages, sizeof(uint64_t));
	S.page_lock = calloc(S.cfg.npages, sizeof(uint32_t));
	S.batch = calloc(S.cfg.batch, sizeof(uint64_t));
	S.batch_writer = calloc(S.cfg.batch, 1);
	size_t shared_bytes = sizeof(uint64_t) * 8 + S.cfg.max_mismatches * sizeof(struct sr_mismatch);
	void *shared = mmap(NULL, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!S.tag || !S.gen || !S.stamp || !S.page_lock || !S.batch || !S.batch_writer || shared == MAP_FAILED)
		return ENOMEM;
	/* calloc may hand out fresh, untouched pages: touch them here, outside the group */
	memset(S.tag, 0, S.cfg.npages * sizeof(uint64_t));
	memset(S.gen, 0, S.cfg.npages * sizeof(uint64_t));
	memset(S.stamp, 0, S.cfg.npages * sizeof(uint64_t));
	memset(S.page_lock, 0, S.cfg.npages * sizeof(uint32_t));
	memset(shared, 0, shared_bytes);
	S.mismatch_count = shared;
	S.child_reads = (uint64_t *)shared + 1;
	S.mismatches = (struct sr_mismatch *)((uint64_t *)shared + 8);
	size_t window_bytes = (S.cfg.max_windows + 1) * sizeof(struct sr_window);
	for (uint32_t i = 0; i < S.cfg.threads; i++) {
		struct sr_thread *t = &S.threads[i];
		t->index = i;
		t->expected = aligned_alloc(S.page, S.page);
		t->windows = mmap(NULL, window_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (!t->expected || t->windows == MAP_FAILED)
			return ENOMEM;
		memset(t->expected, 0, S.page);
		memset(t->windows, 0, window_bytes);
	}
	return 0;
}

/* After sr_reserve, inside the group: map and fill the region. Returns 0, or an errno. */
int sr_prepare(void)
{
	if (!S.res || !S.tag)
		return EINVAL; /* sr_reserve first */
	S.region = mmap(NULL, S.cfg.npages * S.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (S.region == MAP_FAILED)
		return errno;
	/* base pages only: ksm_might_need_to_copy() and the race are about small folios */
	madvise(S.region, S.cfg.npages * S.page, MADV_NOHUGEPAGE);
	S.shared_start = S.cfg.npages - S.cfg.npages * S.cfg.shared_permille / 1000;
	for (uint64_t i = 0; i < S.cfg.npages; i++) {
		if (i < S.shared_start)
			S.tag[i] = private_tag(i);
		else
			S.tag[i] = shared_tag((i - S.shared_start) / S.cfg.group_size);
		make_page(S.region + i * S.page, S.tag[i], 0);
	}
	if (S.cfg.mergeable && S.shared_start < S.cfg.npages) {
		if (madvise(S.region + S.shared_start * S.page, (S.cfg.npages - S.shared_start) * S.page,
			    MADV_MERGEABLE) != 0)
			S.res->mergeable_errno = errno;
	}
	S.rng = splitmix(S.cfg.seed ^ ((uint64_t)S.cfg.proc_index << 32));
	S.res->region_addr = (uint64_t)(uintptr_t)S.region;
	S.res->page_size = S.page;
	return 0;
}

/* Run rounds until the duration passes or a stop is requested. */
int sr_run(void)
{
	struct sr_result *res = S.res;
	if (pthread_barrier_init(&S.start_barrier, NULL, S.cfg.threads) ||
	    pthread_barrier_init(&S.end_barrier, NULL, S.cfg.threads))
		return EAGAIN;
	res->start_mono_ns = now_ns(CLOCK_MONOTONIC);
	res->start_real_ns = now_ns(CLOCK_REALTIME);
	S.deadline = res->start_mono_ns + S.cfg.duration_ns;
	if (S.cfg.scenario == SR_SCENARIO_SKIP_SWAPCACHE || S.cfg.scenario == SR_SCENARIO_SWAPCACHE_FREED) {
		int err = run_skip_swapcache();
		res->end_mono_ns = now_ns(CLOCK_MONOTONIC);
		for (uint32_t i = 0; i < S.cfg.threads; i++) {
			res->pages_read += S.threads[i].reads;
			res->pages_written += S.threads[i].writes;
			res->windows += S.threads[i].nwindows;
			res->windows_dropped += S.threads[i].dropped;
		}
		res->mismatches = *S.mismatch_count;
		return err;
	}
	S.round = 1;
	pick_batch(S.round);
	page_out_batch();
	uint32_t started = 1;
	for (uint32_t i = 1; i < S.cfg.threads; i++) {
		if (pthread_create(&S.threads[i].thread, NULL, thread_main, &S.threads[i]) != 0)
			break;
		started++;
	}
	if (started != S.cfg.threads) {
		/* cannot meet at a barrier sized for threads that do not exist: stop them and fail */
		S.done = 1;
		for (uint32_t i = 1; i < started; i++)
			pthread_cancel(S.threads[i].thread);
		return EAGAIN;
	}
	thread_main(&S.threads[0]);
	for (uint32_t i = 1; i < S.cfg.threads; i++)
		pthread_join(S.threads[i].thread, NULL);
	reap_children(1);
	res->end_mono_ns = now_ns(CLOCK_MONOTONIC);
	res->rounds = S.round - 1;
	for (uint32_t i = 0; i < S.cfg.threads; i++) {
		res->pages_read += S.threads[i].reads;
		res->pages_written += S.threads[i].writes;
		res->windows += S.threads[i].nwindows;
		res->windows_dropped += S.threads[i].dropped;
	}
	res->child_pages_read = *S.child_reads;
	res->mismatches = *S.mismatch_count;
	return 0;
}

/* After sr_run: check every page once more (the oracle's last word on pages no round read back). */
void sr_sweep(void)
{
	for (uint64_t i = 0; i < S.cfg.npages; i++)
		check_page(NULL, i, SR_FINAL_SWEEP);
	S.res->final_pages_checked = S.cfg.npages;
	S.res->mismatches = *S.mismatch_count;
}

const struct sr_mismatch *sr_mismatches(void)
{
	return S.mismatches;
}

uint64_t sr_thread_windows(uint32_t thread, const struct sr_window **out)
{
	if (thread >= S.cfg.threads) {
		*out = NULL;
		return 0;
	}
	*out = S.threads[thread].windows;
	return S.threads[thread].nwindows;
}
