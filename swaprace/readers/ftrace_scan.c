/* One pass over a block of ftrace text: the raw fields of every kprobe event line, for
 * swaprace/readers/ftrace_scan.py (loaded with ctypes, which releases the GIL, so read_any's threads scan
 * blocks in parallel).
 *
 * Why C: the numpy path in ftrace_text.py locates every field with searchsorted and fixed-width windows, a
 * dozen passes over per-line arrays; one byte loop here does the same in a fraction of the time. This file
 * only splits fields. It knows no kernel functions, roles, entries or metadata: that all stays in Python.
 *
 * Every rule below transliterates the numpy path (same function names: _digits_back, _skip_spaces_back,
 * _skip_spaces_fwd, _number_fwd, _arg_codes, _named_args), including its window widths, so both give the
 * same fields for any input. Where the numpy path truncates a number to its window (seconds of more than 12
 * digits, a tgid of more than 8), the line is not guessed at: the scan returns SR_DEFER and the caller parses
 * the whole block with numpy.
 *
 * The input is untrusted: every read is checked against [0, n) (at(): outside, a newline, like the numpy
 * path's padding) and every write against the caller's capacities.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SR_NAMES 14 /* ARG_NAMES in ftrace_text.py, in this order (checked at load) */
#define SR_MAX_ARGS 12
#define SR_FULL (-1)  /* an output array is too small */
#define SR_DEFER (-2) /* a line the numpy path reads with a truncated number: parse the block there */

/* Columns of the int64 row matrix. */
enum { I_LS, I_LE, I_COMM0, I_COMM1, I_SYM0, I_SYM1, I_CPU, I_TID, I_TGID, I_FLAGS, I_FIRST_CODE, I_NAMED,
       I_COMM_CODE, I_SYM_CODE, NI };
/* Columns of the uint64 row matrix: timestamp, first argument's value, then one per name. */
enum { U_TS, U_FIRST, U_NAMED0, NU = U_NAMED0 + SR_NAMES };
enum { F_TGID_KNOWN = 1, F_RET = 2, F_TS_BAD = 4, F_FIRST_OK = 8 };

static const char *const names[SR_NAMES] = {"entry", "folio", "ret", "nr", "page", "psz", "fhead", "forder",
                                            "si_type", "cinfo", "ci", "ci_off", "ci_size", "ci_slots"};

/* Distinct task names and symbols are numbered as they first appear (as a dictionary encoding would): open
 * addressing over TCAP slots, at most DMAX values a block (more: that column is not numbered, see counts). */
#define TCAP 16384
#define DMAX 8192

static const int64_t name_len[SR_NAMES] = {5, 5, 3, 2, 4, 3, 5, 6, 7, 5, 2, 6, 7, 8};

static const uint64_t MAX_SEC = 9223372035ULL; /* (2**63 - 1) // 10**9 - 1 */

typedef struct {
    const uint8_t *b;
    int64_t n;
} text;

static inline int at(const text *t, int64_t i) { return i >= 0 && i < t->n ? t->b[i] : '\n'; }
static inline int is_digit(int c) { return c >= '0' && c <= '9'; }

static inline int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decimal digits ending at end - 1, at most cap of them: how many, and their value (_digits_back).
 * *longer is set when the run goes on beyond cap digits. */
static int64_t digits_back(const text *t, int64_t end, int cap, uint64_t *value, int *longer) {
    int64_t k = 0;
    while (k < cap && is_digit(at(t, end - 1 - k))) k++;
    uint64_t v = 0;
    for (int64_t i = end - k; i < end; i++) v = v * 10 + (uint64_t)(at(t, i) - '0');
    *value = v;
    if (longer) *longer = k == cap && is_digit(at(t, end - 1 - k));
    return k;
}

/* Just after the last non-space before end, at most 16 spaces back, not below floor (_skip_spaces_back). */
static int64_t spaces_back(const text *t, int64_t end, int64_t floor) {
    int64_t k = 0;
    while (k < 16 && at(t, end - 1 - k) == ' ') k++;
    return end - k > floor ? end - k : floor;
}

/* First non-space at or after start, at most 32 spaces on, not beyond limit (_skip_spaces_fwd). */
static int64_t spaces_fwd(const text *t, int64_t start, int64_t limit) {
    int64_t k = 0;
    while (k < 32 && at(t, start + k) == ' ') k++;
    return start + k < limit ? start + k : limit;
}

static int64_t last_before(const text *t, int c, int64_t before, int64_t floor) {
    for (int64_t i = before - 1; i >= floor; i--)
        if (t->b[i] == c) return i;
    return -1;
}

static int64_t first_after(const text *t, int c, int64_t after, int64_t limit) {
    if (after + 1 >= limit) return -1;
    const uint8_t *p = memchr(t->b + after + 1, c, (size_t)(limit - after - 1));
    return p ? p - t->b : -1;
}

/* "0x..." (1 to 16 hex digits) or a decimal of 1 to 20 digits, optionally negative (_number_fwd). The value
 * is the numpy path's even where the number is not valid (*ok = 0). */
static uint64_t number_fwd(const text *t, int64_t s, int *ok) {
    uint64_t v = 0;
    if (at(t, s) == '0' && (at(t, s + 1) == 'x' || at(t, s + 1) == 'X')) {
        int k = 0;
        while (k < 17 && hexval(at(t, s + 2 + k)) >= 0) k++;
        for (int i = 0; i < k && i < 16; i++) v = (v << 4) | (uint64_t)hexval(at(t, s + 2 + i));
        *ok = k > 0 && k <= 16;
        return v;
    }
    int neg = at(t, s) == '-';
    int run = neg;
    while (run < 21 && is_digit(at(t, s + run))) run++;
    for (int i = neg; i < run; i++) v = v * 10 + (uint64_t)(at(t, s + i) - '0');
    *ok = run - neg > 0 && run - neg <= 20;
    return neg ? ~v + 1 : v;
}

/* Index in names of the argument name that ends right before eq, after a space; -1 for none (_arg_codes).
 * A name has no space, so the only candidate is the run after the nearest space within 9 bytes. */
static int arg_code(const text *t, int64_t eq) {
    int64_t len = 1;
    while (len <= 8 && at(t, eq - len - 1) != ' ') len++;
    if (len > 8 || eq - len - 1 < 0) return -1;
    for (int c = 0; c < SR_NAMES; c++)
        if (name_len[c] == len && memcmp(t->b + eq - len, names[c], (size_t)len) == 0) return c;
    return -1;
}

/* Up to SR_MAX_ARGS "name=value" after the location (_named_args): the first one's value, validity and name,
 * and the first valid value of each known name. */
static void scan_args(const text *t, int64_t rpar, int64_t le, int64_t *irow, uint64_t *urow) {
    int64_t eq = rpar, found = 0;
    irow[I_FIRST_CODE] = -1;
    for (int k = 0; k < SR_MAX_ARGS; k++) {
        eq = first_after(t, '=', eq, le);
        if (eq < 0) break;
        int ok;
        uint64_t value = number_fwd(t, eq + 1, &ok);
        int code = arg_code(t, eq);
        if (k == 0) {
            urow[U_FIRST] = value;
            irow[I_FIRST_CODE] = code;
            irow[I_FLAGS] |= ok ? F_FIRST_OK : 0;
        }
        if (ok && code >= 0 && !(found & (1LL << code))) {
            found |= 1LL << code;
            urow[U_NAMED0 + code] = value;
        }
    }
    irow[I_NAMED] = found;
}

/* "<sec>.<frac>" (or a bare counter) right before the colon at tc. 0: not a timestamp; SR_DEFER. */
static int scan_ts(const text *t, int64_t tc, int64_t *ts_start, int64_t *irow, uint64_t *urow) {
    uint64_t frac, sec;
    int64_t nfrac = digits_back(t, tc, 12, &frac, NULL);
    if (nfrac == 0 || nfrac > 9) return 0;
    int64_t dot = tc - nfrac - 1;
    if (at(t, dot) == '.') {
        int longer;
        int64_t nsec = digits_back(t, dot, 12, &sec, &longer);
        if (nsec == 0) return 0;
        if (longer) return SR_DEFER;
        static const uint64_t pow10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
                                           1000000000};
        urow[U_TS] = sec * 1000000000ULL + frac * pow10[9 - nfrac];
        *ts_start = dot - nsec;
        irow[I_FLAGS] |= sec > MAX_SEC ? F_TS_BAD : 0;
    } else {
        urow[U_TS] = frac;
        *ts_start = tc - nfrac;
    }
    irow[I_FLAGS] |= at(t, *ts_start - 1) == '-' ? F_TS_BAD : 0;
    return 1;
}

/* "<comm>-<pid> [(<tgid>)] [<cpu>]" read from the right, before ts_start. 0: not an event line; SR_DEFER. */
static int scan_header(const text *t, int64_t ls, int64_t ts_start, int64_t *irow) {
    uint64_t v;
    int64_t rb = last_before(t, ']', ts_start, ls);
    if (rb < 0) return 0;
    int64_t ncpu = digits_back(t, rb, 6, &v, NULL);
    int64_t lb = rb - ncpu - 1;
    if (ncpu == 0 || lb < ls || at(t, lb) != '[') return 0; /* "[" must be the last one before "]" */
    irow[I_CPU] = (int64_t)v;
    int64_t before_cpu = spaces_back(t, lb, ls);
    int64_t pid_end = before_cpu;
    if (at(t, before_cpu - 1) == ')') {
        int64_t lp = last_before(t, '(', before_cpu - 1, ls);
        if (lp < 0) return 0;
        int64_t tgid_end = spaces_back(t, before_cpu - 1, ls);
        int longer;
        int64_t ntgid = digits_back(t, tgid_end, 8, &v, &longer);
        if (longer) return SR_DEFER;
        if (ntgid > 0 && tgid_end - ntgid - 1 >= lp) {
            irow[I_FLAGS] |= F_TGID_KNOWN;
            irow[I_TGID] = (int64_t)v;
        }
        pid_end = spaces_back(t, lp, ls);
    }
    int64_t ntid = digits_back(t, pid_end, 8, &v, NULL);
    int64_t dash = pid_end - ntid - 1;
    if (ntid == 0 || dash < ls || at(t, dash) != '-') return 0;
    irow[I_TID] = (int64_t)v;
    irow[I_COMM0] = spaces_fwd(t, ls, dash);
    irow[I_COMM1] = dash;
    return 1;
}

/* "(sym+0x0/0x9f0)" or "(caller+0x86b/0xfa0 <- sym)" from lpar. Returns the ")" or -1. */
static int64_t scan_location(const text *t, int64_t lpar, int64_t le, int64_t *irow) {
    int64_t rpar = first_after(t, ')', lpar, le);
    if (rpar < 0) return -1;
    int64_t lt = first_after(t, '<', lpar, rpar);
    int64_t sym0, sym1 = rpar;
    if (lt >= 0 && at(t, lt + 1) == '-') {
        irow[I_FLAGS] |= F_RET;
        sym0 = spaces_fwd(t, lt + 2, rpar);
    } else {
        int64_t plus = first_after(t, '+', lpar, rpar);
        sym0 = lpar + 1;
        if (plus >= 0) sym1 = plus;
    }
    if (sym1 <= sym0) return -1;
    irow[I_SYM0] = sym0;
    irow[I_SYM1] = sym1;
    return rpar;
}

/* One line [ls, le): 1 when it is an event line (its row filled), 0 when not, SR_DEFER. */
static int scan_line(const text *t, int64_t ls, int64_t le, int64_t *irow, uint64_t *urow) {
    if (at(t, ls) == '#') return 0;
    int64_t lc = ls;
    for (;;) { /* the first ": (" after the line's first byte */
        lc = first_after(t, ':', lc, le);
        if (lc < 0) return 0;
        if (at(t, lc + 1) == ' ' && at(t, lc + 2) == '(') break;
    }
    int64_t tc = last_before(t, ':', lc, ls);
    if (tc < 0) return 0;
    /* no memset of the row (for a row this small, its start-up cost was a fifth of the scan): the fields not
     * always written are set here, and named values are stored only where found (sr_ftrace_scan) */
    irow[I_FLAGS] = irow[I_TGID] = 0;
    urow[U_FIRST] = 0;
    irow[I_LS] = ls;
    irow[I_LE] = le;
    int64_t ts_start;
    int r = scan_ts(t, tc, &ts_start, irow, urow);
    if (r != 1) return r;
    r = scan_header(t, ls, ts_start, irow);
    if (r != 1) return r;
    int64_t rpar = scan_location(t, lc + 2, le, irow);
    if (rpar < 0) return 0;
    scan_args(t, rpar, le, irow, urow);
    return 1;
}

typedef struct {
    int64_t *table;  /* TCAP slots: code + 1, 0 = free */
    int64_t *first;  /* DMAX: the row where each code first appears */
    int64_t size;    /* codes given; -1 once more than DMAX were needed */
} dict;

/* The code of the span [c0[r], c1[r]) (numbering it if new). */
static int64_t intern(dict *d, const text *t, const int64_t *c0, const int64_t *c1, int64_t r) {
    if (d->size < 0) return -1;
    int64_t s = c0[r], len = c1[r] - s;
    uint64_t h = (uint64_t)len * 0x9E3779B97F4A7C15ULL, w; /* 8 bytes a step; the bytes are compared below */
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, t->b + s + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 29;
    }
    for (; i < len; i++) h = (h ^ t->b[s + i]) * 0x100000001B3ULL;
    h ^= h >> 32;
    for (uint64_t slot = h & (TCAP - 1);; slot = (slot + 1) & (TCAP - 1)) {
        int64_t code = d->table[slot] - 1;
        if (code < 0) {
            if (d->size >= DMAX) return d->size = -1;
            d->table[slot] = d->size + 1;
            d->first[d->size] = r;
            return d->size++;
        }
        int64_t o = d->first[code];
        if (c1[o] - c0[o] == len && memcmp(t->b + c0[o], t->b + s, (size_t)len) == 0) return code;
    }
}

/* Scan buf[0:n) (whole lines): one row of irows (NI int64 columns) and urows (NU uint64 columns) per event
 * line, in line order; column c of row r at [c * max_rows + r] (each column contiguous for numpy),
 * with task name and symbol codes; the start and end of every line that begins with "#" or "C" (comments, loss
 * reports) in side[2*i], side[2*i+1] (a final "\r" excluded); intern: the two dictionaries' tables and first
 * rows (2*TCAP + 2*DMAX int64, zeroed). counts: side lines, rows, non-blank lines, task names, symbols (-1:
 * more than DMAX). Returns 0, SR_FULL or SR_DEFER. Reads past either end of buf see newlines (the numpy
 * path's padding). */
int64_t sr_ftrace_scan(const uint8_t *buf, int64_t n, int64_t *side, int64_t max_side, int64_t *irows,
                       uint64_t *urows, int64_t max_rows, int64_t *intern_mem, int64_t *counts) {
    text t = {buf, n};
    dict comms = {intern_mem, intern_mem + 2 * TCAP, 0}, syms = {intern_mem + TCAP, intern_mem + 2 * TCAP + DMAX, 0};
    int64_t ns = 0, nr = 0, nonblank = 0, ls = 0;
    while (ls < n) {
        const uint8_t *p = memchr(buf + ls, '\n', (size_t)(n - ls));
        int64_t nlpos = p ? p - buf : n;
        int64_t le = nlpos > ls && buf[nlpos - 1] == '\r' ? nlpos - 1 : nlpos;
        if (le > ls) {
            nonblank++;
            if (buf[ls] == '#' || buf[ls] == 'C') {
                if (ns >= max_side) return SR_FULL;
                side[2 * ns] = ls;
                side[2 * ns + 1] = le;
                ns++;
            }
            if (nr >= max_rows) return SR_FULL;
            int64_t irow[NI];
            uint64_t urow[NU];
            int r = scan_line(&t, ls, le, irow, urow);
            if (r == SR_DEFER) return SR_DEFER;
            if (r == 1) {
                for (int c = 0; c < I_COMM_CODE; c++) irows[c * max_rows + nr] = irow[c];
                for (int c = 0; c < U_NAMED0; c++) urows[c * max_rows + nr] = urow[c];
                for (int c = 0; c < SR_NAMES; c++)
                    urows[(U_NAMED0 + c) * max_rows + nr] = irow[I_NAMED] >> c & 1 ? urow[U_NAMED0 + c] : 0;
                irows[I_COMM_CODE * max_rows + nr] =
                    intern(&comms, &t, irows + I_COMM0 * max_rows, irows + I_COMM1 * max_rows, nr);
                irows[I_SYM_CODE * max_rows + nr] =
                    intern(&syms, &t, irows + I_SYM0 * max_rows, irows + I_SYM1 * max_rows, nr);
                nr++;
            }
        }
        ls = nlpos + 1;
    }
    counts[0] = ns;
    counts[1] = nr;
    counts[2] = nonblank;
    counts[3] = comms.size;
    counts[4] = syms.size;
    return 0;
}

/* The layout, for the loader's check: columns of both row matrices and the argument names. */
void sr_ftrace_layout(int64_t *out, char *names_out, int64_t size) {
    int lengths_ok = 1;
    for (int c = 0; c < SR_NAMES; c++) lengths_ok &= (int64_t)strlen(names[c]) == name_len[c];
    out[0] = lengths_ok ? NI : -1;
    out[1] = NU;
    out[2] = SR_MAX_ARGS;
    out[3] = TCAP;
    out[4] = DMAX;
    int64_t used = 0;
    for (int c = 0; c < SR_NAMES; c++) {
        int64_t len = (int64_t)strlen(names[c]);
        if (used + len + 2 > size) break;
        memcpy(names_out + used, names[c], (size_t)len);
        used += len;
        names_out[used++] = c + 1 < SR_NAMES ? ',' : '\0';
    }
    if (used < size) names_out[used] = '\0';
}
