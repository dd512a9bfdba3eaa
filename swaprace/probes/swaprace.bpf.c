// SPDX-License-Identifier: GPL-2.0
//
// swaprace's bcc program: call/return probes on the swap-in path, one event record per probe hit (staged per
// CPU and written in batches), and an in-kernel detector that follows the rules of the offline analysis
// (the module docstring of swaprace/analysis/model.py is the specification).
//
// Compiled by bcc with, in front of this file:
//   * the generated header of swaprace/probes/bpf_layout.py: ROLE_*, STAT_*, RACE_*, OBTAIN_*, SRC_*, NRSRC_*,
//     VALID_*, PHASE_*, EVENT_BATCH and the structs sr_event and sr_race (never written here by hand; their
//     compiled layout is checked against the loader's at load time through the layout_* maps);
//   * -D defines chosen by bcc_backend.py from the symbol catalog. Per role R (FAULT LOOKUP ...):
//       HAVE_R=1        the role resolved to a probed kernel function
//       R_ENTRY_SRC     SRC_*: how the call knows the entry (argument, the folio, the return, the cluster...)
//       R_ENTRY_ARG, R_FOLIO_ARG, R_PAGE_ARG, R_NR_ARG   0-based C arguments (-1: none)
//       R_NR_SRC        NRSRC_*: how the call knows how many entries it covers
//       R_CL_SI, R_CL_CI, R_CL_OFF  the (si, ci, ci_start) arguments of a cluster-relative free
//       R_RET_BOOL      1: the function returns bool (only %al is defined)
//       R_THREAD        1: a fault-side role, filtered by FILTER_* (catalog.THREAD_ROLES)
//       R_RETURN=1      a return probe is attached
//   * struct offsets from BTF (swaprace/kernel/layout.py): FOLIO_SWAP_OFF FOLIO_FLAGS_OFF PG_HEAD FOLIO_ORDER_OFF
//     PAGE_SIZE_B SI_TYPE_OFF SI_CINFO_OFF CLUSTER_SIZE CLUSTER_SLOTS;
//   * USE_RINGBUF / RINGBUF_PAGES, EMIT_EVENTS, MAX_RACES, ENTRY_STATES;
//   * the thread filters FILTER_TGID, FILTER_COMM_LO/_HI, FILTER_CGROUP (+ FILTER_CGROUP_ID, informative).
//
// The detector, per the spec, and where it cannot follow it:
//   * Slot state per entry (LRU hash `slots`): allocation and free sequence numbers updated with
//     __sync_fetch_and_add (kprobe programs cannot take bpf_spin_lock), the latest ALLOC_RING allocations and
//     frees (time, thread) indexed by sequence number, the bound folio. Creation uses BPF_NOEXIST, so two CPUs
//     creating one entry's state cannot overwrite each other's counts. The ring slot of a sequence number is
//     written after the add; two frees (or allocations) of one slot at the same instant would share a ring
//     slot, which the kernel's own locking (cluster/swap_info lock) rules out.
//   * A window is obtained at the lookup return with a folio, or after a miss at T's cache_add / swap_read of
//     E; it snapshots the sequence numbers. A race is a free after the snapshot and an allocation after that
//     free, before T's install (its first swap_put covering E) or the window's end. The first free and
//     allocation after the snapshot are read back from the rings (ALLOC_RING of each kept per entry: a window
//     that saw more is marked uncertain).
//   * Classes as offline: recovered (no install), stale-install (private read, KSM copy before the
//     reallocation, or a folio not bound to E since the reallocation), benign (the folio bound to E in its new
//     generation, or a private read made after the new generation's data was written: each slot keeps its
//     generation's first completed swap_write only, so a later write proves nothing here: stale, conservatively).
//   * Windows are a per-thread stack of WSTACK: a return that was lost leaves its window below the next one, which
//     then gets the thread's events; the next return pops it and drops the stale ones below (counted:
//     windows_without_return); a full stack drops its oldest window (window_stack_overflows).
//   * Deviation: offline, "where no allocator is probed, the first cache add of a free entry begins its
//     generation"; the detector needs the allocator probe (both test kernels have one). Evictions are not
//     counted in the kernel (that needs the next event of the entry); rereads are.
//   * Deviation: an event covering more than MAX_NR (64) entries updates only the first 64 (counted:
//     nr_truncated). A PMD folio has 512, but a 512-iteration loop made the 6.1 verifier give up on
//     sr_call_cache_add (E2BIG, "program too large"); bpf_loop (5.17+) would lift this. Seen on 7.3: 16 mTHP
//     swap-in adds in one run, whose entries beyond the 64th then lack rereads (and any race on them).
//   * Uncertainty: the detector sees every probe hit (stream losses do not blind it), but it cannot see
//     kretprobe misses or state the LRU forgot: a window whose entry had no state when it was obtained is
//     marked uncertain, and slot_states_created beyond ENTRY_STATES is a lower bound of what the LRU forgot.

#include <uapi/linux/ptrace.h>

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef MAX_RACES
#define MAX_RACES 4096
#endif
#ifndef ENTRY_STATES
#define ENTRY_STATES 131072
#endif
#ifndef EMIT_EVENTS
#define EMIT_EVENTS 1
#endif
#define ALLOC_RING 4
#define WSTACK 4
#define MAX_NR 64  // 512 (a PMD folio) made the 6.1 verifier give up on sr_call_cache_add (E2BIG)
#define SWP_TYPE_SHIFT 58

// --- state ---------------------------------------------------------------------------------------------------

struct sr_mark {
    u64 seq;
    u64 ts;
    u32 tid;
    u32 pad;
};

struct sr_slot {
    u64 alloc_seq;
    u64 free_seq;
    struct sr_mark allocs[ALLOC_RING];
    struct sr_mark frees[ALLOC_RING];
    u64 bound_folio;
    u64 bind_ts;
    u32 freed;        // the latest lifecycle event was a free
    u32 residencies;  // bindings by cache_add in the current generation
    u32 prepared;     // SWAP_HAS_CACHE taken by a successful swapcache_prepare
    u32 pad;
    u64 written_call_ts;  // the current generation's first completed write to the slot (swap_write = 0)
    u64 written_ret_ts;
};

struct sr_window {
    u64 start;
    u64 entry;
    u64 obtain_ts;
    u64 folio;            // the folio T obtained
    u64 alloc_seq;        // the entry's sequence numbers when T obtained its page
    u64 free_seq;
    u64 miss_alloc_seq;   // the same at T's fault start (set at its lookup miss): the skip-path window
    u64 miss_free_seq;
    u64 ksm_ts;           // T's KSM copy (0: none)
    u64 ksm_folio;
    u64 ksm_bound;        // the obtained folio was bound to E, in the new generation, when T copied it
    u64 install_ts;
    u64 installed_folio;
    u32 has_entry;
    u32 missed;           // T's lookup returned no folio
    u32 obtain_kind;      // OBTAIN_* + 1 (0: not obtained)
    u32 installed;
    u32 race_reported;
    u32 failed_prepare;
    u32 uncertain;
    u32 pad;
};

struct sr_thread {
    u32 depth;
    u32 pad;
    struct sr_window w[WSTACK];
};

struct sr_pending_key {
    u32 tid;
    u32 role;
};
struct sr_pending {
    u64 ts;
    u64 entry;
    u64 folio;
    u64 nr;
};

struct sr_race_key {
    u32 tid;
    u32 pad;
    u64 window_start;
};

struct sr_batch {
    u32 n;
    u32 lost;           // records of this CPU not written since its last written one
    struct sr_event ev[EVENT_BATCH];
};

BPF_PERCPU_ARRAY(stats, u64, NR_STATS);
BPF_HASH(pending, struct sr_pending_key, struct sr_pending, 16384);
BPF_HASH(threads, u32, struct sr_thread, 16384);
BPF_TABLE("lru_hash", u64, struct sr_slot, slots, ENTRY_STATES);
BPF_HASH(races, struct sr_race_key, struct sr_race, MAX_RACES);
BPF_PERCPU_ARRAY(stage, struct sr_batch, 1);
// Never written: zeroed values to create map entries from (an sr_thread does not fit the 512-byte BPF stack).
BPF_PERCPU_ARRAY(zero_thread, struct sr_thread, 1);
BPF_PERCPU_ARRAY(zero_slot, struct sr_slot, 1);
// Not used at run time: their leaves are the compiler's layout of the records, checked by the loader.
// 1 once every probe is attached, 0 again before the first is detached (set by the loader): attaching one
// probe at a time takes over a minute under emulation, and meanwhile a call probe fires whose return probe is
// not there yet (seen: ~800 do_swap_page calls without returns in a 6.1 recording). Gated, the stream and the
// detector begin and end with every probe live, together.
BPF_ARRAY(armed, u32, 1);
BPF_ARRAY(layout_event, struct sr_event, 1);
BPF_ARRAY(layout_race, struct sr_race, 1);

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_RINGBUF_OUTPUT(race_events, 16);
#else
BPF_PERF_OUTPUT(events);
BPF_PERF_OUTPUT(race_events);
#endif

static __always_inline void count(int index)
{
    u64 *value = stats.lookup(&index);
    if (value)
        (*value)++;
}

static __always_inline u32 current_tid(void)
{
    return (u32)bpf_get_current_pid_tgid();
}

#ifdef FILTER_CGROUP
// --cgroup: the directory's fd, put in by the loader before the program is armed
BPF_CGROUP_ARRAY(filter_cgroup, 1);
#endif

// The thread filters (--pid, --comm, --cgroup: swaprace/probes/filters.py); only R_THREAD roles ask: the slot
// lifecycle of every task stays traced, since another task's free and reallocation is what a race is made of.
static __always_inline int filtered_out(void)
{
#ifdef FILTER_TGID
    if ((bpf_get_current_pid_tgid() >> 32) != FILTER_TGID)
        return 1;
#endif
#ifdef FILTER_COMM_LO
    u64 comm[2] = {};  // zeroed: the helper copies up to the NUL only
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != FILTER_COMM_LO || comm[1] != FILTER_COMM_HI)
        return 1;
#endif
#ifdef FILTER_CGROUP
    // the cgroup or one below it (v2); an error (no fd in the array) also filters out
    if (filter_cgroup.check_current_task(0) != 1)
        return 1;
#endif
    return 0;
}

static __always_inline u64 read_u64(u64 addr)
{
    u64 val = 0;
    if (addr)
        bpf_probe_read_kernel(&val, sizeof(val), (void *)addr);
    return val;
}

static __always_inline u64 arg_n(struct pt_regs *ctx, int n)
{
    switch (n) {
    case 0: return PT_REGS_PARM1(ctx);
    case 1: return PT_REGS_PARM2(ctx);
    case 2: return PT_REGS_PARM3(ctx);
    case 3: return PT_REGS_PARM4(ctx);
    case 4: return PT_REGS_PARM5(ctx);
    case 5: return PT_REGS_PARM6(ctx);
    }
    return 0;
}

static __always_inline int is_folio(u64 v)
{
    return v && v < (u64)-4095;
}

// --- the event stream ------------------------------------------------------------------------------------------

static __always_inline void emit(struct pt_regs *ctx, u64 ts, u8 role, u8 phase, u64 entry, u64 folio,
                                 u64 retval, u32 nr, u8 valid)
{
#if EMIT_EVENTS
    int zero = 0;
    struct sr_batch *b = stage.lookup(&zero);
    if (!b)
        return;
    u32 n = b->n;
    if (n >= EVENT_BATCH)
        n = 0;
    struct sr_event *ev = &b->ev[n & (EVENT_BATCH - 1)];
    u64 id = bpf_get_current_pid_tgid();
    ev->ts = ts;
    ev->entry = entry;
    ev->folio = folio;
    ev->retval = retval;
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->nr = nr;
    // The first record of a batch carries what this CPU lost since its last written batch.
    ev->lost_before = n == 0 ? b->lost : 0;
    ev->cpu = bpf_get_smp_processor_id();
    ev->role = role;
    ev->phase = phase;
    ev->valid = valid;
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
    if (n + 1 < EVENT_BATCH) {
        b->n = n + 1;
        return;
    }
    b->n = 0;
#ifdef USE_RINGBUF
    int err = events.ringbuf_output(&b->ev, sizeof(b->ev), 0);
#else
    int err = events.perf_submit(ctx, &b->ev, sizeof(b->ev));
#endif
    if (err == 0) {
        b->lost = 0;
        return;
    }
    // The whole batch is lost: the next batch's first record carries the count (a placed loss interval).
    b->lost += EVENT_BATCH;
    int idx = STAT_EVENT_DROPS;
    u64 *value = stats.lookup(&idx);
    if (value)
        *value += EVENT_BATCH;
#endif
}

static __always_inline void stash(u32 role, u64 ts, u64 entry, u64 folio, u64 nr)
{
    struct sr_pending_key key = {.tid = current_tid(), .role = role};
    struct sr_pending value = {.ts = ts, .entry = entry, .folio = folio, .nr = nr};
    if (pending.update(&key, &value) != 0)
        count(STAT_STATE_MAP_FULL);
}

static __always_inline int unstash(u32 role, struct sr_pending *out)
{
    struct sr_pending_key key = {.tid = current_tid(), .role = role};
    struct sr_pending *value = pending.lookup(&key);
    if (!value) {
        count(STAT_RETURNS_WITHOUT_CALL);
        return 0;
    }
    *out = *value;
    pending.delete(&key);
    return 1;
}

// --- what a call knows -----------------------------------------------------------------------------------------

struct sr_args {
    u64 entry;
    u64 folio;
    u64 nr;        // 0: the function has no nr
    u8 valid;
};

static __always_inline u64 folio_nr(u64 folio)
{
    u64 flags = read_u64(folio + FOLIO_FLAGS_OFF);
    if (!(flags & (1ULL << PG_HEAD)))
        return 1;
    u8 order = 0;
    bpf_probe_read_kernel(&order, 1, (void *)(folio + FOLIO_ORDER_OFF));
    return 1ULL << (order & 31);
}

static __always_inline void read_args(struct pt_regs *ctx, int esrc, int earg, int farg, int parg, int nsrc,
                                      int narg, int cl_si, int cl_ci, int cl_off, struct sr_args *a)
{
    a->entry = 0;
    a->folio = farg >= 0 ? arg_n(ctx, farg) : 0;
    a->nr = 0;
    a->valid = a->folio ? VALID_FOLIO : 0;
    if (esrc == SRC_ARG) {
        a->entry = arg_n(ctx, earg);
    } else if (esrc == SRC_FOLIO || esrc == SRC_SUBPAGE) {
        a->entry = read_u64(a->folio + FOLIO_SWAP_OFF);
    } else if (esrc == SRC_CLUSTER) {
        u64 si = arg_n(ctx, cl_si);
        s8 type = 0;
        bpf_probe_read_kernel(&type, 1, (void *)(si + SI_TYPE_OFF));
        u64 cinfo = read_u64(si + SI_CINFO_OFF);
        u64 ci = arg_n(ctx, cl_ci);
        u64 off = (u32)arg_n(ctx, cl_off);
        a->entry = ((u64)(u8)type << SWP_TYPE_SHIFT) | ((ci - cinfo) / CLUSTER_SIZE * CLUSTER_SLOTS + off);
    }
    if (nsrc == NRSRC_ARG) {
        a->nr = (u32)arg_n(ctx, narg);
    } else if (nsrc == NRSRC_FOLIO) {
        a->nr = a->folio ? folio_nr(a->folio) : 0;
    } else if (nsrc == NRSRC_SUBPAGE) {
        u64 page = arg_n(ctx, parg);
        if (page && page >= a->folio) {
            a->entry += (page - a->folio) / PAGE_SIZE_B;
            a->nr = 1;
        } else {
            a->nr = a->folio ? folio_nr(a->folio) : 0;
        }
    }
    if (a->entry)
        a->valid |= VALID_ENTRY;
    if (a->nr)
        a->valid |= VALID_NR;
}

#define READ_ARGS(ctx, R, a) \
    read_args(ctx, R##_ENTRY_SRC, R##_ENTRY_ARG, R##_FOLIO_ARG, R##_PAGE_ARG, R##_NR_SRC, R##_NR_ARG, \
              R##_CL_SI, R##_CL_CI, R##_CL_OFF, a)

// --- the detector: slots ---------------------------------------------------------------------------------------

static __always_inline struct sr_slot *slot_of(u64 entry, int create)
{
    struct sr_slot *s = slots.lookup(&entry);
    if (s || !create)
        return s;
    int k = 0;
    struct sr_slot *zero = zero_slot.lookup(&k);
    if (!zero)
        return 0;
    if (slots.insert(&entry, zero) == 0)
        count(STAT_SLOT_STATES_CREATED);
    s = slots.lookup(&entry);
    if (!s)
        count(STAT_STATE_MAP_FULL);
    return s;
}

static __always_inline void slot_alloc_one(u64 entry, u64 now, u32 tid)
{
    struct sr_slot *s = slot_of(entry, 1);
    if (!s)
        return;
    __sync_fetch_and_add(&s->alloc_seq, 1);
    u64 seq = s->alloc_seq;
    struct sr_mark *m = &s->allocs[seq & (ALLOC_RING - 1)];
    m->seq = seq;
    m->ts = now;
    m->tid = tid;
    if (s->freed)
        count(STAT_REUSES);
    s->freed = 0;
    s->residencies = 0;
    s->prepared = 0;
    s->written_call_ts = 0;
    s->written_ret_ts = 0;
    count(STAT_SLOT_ALLOCS);
}

static __always_inline void slot_free_one(u64 entry, u64 now, u32 tid, u64 since)
{
    struct sr_slot *s = slot_of(entry, 1);
    if (!s)
        return;
    if (since) {
        // free_cache true: a slot free seen inside this very call was the free; this one only confirms it.
        struct sr_mark *last = &s->frees[s->free_seq & (ALLOC_RING - 1)];
        if (s->free_seq && last->ts >= since)
            return;
    }
    __sync_fetch_and_add(&s->free_seq, 1);
    u64 seq = s->free_seq;
    struct sr_mark *m = &s->frees[seq & (ALLOC_RING - 1)];
    m->seq = seq;
    m->ts = now;
    m->tid = tid;
    s->freed = 1;
    s->prepared = 0;
    s->bound_folio = 0;
    count(STAT_RELEASES);
}

static __always_inline void bind_one(u64 entry, u64 folio, u64 now, int from_add)
{
    struct sr_slot *s = slot_of(entry, 1);
    if (!s)
        return;
    if (s->bound_folio == folio && !from_add)
        return;  // a lookup of the folio already bound: the same residency
    count(STAT_BINDINGS);
    if (from_add) {
        // A re-read begins a residency in a generation that already had one. An add while a folio is still
        // bound means that folio's delete was not seen (a BPF recursion miss): as offline, the residency goes on.
        if (s->residencies && !s->bound_folio)
            count(STAT_REREADS);
        s->residencies++;
    }
    s->bound_folio = folio;
    s->bind_ts = now;
}

static __always_inline void unbind_one(u64 entry, u64 folio)
{
    struct sr_slot *s = slot_of(entry, 0);
    if (!s) {
        count(STAT_SLOT_STATE_MISSES);
        return;
    }
    if (!folio || s->bound_folio == folio) {
        s->bound_folio = 0;
        s->prepared = 0;
        count(STAT_UNBINDINGS);
    }
}

#define FOR_RANGE(i, nr) \
    if ((nr) > MAX_NR) count(STAT_NR_TRUNCATED); \
    for (int i = 0; i < MAX_NR; i++) if (i < (int)((nr) ? (nr) : 1))

// --- the detector: windows -------------------------------------------------------------------------------------

static __always_inline struct sr_window *top_window(struct sr_thread *t)
{
    if (!t || t->depth == 0)
        return 0;
    return &t->w[(t->depth - 1) & (WSTACK - 1)];
}

static __always_inline struct sr_window *current_window(void)
{
    u32 tid = current_tid();
    return top_window(threads.lookup(&tid));
}

static __always_inline int covers(u64 first, u64 nr, u64 entry)
{
    return entry >= first && entry < first + (nr ? nr : 1);
}

static __always_inline void obtain(struct sr_window *w, u32 kind, u64 folio, u64 now)
{
    struct sr_slot *s = slot_of(w->entry, 0);
    if (!s) {
        w->uncertain = 1;  // no history of this entry: new to the capture, or forgotten by the LRU
        count(STAT_SLOT_STATE_MISSES);
        s = slot_of(w->entry, 1);
    }
    w->obtain_kind = kind + 1;
    w->obtain_ts = now;
    w->folio = folio;
    w->alloc_seq = s ? s->alloc_seq : 0;
    w->free_seq = s ? s->free_seq : 0;
    if (kind == OBTAIN_READ) {
        // The private read of the skip-swapcache path reads the slot whichever generation's data it then holds
        // (nothing yet, right after a reallocation), so the window opens at the fault's start (the offline rule).
        w->alloc_seq = w->miss_alloc_seq;
        w->free_seq = w->miss_free_seq;
    }
}

// The first free after T obtained its page and the first allocation after it, before `until` (the install or
// the window's end); 0 when there is no race. Another CPU can free or allocate E while this probe runs: its
// mark then bears a later time than `until`, and it is not in the window (the offline model orders by time).
static __always_inline int find_race(struct sr_window *w, struct sr_mark *release, struct sr_mark *realloc,
                                     u64 until)
{
    struct sr_slot *s = slots.lookup(&w->entry);
    if (!s || s->free_seq <= w->free_seq || s->alloc_seq <= w->alloc_seq)
        return 0;
    u64 f = w->free_seq + 1, a = w->alloc_seq + 1;
    *release = s->frees[f & (ALLOC_RING - 1)];
    *realloc = s->allocs[a & (ALLOC_RING - 1)];
    if (release->seq != f || realloc->seq != a)
        w->uncertain = 1;  // more frees/allocations than the rings keep since T obtained its page
    if (realloc->ts < release->ts) {
        // the slot was free when T obtained its page: the first allocation after the free is the next one
        if (s->alloc_seq <= a)
            return 0;
        *realloc = s->allocs[(a + 1) & (ALLOC_RING - 1)];
    }
    if (!w->uncertain && (release->ts > until || realloc->ts > until))
        return 0;  // (when the rings overflowed the marks are later ones: the race stands, uncertain)
    return 1;
}

static __always_inline void report_race(struct pt_regs *ctx, struct sr_window *w, u32 tid, u64 end,
                                        struct sr_mark *release, struct sr_mark *realloc, u32 klass)
{
    struct sr_race race = {};
    race.entry = w->entry;
    race.window_start = w->start;
    race.window_end = end;
    race.obtain = w->obtain_ts;
    race.release = release->ts;
    race.realloc = realloc->ts;
    race.install = w->install_ts;
    race.folio = w->folio;
    race.installed_folio = w->installed_folio;
    race.ksm_copy = w->ksm_ts;
    race.tid = tid;
    race.pid = bpf_get_current_pid_tgid() >> 32;
    race.release_tid = release->tid;
    race.realloc_tid = realloc->tid;
    race.klass = klass;
    race.obtain_kind = w->obtain_kind ? w->obtain_kind - 1 : 0;
    race.uncertain = w->uncertain;
    if (klass == RACE_STALE_INSTALL)
        count(STAT_RACES_STALE_INSTALL);
    else if (klass == RACE_BENIGN)
        count(STAT_RACES_BENIGN);
    else
        count(STAT_RACES_RECOVERED);
    struct sr_race_key key = {.tid = tid, .window_start = w->start};
    if (races.update(&key, &race) != 0)
        count(STAT_RACE_TABLE_FULL);
#ifdef USE_RINGBUF
    if (race_events.ringbuf_output(&race, sizeof(race), 0) != 0)
        count(STAT_RACE_STREAM_DROPS);
#else
    if (race_events.perf_submit(ctx, &race, sizeof(race)) != 0)
        count(STAT_RACE_STREAM_DROPS);
#endif
}

// --- per-role detector steps (called from the probes below) ------------------------------------------------------

static __always_inline void on_fault_call(u64 now)
{
    u32 tid = current_tid();
    struct sr_thread *t = threads.lookup(&tid);
    if (!t) {
        int k = 0;
        struct sr_thread *zero = zero_thread.lookup(&k);
        if (zero)
            threads.insert(&tid, zero);
        t = threads.lookup(&tid);
        if (!t) {
            count(STAT_STATE_MAP_FULL);
            return;
        }
    }
    if (t->depth >= WSTACK) {
        // a full stack: its oldest windows lost their returns. Drop the bottom one.
        count(STAT_WINDOW_STACK_OVERFLOWS);
#pragma unroll
        for (int i = 0; i < WSTACK - 1; i++)
            t->w[i] = t->w[i + 1];
        t->depth = WSTACK - 1;
    }
    struct sr_window *w = &t->w[t->depth & (WSTACK - 1)];
    __builtin_memset(w, 0, sizeof(*w));
    w->start = now;
    t->depth++;
}

static __always_inline void on_fault_return(struct pt_regs *ctx, u64 now)
{
    u32 tid = current_tid();
    struct sr_thread *t = threads.lookup(&tid);
    struct sr_window *w = top_window(t);
    if (!w) {
        count(STAT_RETURNS_WITHOUT_CALL);
        return;
    }
    count(STAT_WINDOWS);
    if (w->has_entry)
        count(STAT_WINDOWS_WITH_ENTRY);
    if (w->obtain_kind)
        count(STAT_OBTAINED);  // at the close, like every window count: a window still open at detach has none
    if (w->uncertain)
        count(STAT_WINDOWS_UNCERTAIN);
    if (w->race_reported) {
        // reported at the install; the window's end is known only now
        struct sr_race_key key = {.tid = tid, .window_start = w->start};
        struct sr_race *race = races.lookup(&key);
        if (race)
            race->window_end = now;
    } else if (w->obtain_kind && !w->installed) {
        struct sr_mark release = {}, realloc = {};
        if (find_race(w, &release, &realloc, now))
            report_race(ctx, w, tid, now, &release, &realloc, RACE_RECOVERED);
    }
    // do_swap_page does not nest in one thread (it touches no user memory), so the windows below this one lost
    // their returns (or began before the return probe was attached): like the offline model, which makes no
    // window of a call without a return, drop them, so they cannot take this thread's later events.
    if (t->depth > 1) {
        int idx = STAT_WINDOWS_WITHOUT_RETURN;
        u64 *value = stats.lookup(&idx);
        if (value)
            *value += t->depth - 1;
    }
    t->depth = 0;
}

static __always_inline void on_lookup_call(u64 entry, u64 now)
{
    struct sr_window *w = current_window();
    if (w && !w->has_entry) {
        w->entry = entry;  // the window's entry: its thread's first lookup in it
        w->has_entry = 1;
    }
}

// The sequence number a slot had at `since`: `seq` stepped back over the ring's marks made at or after it. The
// skip-swapcache window opens at the fault's start (T read its pte before do_swap_page), before T's lookup
// names E. A ring that no longer holds a mark it needs makes the window uncertain.
static __always_inline u64 seq_before(struct sr_mark *ring, u64 seq, u64 since, u32 *uncertain)
{
    for (int j = 0; j <= ALLOC_RING; j++) {  // one more than the ring: its overflow is seen
        if (seq == 0)
            break;
        struct sr_mark *m = &ring[seq & (ALLOC_RING - 1)];
        if (m->seq != seq) {
            *uncertain = 1;
            break;
        }
        if (m->ts < since)
            break;
        seq--;
    }
    return seq;
}

static __always_inline void on_lookup_return(u64 entry, u64 folio, u64 now)
{
    if (!is_folio(folio))
        folio = 0;
    if (folio) {
        count(STAT_LOOKUP_HITS);
        bind_one(entry, folio, now, 0);
    }
    struct sr_window *w = current_window();
    // After a miss, a later lookup of E by T that hits is where T got its page: 7.x swapin_sync() looks E up
    // again before it allocates (the offline model's rule; found by the simulated kernel).
    if (w && w->has_entry && w->entry == entry && !w->obtain_kind) {
        if (folio) {
            obtain(w, OBTAIN_LOOKUP, folio, now);
        } else if (!w->missed) {
            struct sr_slot *s = slots.lookup(&entry);  // no state yet: every later free/allocation is new
            w->miss_alloc_seq = s ? seq_before(s->allocs, s->alloc_seq, w->start, &w->uncertain) : 0;
            w->miss_free_seq = s ? seq_before(s->frees, s->free_seq, w->start, &w->uncertain) : 0;
            w->missed = 1;
        }
    }
}

static __always_inline void on_cache_add(u64 entry, u64 folio, u64 nr, u64 now)
{
    FOR_RANGE(i, nr)
        bind_one(entry + i, folio, now, 1);
    struct sr_window *w = current_window();
    if (w && w->has_entry && w->missed && !w->obtain_kind && covers(entry, nr, w->entry))
        obtain(w, OBTAIN_CACHE_ADD, folio, now);
}

static __always_inline void on_swap_read(u64 entry, u64 folio, u64 nr, u64 now)
{
    struct sr_window *w = current_window();
    if (w && w->has_entry && w->missed && !w->obtain_kind && covers(entry, nr, w->entry))
        obtain(w, OBTAIN_READ, folio, now);
}

static __always_inline void on_ksm_copy_return(u64 in, u64 out, u64 now)
{
    struct sr_window *w = current_window();
    if (!w || !w->obtain_kind || w->installed || w->ksm_ts || !is_folio(out) || out == in)
        return;
    w->ksm_ts = now;
    w->ksm_folio = out;
    struct sr_slot *s = slots.lookup(&w->entry);
    // bound to E in its newest generation at the copy (compared with the reallocation at the install)
    w->ksm_bound = s && s->bound_folio == w->folio ? s->bind_ts + 1 : 0;
}

static __always_inline void on_swap_put(struct pt_regs *ctx, u64 entry, u64 folio, u64 nr, u64 now)
{
    u32 tid = current_tid();
    struct sr_thread *t = threads.lookup(&tid);
    struct sr_window *w = top_window(t);
    if (!w || !w->has_entry || !w->obtain_kind || w->installed || !covers(entry, nr, w->entry))
        return;
    w->installed = 1;
    w->install_ts = now;
    w->installed_folio = w->ksm_ts ? w->ksm_folio : (folio ? folio : w->folio);
    count(STAT_INSTALLS);
    if (w->failed_prepare)
        count(STAT_INSTALLS_AFTER_FAILED_PREPARE);
    struct sr_mark release = {}, realloc = {};
    if (!find_race(w, &release, &realloc, now))
        return;
    u32 klass = RACE_STALE_INSTALL;
    if (w->obtain_kind - 1 == OBTAIN_READ) {
        // A private read made before the reallocation is stale. One made after it is live once the new
        // generation's data was on the device (a write that began after the reallocation returned before the
        // read: swap_writepage/swap_writeout are synchronous on the SWP_SYNCHRONOUS_IO devices this path reads).
        struct sr_slot *s = slots.lookup(&w->entry);
        int live = w->obtain_ts > realloc.ts && s && s->written_ret_ts && s->written_call_ts > realloc.ts &&
                   s->written_ret_ts < w->obtain_ts;
        klass = live ? RACE_BENIGN : RACE_STALE_INSTALL;
    } else if (w->ksm_ts && w->ksm_ts < realloc.ts) {
        klass = RACE_STALE_INSTALL;  // a KSM copy made before the reallocation
    } else if (w->ksm_ts) {
        klass = w->ksm_bound && w->ksm_bound - 1 >= realloc.ts ? RACE_BENIGN : RACE_STALE_INSTALL;
    } else {
        struct sr_slot *s = slots.lookup(&w->entry);
        klass = s && s->bound_folio == w->folio && s->bind_ts >= realloc.ts ? RACE_BENIGN : RACE_STALE_INSTALL;
    }
    w->race_reported = 1;
    report_race(ctx, w, tid, 0, &release, &realloc, klass);
}

static __always_inline void on_prepare_return(u64 entry, u64 ret)
{
    struct sr_window *w = current_window();
    if ((u32)ret == (u32)-17) {  // -EEXIST: the thread must back out
        count(STAT_PREPARE_BACKOFFS);
        if (w && w->has_entry && w->entry == entry)
            w->failed_prepare = 1;
        return;
    }
    if ((u32)ret != 0)
        return;
    struct sr_slot *s = slot_of(entry, 1);
    if (!s)
        return;
    if (s->prepared)
        count(STAT_PREPARE_CONFLICTS);  // two takes of SWAP_HAS_CACHE: the 2024 guard let both through
    s->prepared = 1;
}

// --- probes ------------------------------------------------------------------------------------------------------
// sr_call_<role> (kprobe) for every role; sr_ret_<role> (kretprobe) where R_RETURN. The detector step of each is
// one of the on_* functions above; the event record carries what the call knows (entry, folio, nr) or the return
// value, like the ftrace backend's probes.

#define HIT(R_ID, PHASE) count(STAT_HITS + (R_ID) * 2 + (PHASE))

static __always_inline int is_armed(void)
{
    int k = 0;
    u32 *on = armed.lookup(&k);
    return on && *on;
}

#define DEFINE_CALL_PROBE(name, R, R_ID, STEP)                                                    \
    int sr_call_##name(struct pt_regs *ctx)                                                      \
    {                                                                                            \
        u64 now = bpf_ktime_get_ns();                                                            \
        if (!is_armed() || (R##_THREAD && filtered_out()))                                       \
            return 0;                                                                            \
        HIT(R_ID, PHASE_CALL);                                                                   \
        struct sr_args a = {};                                                                   \
        READ_ARGS(ctx, R, &a);                                                                   \
        STEP;                                                                                    \
        emit(ctx, now, R_ID, PHASE_CALL, a.entry, a.folio, 0, (u32)a.nr, a.valid);               \
        return 0;                                                                                \
    }

// The near-identical return probes: the return value (low byte for a bool), the call's stashed values, one step.
#define DEFINE_RET_PROBE(name, R, R_ID, PAIRED, STEP)                                             \
    int sr_ret_##name(struct pt_regs *ctx)                                                       \
    {                                                                                            \
        u64 now = bpf_ktime_get_ns();                                                            \
        if (!is_armed() || (R##_THREAD && filtered_out()))                                       \
            return 0;                                                                            \
        HIT(R_ID, PHASE_RETURN);                                                                 \
        u64 ret = PT_REGS_RC(ctx);                                                               \
        if (R##_RET_BOOL)                                                                        \
            ret &= 0xff;                                                                         \
        struct sr_pending call = {};                                                             \
        int paired = (PAIRED) ? unstash(R_ID, &call) : 0;                                        \
        u64 entry = 0;                                                                           \
        u32 nr = 0;                                                                              \
        (void)paired;                                                                            \
        STEP;                                                                                    \
        emit(ctx, now, R_ID, PHASE_RETURN, entry, 0, ret, nr,                                    \
             VALID_RETVAL | (entry ? VALID_ENTRY : 0) | (nr ? VALID_NR : 0));                    \
        return 0;                                                                                \
    }

#define STASH(R_ID) stash(R_ID, now, a.entry, a.folio, a.nr)

#ifdef HAVE_FAULT
DEFINE_CALL_PROBE(fault, FAULT, ROLE_FAULT, on_fault_call(now))
DEFINE_RET_PROBE(fault, FAULT, ROLE_FAULT, 0, on_fault_return(ctx, now))
#endif

#ifdef HAVE_LOOKUP
DEFINE_CALL_PROBE(lookup, LOOKUP, ROLE_LOOKUP, { on_lookup_call(a.entry, now); STASH(ROLE_LOOKUP); })
DEFINE_RET_PROBE(lookup, LOOKUP, ROLE_LOOKUP, 1, { if (paired) on_lookup_return(call.entry, ret, now); })
#endif

#ifdef HAVE_KSM_COPY
DEFINE_CALL_PROBE(ksm_copy, KSM_COPY, ROLE_KSM_COPY, STASH(ROLE_KSM_COPY))
DEFINE_RET_PROBE(ksm_copy, KSM_COPY, ROLE_KSM_COPY, 1, { if (paired) on_ksm_copy_return(call.folio, ret, now); })
#endif

#ifdef HAVE_FREE_CACHE
static __always_inline void on_free_cache_return(struct sr_pending *call, u64 ret, u64 now)
{
    if (!ret)
        return;
    if (!call->entry) {
        count(STAT_RELEASES_UNATTRIBUTED);
        return;
    }
    // true: the folio left the swap cache and its slots' last reference went with it
    u32 tid = current_tid();
    FOR_RANGE(i, call->nr) {
        unbind_one(call->entry + i, call->folio);
        slot_free_one(call->entry + i, now, tid, call->ts);
    }
}
DEFINE_CALL_PROBE(free_cache, FREE_CACHE, ROLE_FREE_CACHE, STASH(ROLE_FREE_CACHE))
DEFINE_RET_PROBE(free_cache, FREE_CACHE, ROLE_FREE_CACHE, 1, { if (paired) on_free_cache_return(&call, ret, now); })
#endif

#ifdef HAVE_SLOT_ALLOC
static __always_inline void slot_alloc_range(u64 entry, u64 nr, u64 now)
{
    u32 tid = current_tid();
    FOR_RANGE(i, nr)
        slot_alloc_one(entry + i, now, tid);
}
#if SLOT_ALLOC_ENTRY_SRC == SRC_RETURN
// 6.1 folio_alloc_swap returns the entry: the allocation is seen at the return (0: failure)
DEFINE_CALL_PROBE(slot_alloc, SLOT_ALLOC, ROLE_SLOT_ALLOC, STASH(ROLE_SLOT_ALLOC))
DEFINE_RET_PROBE(slot_alloc, SLOT_ALLOC, ROLE_SLOT_ALLOC, 1, {
    if (paired && ret) {
        entry = ret;
        nr = call.nr;
        slot_alloc_range(ret, call.nr, now);
    }
})
#else
DEFINE_CALL_PROBE(slot_alloc, SLOT_ALLOC, ROLE_SLOT_ALLOC, { if (a.entry) slot_alloc_range(a.entry, a.nr, now); })
#ifdef SLOT_ALLOC_RETURN
DEFINE_RET_PROBE(slot_alloc, SLOT_ALLOC, ROLE_SLOT_ALLOC, 0, {})
#endif
#endif
#endif

#ifdef HAVE_SLOT_FREE
static __always_inline void slot_free_range(u64 entry, u64 nr, u64 now)
{
    u32 tid = current_tid();
    FOR_RANGE(i, nr)
        slot_free_one(entry + i, now, tid, 0);
}
DEFINE_CALL_PROBE(slot_free, SLOT_FREE, ROLE_SLOT_FREE, { if (a.entry) slot_free_range(a.entry, a.nr, now); })
#endif

#ifdef HAVE_SWAP_PUT
DEFINE_CALL_PROBE(swap_put, SWAP_PUT, ROLE_SWAP_PUT, on_swap_put(ctx, a.entry, a.folio, a.nr, now))
#endif

#ifdef HAVE_ZAP_PUT
DEFINE_CALL_PROBE(zap_put, ZAP_PUT, ROLE_ZAP_PUT, {})
#ifdef ZAP_PUT_RETURN
DEFINE_RET_PROBE(zap_put, ZAP_PUT, ROLE_ZAP_PUT, 0, {})
#endif
#endif

#ifdef HAVE_SWAP_DUP
DEFINE_CALL_PROBE(swap_dup, SWAP_DUP, ROLE_SWAP_DUP, {})
#ifdef SWAP_DUP_RETURN
DEFINE_RET_PROBE(swap_dup, SWAP_DUP, ROLE_SWAP_DUP, 0, {})
#endif
#endif

#ifdef HAVE_CACHE_ADD
DEFINE_CALL_PROBE(cache_add, CACHE_ADD, ROLE_CACHE_ADD, { if (a.entry) on_cache_add(a.entry, a.folio, a.nr, now); })
#ifdef CACHE_ADD_RETURN
DEFINE_RET_PROBE(cache_add, CACHE_ADD, ROLE_CACHE_ADD, 0, {})
#endif
#endif

#ifdef HAVE_CACHE_DELETE
static __always_inline void cache_delete_range(u64 entry, u64 folio, u64 nr)
{
    FOR_RANGE(i, nr)
        unbind_one(entry + i, folio);
}
DEFINE_CALL_PROBE(cache_delete, CACHE_DELETE, ROLE_CACHE_DELETE, {
    if (a.entry) cache_delete_range(a.entry, a.folio, a.nr);
})
#endif

#ifdef HAVE_SWAP_READ
DEFINE_CALL_PROBE(swap_read, SWAP_READ, ROLE_SWAP_READ, { if (a.entry) on_swap_read(a.entry, a.folio, a.nr, now); })
#ifdef SWAP_READ_RETURN
DEFINE_RET_PROBE(swap_read, SWAP_READ, ROLE_SWAP_READ, 0, {})
#endif
#endif

#ifdef HAVE_SWAP_WRITE
// The skip-swapcache rule: a late private read is live only after the new generation's data was written.
// Each slot keeps its generation's first completed write (pageout writes the whole folio).
static __always_inline void on_write_return(struct sr_pending *call, u64 ret, u64 now)
{
    if ((u32)ret || !call->entry)  // int: 0 is success (the data is on the device)
        return;
    FOR_RANGE(i, call->nr) {
        u64 e = call->entry + i;
        struct sr_slot *s = slots.lookup(&e);
        if (s && !s->freed && !s->written_ret_ts) {
            s->written_call_ts = call->ts;
            s->written_ret_ts = now;
        }
    }
}
#ifdef SWAP_WRITE_RETURN
DEFINE_CALL_PROBE(swap_write, SWAP_WRITE, ROLE_SWAP_WRITE, STASH(ROLE_SWAP_WRITE))
DEFINE_RET_PROBE(swap_write, SWAP_WRITE, ROLE_SWAP_WRITE, 1, { if (paired) on_write_return(&call, ret, now); })
#else
DEFINE_CALL_PROBE(swap_write, SWAP_WRITE, ROLE_SWAP_WRITE, {})
#endif
#endif

#ifdef HAVE_PREPARE
DEFINE_CALL_PROBE(prepare, PREPARE, ROLE_PREPARE, STASH(ROLE_PREPARE))
DEFINE_RET_PROBE(prepare, PREPARE, ROLE_PREPARE, 1, { if (paired) on_prepare_return(call.entry, ret); })
#endif

#ifdef HAVE_PREPARE_CLEAR
static __always_inline void on_prepare_clear(u64 entry)
{
    struct sr_slot *s = slot_of(entry, 0);
    if (s)
        s->prepared = 0;
}
DEFINE_CALL_PROBE(prepare_clear, PREPARE_CLEAR, ROLE_PREPARE_CLEAR, { if (a.entry) on_prepare_clear(a.entry); })
#endif
