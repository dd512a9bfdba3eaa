// SPDX-License-Identifier: GPL-2.0
//
// swaprace's bcc program: call/return probes on the swap-in path, one event record per probe hit, and an
// in-kernel detector of swap-entry reuse inside do_swap_page's race window.
//
// Compiled by bcc with -D defines chosen by bcc_backend.py from the symbol catalog (never by string
// replacement). Per role R in FAULT LOOKUP KSM_COPY FREE_CACHE SLOT_ALLOC SLOT_FREE SWAP_PUT CACHE_ADD
// CACHE_DELETE PREPARE:
//   HAVE_R=1          the role resolved to a probed kernel function
//   R_KEY_ARG=n       0-based C argument carrying the role's key value (entry or folio), if any
//   R_ENTRY_ARG_N=n   argument holding a by-value swp_entry_t (its register holds .val), -1 if none
//   R_FOLIO_ARG_N=n   argument holding a struct folio * / struct page *, -1 if none
//   R_RET_BOOL=1      the function returns bool: only the low 8 bits of the return register are defined
//   R_RETURN=1        a return probe is attached (the function returns a value, or the role needs it)
// Global switches:
//   USE_RINGBUF=1     BPF ring buffer (kernel has it), else per-CPU perf buffers
//   RINGBUF_PAGES=n   ring buffer size in pages (power of two)
//   EMIT_EVENTS=1     stream every probe hit to user space (0: in-kernel detection and counters only)
//   FILTER_TGID=p     fault-side roles only for process p (entry lifecycle is always followed: another
//                     task's release is the race)
//   MAX_RACES=n       size of the race table read at the end
//   ENTRY_STATES=n    entries followed by the detector (LRU: the oldest idle entries are forgotten)
//   FOLIO_SWAP_OFFSET=n  byte offset of folio->swap.val / page->private (x86-64: 40)

// Only the light uapi header: no kernel struct is needed (the folio's entry is read at a fixed offset), and
// every kernel header clang does not parse shortens the compile (minutes under emulation).
#include <uapi/linux/ptrace.h>

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif
#ifndef FOLIO_SWAP_OFFSET
#define FOLIO_SWAP_OFFSET 40
#endif

// Role ids: the order of swaprace.events.ROLES (checked by tests/test_live_bcc.py).
#define ROLE_FAULT 0
#define ROLE_LOOKUP 1
#define ROLE_KSM_COPY 2
#define ROLE_FREE_CACHE 3
#define ROLE_SLOT_ALLOC 4
#define ROLE_SLOT_FREE 5
#define ROLE_SWAP_PUT 6
#define ROLE_CACHE_ADD 7
#define ROLE_CACHE_DELETE 8
#define ROLE_PREPARE 9
#define NR_ROLES 10

#define PHASE_CALL 0
#define PHASE_RETURN 1

// Bits of sr_event.valid: which of entry/folio/retval the record knows.
#define VALID_ENTRY 1
#define VALID_FOLIO 2
#define VALID_RETVAL 4

// Counters (per-CPU array `stats`). The first NR_ROLES*2 slots count probe hits per role and phase.
#define STAT_HITS 0
#define STAT_EVENT_DROPS 20               // = NR_ROLES * 2: event record not written, buffer full
#define STAT_WINDOWS 21                   // do_swap_page returns that closed a window
#define STAT_WINDOWS_WITH_ENTRY 22        // ... whose thread made a lookup inside it
#define STAT_LOOKUP_HITS 23               // lookups returning a folio
#define STAT_BINDINGS 24                  // entry -> folio bindings (lookup hits + cache adds)
#define STAT_RELEASES 25                  // releases attributed to an entry
#define STAT_REUSES 26                    // bindings after a release: generation changes
#define STAT_RACES_RECOVERED 27
#define STAT_RACES_STALE_INSTALL 28
#define STAT_RACE_TABLE_FULL 29           // race found but the race table was full (still counted above)
#define STAT_STATE_MAP_FULL 30            // detector state could not be stored
#define STAT_RACE_STREAM_DROPS 31                // race record not streamed (still in the race table)
#define STAT_RETURNS_WITHOUT_CALL 32       // return probe without a matching call (attached mid-call)
#define STAT_RELEASES_UNATTRIBUTED 33     // release of a folio with no known entry
#define NR_STATS 40

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef MAX_RACES
#define MAX_RACES 4096
#endif
#ifndef ENTRY_STATES
#define ENTRY_STATES 262144
#endif
#ifndef EMIT_EVENTS
#define EMIT_EVENTS 1
#endif
#define REUSE_RING 4  // reuse records kept per entry: enough for every reuse inside one fault window

// One probe hit: 64 bytes, decoded in user space by bcc_backend.EVENT_DTYPE.
struct sr_event {
    u64 ts;
    u64 entry;
    u64 folio;
    u64 retval;
    u32 pid;
    u32 tid;
    u16 cpu;
    u8 role;
    u8 phase;
    u8 valid;
    u8 pad[3];
    char comm[TASK_COMM_LEN];
};

// A race found in the kernel: the same fields as the offline analysis' races list.
struct sr_race {
    u64 entry;
    u64 window_start;
    u64 window_end;     // 0 while the window is still open (stale-install is known before the return)
    u64 release;
    u64 rebind;
    u32 tid;
    u32 pid;
    u32 klass;          // 0 recovered, 1 stale-install
    u32 pad;
};

// One reuse of an entry: the release that ended its previous generation and the binding that began the next.
struct sr_reuse {
    u64 release_ts;
    u64 release_seq;
    u64 bind_ts;
};

// Life of one swap entry as the detector follows it. Bindings and releases alternate: a binding while unbound
// starts a generation, a release while bound ends it, repeats are no-ops (the offline analysis' rules).
struct sr_entry_state {
    u64 generation;        // bindings after a release so far
    u64 release_seq;       // generation-ending releases so far (orders them against a thread's lookup)
    u64 released;          // 1 when the current generation has ended
    u64 release_ts;        // when it ended
    u64 bound_folio;       // folio of the latest binding
    struct sr_reuse reuses[REUSE_RING];  // the last reuses, slot = generation % REUSE_RING
};

// A thread inside do_swap_page.
struct sr_window {
    u64 start;
    u64 entry;
    u64 lookup_ts;
    u64 release_seq_at_lookup;
    u32 has_entry;
    u32 race_reported;     // a stale-install was already reported for this window
    u32 installed;         // the thread installed its entry before any release: the fault is done with it
    u32 pad;
};

// What a return probe needs from its call: per thread and role.
struct sr_pending_key {
    u32 tid;
    u32 role;
};
struct sr_pending {
    u64 entry;
    u64 folio;
    u32 valid;
    u32 pad;
};

struct sr_race_key {
    u32 tid;
    u32 pad;
    u64 window_start;
};

BPF_PERCPU_ARRAY(stats, u64, NR_STATS);
BPF_HASH(pending, struct sr_pending_key, struct sr_pending, 16384);
BPF_HASH(windows, u32, struct sr_window, 16384);
BPF_TABLE("lru_hash", u64, struct sr_entry_state, entry_states, ENTRY_STATES);
BPF_TABLE("lru_hash", u64, u64, folio_entries, ENTRY_STATES);
BPF_HASH(races, struct sr_race_key, struct sr_race, MAX_RACES);

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

// Fault-side roles honour the process filter; the entry lifecycle never does.
static __always_inline int filtered_out(void)
{
#ifdef FILTER_TGID
    return (bpf_get_current_pid_tgid() >> 32) != FILTER_TGID;
#else
    return 0;
#endif
}

// The swap entry a swap-cache folio holds: folio->swap.val (since 6.6) overlays folio->private, which overlays
// page->private (the kernel asserts both with FOLIO_MATCH), so one offset (catalog.FOLIO_SWAP_OFFSET, the
// same one the ftrace backend fetches) serves folio and page kernels.
static __always_inline u64 entry_of_folio(u64 folio)
{
    u64 val = 0;
    if (folio)
        bpf_probe_read_kernel(&val, sizeof(val), (void *)(folio + FOLIO_SWAP_OFFSET));
    return val;
}

static __always_inline void emit(struct pt_regs *ctx, u64 ts, u8 role, u8 phase, u64 entry, u64 folio,
                                 u64 retval, u8 valid)
{
#if EMIT_EVENTS
    struct sr_event ev = {};
    u64 id = bpf_get_current_pid_tgid();
    ev.ts = ts;
    ev.entry = entry;
    ev.folio = folio;
    ev.retval = retval;
    ev.pid = id >> 32;
    ev.tid = (u32)id;
    ev.cpu = bpf_get_smp_processor_id();
    ev.role = role;
    ev.phase = phase;
    ev.valid = valid;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
#ifdef USE_RINGBUF
    if (events.ringbuf_output(&ev, sizeof(ev), 0) != 0)
        count(STAT_EVENT_DROPS);
#else
    if (events.perf_submit(ctx, &ev, sizeof(ev)) != 0)
        count(STAT_EVENT_DROPS);
#endif
#endif
}

static __always_inline void stash(u32 role, u64 entry, u64 folio, u32 valid)
{
    struct sr_pending_key key = {.tid = current_tid(), .role = role};
    struct sr_pending value = {.entry = entry, .folio = folio, .valid = valid};
    if (pending.update(&key, &value) != 0)
        count(STAT_STATE_MAP_FULL);
}

// The call's values for this return, removed from the map; 0 when the call was not seen.
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

// --- the detector ------------------------------------------------------------------------------------

static __always_inline struct sr_entry_state *entry_state(u64 entry)
{
    struct sr_entry_state *state = entry_states.lookup(&entry);
    if (state)
        return state;
    struct sr_entry_state zero = {};
    entry_states.update(&entry, &zero);
    state = entry_states.lookup(&entry);
    if (!state)
        count(STAT_STATE_MAP_FULL);
    return state;
}

static __always_inline void release_entry(u64 entry, u64 now)
{
    if (!entry)
        return;
    struct sr_entry_state *state = entry_state(entry);
    if (!state || state->released)
        return;
    count(STAT_RELEASES);
    state->release_seq++;
    state->released = 1;
    state->release_ts = now;
}

static __always_inline void bind_entry(u64 entry, u64 folio, u64 now)
{
    if (!entry)
        return;
    count(STAT_BINDINGS);
    if (folio && folio_entries.update(&folio, &entry) != 0)
        count(STAT_STATE_MAP_FULL);
    struct sr_entry_state *state = entry_state(entry);
    if (!state)
        return;
    state->bound_folio = folio;
    if (!state->released)
        return;
    // A binding after a release: the entry's next generation, i.e. a reuse.
    struct sr_reuse *slot = &state->reuses[state->generation & (REUSE_RING - 1)];
    slot->release_ts = state->release_ts;
    slot->release_seq = state->release_seq;
    slot->bind_ts = now;
    state->generation++;
    state->released = 0;
    count(STAT_REUSES);
}

// The entry a folio is bound to: its latest binding, provided that entry was not bound to another folio since.
static __always_inline u64 bound_entry(u64 folio)
{
    u64 *entry = folio_entries.lookup(&folio);
    if (!entry)
        return 0;
    u64 key = *entry;
    struct sr_entry_state *state = entry_states.lookup(&key);
    return state && state->bound_folio == folio ? key : 0;
}

// The first reuse of the window's entry whose release came after the thread's lookup: fills release/rebind.
static __always_inline int find_race(struct sr_window *window, u64 *release, u64 *rebind)
{
    struct sr_entry_state *state = entry_states.lookup(&window->entry);
    if (!state)
        return 0;
    int found = 0;
    u64 generation = state->generation;
#pragma unroll
    for (int back = REUSE_RING; back >= 1; back--) {
        // Oldest kept reuse first, so the first match is the first generation that ended after the lookup.
        if (!found && generation >= back) {
            struct sr_reuse *reuse = &state->reuses[(generation - back) & (REUSE_RING - 1)];
            if (reuse->release_seq > window->release_seq_at_lookup) {
                *release = reuse->release_ts;
                *rebind = reuse->bind_ts;
                found = 1;
            }
        }
    }
    return found;
}

static __always_inline void report_race(struct pt_regs *ctx, struct sr_window *window, u32 tid, u64 end,
                                        u64 release, u64 rebind, u32 klass)
{
    struct sr_race race = {};
    race.entry = window->entry;
    race.window_start = window->start;
    race.window_end = end;
    race.release = release;
    race.rebind = rebind;
    race.tid = tid;
    race.pid = bpf_get_current_pid_tgid() >> 32;
    race.klass = klass;
    count(klass ? STAT_RACES_STALE_INSTALL : STAT_RACES_RECOVERED);
    struct sr_race_key key = {.tid = tid, .window_start = window->start};
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

// --- probes -------------------------------------------------------------------------------------------
// Each role gets sr_call_<role> (kprobe) and, where R_RETURN is defined, sr_ret_<role> (kretprobe). A call
// event carries the role's key (and the entry where it is known: passed by value, or read from the folio);
// a return event carries only the return value, like the ftrace backend's return probes.

// The entry a call knows: the by-value argument, else the one the folio argument holds (0 when neither).
#define CALL_ENTRY(ctx, R) call_entry_##R(ctx)
#define CALL_FOLIO(ctx, R) call_folio_##R(ctx)
#define DEFINE_ARG_READERS(R)                                                          \
    static __always_inline u64 call_entry_##R(struct pt_regs *ctx)                    \
    {                                                                                  \
        if (R##_ENTRY_ARG_N >= 0)                                                      \
            return arg_n(ctx, R##_ENTRY_ARG_N);                                        \
        if (R##_FOLIO_ARG_N >= 0)                                                      \
            return entry_of_folio(arg_n(ctx, R##_FOLIO_ARG_N));                        \
        return 0;                                                                      \
    }                                                                                  \
    static __always_inline u64 call_folio_##R(struct pt_regs *ctx)                    \
    {                                                                                  \
        return R##_FOLIO_ARG_N >= 0 ? arg_n(ctx, R##_FOLIO_ARG_N) : 0;                 \
    }

// Argument n of a probed function, n known at compile time (the switch folds away).
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

static __always_inline u8 valid_bits(u64 entry, u64 folio)
{
    return (entry ? VALID_ENTRY : 0) | (folio ? VALID_FOLIO : 0);
}

#ifdef HAVE_FAULT
int sr_call_fault(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_FAULT * 2 + PHASE_CALL);
    u32 tid = current_tid();
    struct sr_window window = {.start = now};
    if (windows.update(&tid, &window) != 0)
        count(STAT_STATE_MAP_FULL);
    emit(ctx, now, ROLE_FAULT, PHASE_CALL, 0, 0, 0, 0);
    return 0;
}

int sr_ret_fault(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_FAULT * 2 + PHASE_RETURN);
    u32 tid = current_tid();
    emit(ctx, now, ROLE_FAULT, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    struct sr_window *window = windows.lookup(&tid);
    if (!window) {
        count(STAT_RETURNS_WITHOUT_CALL);
        return 0;
    }
    count(STAT_WINDOWS);
    if (window->has_entry) {
        count(STAT_WINDOWS_WITH_ENTRY);
        u64 release = 0, rebind = 0;
        if (window->race_reported) {
            // The stale-install was reported when it happened; the window's end is known only now.
            struct sr_race_key key = {.tid = tid, .window_start = window->start};
            struct sr_race *race = races.lookup(&key);
            if (race)
                race->window_end = now;
        } else if (!window->installed && find_race(window, &release, &rebind)) {
            report_race(ctx, window, tid, now, release, rebind, 0);
        }
    }
    windows.delete(&tid);
    return 0;
}
#endif

#ifdef HAVE_LOOKUP
int sr_call_lookup(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_LOOKUP * 2 + PHASE_CALL);
    u64 entry = arg_n(ctx, LOOKUP_KEY_ARG);
    u32 tid = current_tid();
    struct sr_window *window = windows.lookup(&tid);
    if (window && !window->has_entry) {
        // The window's entry is the entry of the thread's first lookup inside it.
        struct sr_entry_state *state = entry_state(entry);
        window->entry = entry;
        window->lookup_ts = now;
        window->release_seq_at_lookup = state ? state->release_seq : 0;
        window->has_entry = 1;
    }
    stash(ROLE_LOOKUP, entry, 0, VALID_ENTRY);
    emit(ctx, now, ROLE_LOOKUP, PHASE_CALL, entry, 0, 0, VALID_ENTRY);
    return 0;
}

int sr_ret_lookup(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_LOOKUP * 2 + PHASE_RETURN);
    u64 folio = PT_REGS_RC(ctx);
    struct sr_pending call = {};
    // NULL is a miss; an ERR_PTR is not a folio either.
    if (unstash(ROLE_LOOKUP, &call) && folio && folio < (u64)-4095) {
        count(STAT_LOOKUP_HITS);
        bind_entry(call.entry, folio, now);
    }
    emit(ctx, now, ROLE_LOOKUP, PHASE_RETURN, 0, 0, folio, VALID_RETVAL);
    return 0;
}
#endif

#ifdef HAVE_KSM_COPY
DEFINE_ARG_READERS(KSM_COPY)
int sr_call_ksm_copy(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_KSM_COPY * 2 + PHASE_CALL);
    u64 folio = arg_n(ctx, KSM_COPY_KEY_ARG);
    u64 entry = CALL_ENTRY(ctx, KSM_COPY);
    emit(ctx, now, ROLE_KSM_COPY, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_FOLIO);
    return 0;
}

int sr_ret_ksm_copy(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_KSM_COPY * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_KSM_COPY, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif

// A release of a folio is attributed to the entry the event carries (passed by the kernel, or held by the
// folio), else to the folio's binding.
static __always_inline u64 released_entry(u64 folio, u64 known_entry)
{
    return known_entry ? known_entry : bound_entry(folio);
}

#ifdef HAVE_FREE_CACHE
DEFINE_ARG_READERS(FREE_CACHE)
int sr_call_free_cache(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_FREE_CACHE * 2 + PHASE_CALL);
    u64 folio = arg_n(ctx, FREE_CACHE_KEY_ARG);
    // The entry the folio holds goes into the event (read at the call: a successful free clears it); the
    // release is attributed through the folio's binding, as the offline analysis does.
    u64 entry = CALL_ENTRY(ctx, FREE_CACHE);
    stash(ROLE_FREE_CACHE, bound_entry(folio), folio, VALID_FOLIO);
    emit(ctx, now, ROLE_FREE_CACHE, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_FOLIO);
    return 0;
}

int sr_ret_free_cache(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_FREE_CACHE * 2 + PHASE_RETURN);
    u64 ret = PT_REGS_RC(ctx);
#ifdef FREE_CACHE_RET_BOOL
    ret &= 0xff;  // a C bool return defines only %al
#endif
    struct sr_pending call = {};
    if (unstash(ROLE_FREE_CACHE, &call) && ret) {
        if (call.entry)
            release_entry(call.entry, now);
        else
            count(STAT_RELEASES_UNATTRIBUTED);
    }
    emit(ctx, now, ROLE_FREE_CACHE, PHASE_RETURN, 0, 0, ret, VALID_RETVAL);
    return 0;
}
#endif

#ifdef HAVE_SLOT_ALLOC
DEFINE_ARG_READERS(SLOT_ALLOC)
int sr_call_slot_alloc(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_SLOT_ALLOC * 2 + PHASE_CALL);
    u64 folio = arg_n(ctx, SLOT_ALLOC_KEY_ARG);
    u64 entry = CALL_ENTRY(ctx, SLOT_ALLOC);
    emit(ctx, now, ROLE_SLOT_ALLOC, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_FOLIO);
    return 0;
}

#ifdef SLOT_ALLOC_RETURN
int sr_ret_slot_alloc(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_SLOT_ALLOC * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_SLOT_ALLOC, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif
#endif

#ifdef HAVE_SLOT_FREE
DEFINE_ARG_READERS(SLOT_FREE)
int sr_call_slot_free(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_SLOT_FREE * 2 + PHASE_CALL);
    u64 entry = arg_n(ctx, SLOT_FREE_KEY_ARG);
    u64 folio = CALL_FOLIO(ctx, SLOT_FREE);
    release_entry(entry, now);
    emit(ctx, now, ROLE_SLOT_FREE, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_ENTRY);
    return 0;
}

#ifdef SLOT_FREE_RETURN
int sr_ret_slot_free(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_SLOT_FREE * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_SLOT_FREE, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif
#endif

#ifdef HAVE_SWAP_PUT
DEFINE_ARG_READERS(SWAP_PUT)
int sr_call_swap_put(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_SWAP_PUT * 2 + PHASE_CALL);
    // Where only a folio is passed (folio_put_swap) the entry is the one the folio holds.
    u64 entry = CALL_ENTRY(ctx, SWAP_PUT);
    u64 folio = CALL_FOLIO(ctx, SWAP_PUT);
    // The faulting thread dropping its count on its window's entry after a reuse: the ABA completed.
    u32 tid = current_tid();
    struct sr_window *window = windows.lookup(&tid);
    if (window && window->has_entry && !window->race_reported && !window->installed && entry == window->entry) {
        u64 release = 0, rebind = 0;
        struct sr_entry_state *state = entry_states.lookup(&entry);
        if (state && state->release_seq == window->release_seq_at_lookup) {
            // Installed on the live entry: what happens to it afterwards (do_swap_page's own
            // folio_free_swap under vm_swap_full(), then a reuse) is not a race (the offline rule too).
            window->installed = 1;
        } else if (find_race(window, &release, &rebind)) {
            window->race_reported = 1;
            report_race(ctx, window, tid, 0, release, rebind, 1);
        }
    }
    emit(ctx, now, ROLE_SWAP_PUT, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio));
    return 0;
}

#ifdef SWAP_PUT_RETURN
int sr_ret_swap_put(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_SWAP_PUT * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_SWAP_PUT, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif
#endif

#ifdef HAVE_CACHE_ADD
DEFINE_ARG_READERS(CACHE_ADD)
int sr_call_cache_add(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_CACHE_ADD * 2 + PHASE_CALL);
    u64 folio = arg_n(ctx, CACHE_ADD_KEY_ARG);
    u64 entry = 0;
    if (CACHE_ADD_ENTRY_ARG_N >= 0) {
        // The kernel names the entry: the folio is bound to it from here on.
        entry = arg_n(ctx, CACHE_ADD_ENTRY_ARG_N);
        bind_entry(entry, folio, now);
    }
#ifdef CACHE_ADD_RETURN
    stash(ROLE_CACHE_ADD, entry, folio, VALID_FOLIO);
#endif
    emit(ctx, now, ROLE_CACHE_ADD, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_FOLIO);
    return 0;
}

#ifdef CACHE_ADD_RETURN
int sr_ret_cache_add(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_CACHE_ADD * 2 + PHASE_RETURN);
    u64 ret = PT_REGS_RC(ctx);
    struct sr_pending call = {};
    // No entry argument: the folio holds its entry once the add succeeded (int 0).
    if (unstash(ROLE_CACHE_ADD, &call) && !call.entry && (u32)ret == 0)
        bind_entry(entry_of_folio(call.folio), call.folio, now);
    emit(ctx, now, ROLE_CACHE_ADD, PHASE_RETURN, 0, 0, ret, VALID_RETVAL);
    return 0;
}
#endif
#endif

#ifdef HAVE_CACHE_DELETE
DEFINE_ARG_READERS(CACHE_DELETE)
int sr_call_cache_delete(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_CACHE_DELETE * 2 + PHASE_CALL);
    u64 folio = arg_n(ctx, CACHE_DELETE_KEY_ARG);
    u64 entry = CALL_ENTRY(ctx, CACHE_DELETE);
    u64 released = released_entry(folio, entry);
    if (released)
        release_entry(released, now);
    else
        count(STAT_RELEASES_UNATTRIBUTED);
    emit(ctx, now, ROLE_CACHE_DELETE, PHASE_CALL, entry, folio, 0, valid_bits(entry, folio) | VALID_FOLIO);
    return 0;
}

#ifdef CACHE_DELETE_RETURN
int sr_ret_cache_delete(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    count(STAT_HITS + ROLE_CACHE_DELETE * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_CACHE_DELETE, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif
#endif

#ifdef HAVE_PREPARE
int sr_call_prepare(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_PREPARE * 2 + PHASE_CALL);
    u64 entry = arg_n(ctx, PREPARE_KEY_ARG);
    emit(ctx, now, ROLE_PREPARE, PHASE_CALL, entry, 0, 0, VALID_ENTRY);
    return 0;
}

#ifdef PREPARE_RETURN
int sr_ret_prepare(struct pt_regs *ctx)
{
    u64 now = bpf_ktime_get_ns();
    if (filtered_out())
        return 0;
    count(STAT_HITS + ROLE_PREPARE * 2 + PHASE_RETURN);
    emit(ctx, now, ROLE_PREPARE, PHASE_RETURN, 0, 0, PT_REGS_RC(ctx), VALID_RETVAL);
    return 0;
}
#endif
#endif
