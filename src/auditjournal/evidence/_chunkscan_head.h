/* A record line's head, read by a strict JSON scan: the part of _chunkscan_accel.c that
   stands in for chunkscan's msgspec decode of _RecordHead (included by it once; a header
   only to keep each file short). */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* -- a record line's head: what the Python loop decodes with msgspec ---------------------

   head() reads one record (a line without its leading ',' and newline) as JSON and takes
   from its top-level object what chunkscan's _RecordHead decode takes: record_type,
   run_id, seq, outcome, status. It judges only a strict subset of what msgspec accepts
   and answers 0 for anything else (the caller's block then goes to the Python loop,
   which decodes it with msgspec and words any problem): no whitespace outside strings;
   strings of valid UTF-8 without control characters, whose escapes are the JSON ones
   (a \u escape of a surrogate half: 0); numbers of the JSON grammar up to MAX_NUMBER
   characters; nesting up to MAX_DEPTH; exactly one object, closing at the line's last
   byte. The head members must be spelt without an escape (so are all top-level member
   names: an escaped one might spell a head member), each at most once, with the types
   _RecordHead declares: record_type one of the known types, run_id this run's, seq a
   plain non-negative integer up to 18 digits, outcome and status a string or null, their
   values without escapes (so their bytes are their text). Within that subset msgspec
   accepts the line and decodes the same values (tests/property/test_readpath_identity.py
   holds the two to each other). */

#define MAX_DEPTH 64
#define MAX_NUMBER 64
#define MAX_SEQ_DIGITS 18

#define HEAD_TYPE 1
#define HEAD_RUN 2
#define HEAD_SEQ 4
#define HEAD_OUTCOME 8
#define HEAD_STATUS 16

typedef struct {
    const unsigned char *run_id; /* this run's id, UTF-8 */
    Py_ssize_t run_id_len;
    const char *const *types; /* the known record types, UTF-8 (ASCII) */
    const Py_ssize_t *type_lens;
    int type_count;
    int outcome_type, state_type; /* indexes of token_outcome and node_state (-1: none) */
} Known;

typedef struct {
    int type;              /* index into Known.types */
    long long seq;
    Py_ssize_t outcome_at; /* offset of the outcome's text in the record, -1: null/absent */
    Py_ssize_t outcome_len;
    int open;              /* status is "open" */
} Head;

#if !defined(__SSE2__)
/* 8 bytes at a time: a flag in the high bit of each byte that is '"', '\\', a control
   character or not ASCII (the lowest flagged byte is a true one: a borrow only runs
   upwards) */
static inline uint64_t
string_stops(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & highs;
}
#endif

static int
hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        }
        else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        }
        else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        }
        else {
            return 0;
        }
    }
    *out = v;
    return 1;
}

/* The length of a valid UTF-8 sequence of 2..4 bytes at p[0:avail], 0 if it is not one
   (overlong forms, surrogates and code points past U+10FFFF are not). */
static Py_ssize_t
utf8_sequence(const unsigned char *p, Py_ssize_t avail)
{
    unsigned char c = p[0];
    Py_ssize_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        }
        else if (c == 0xED) {
            hi = 0x9F;
        }
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) {
            lo = 0x90;
        }
        else if (c == 0xF4) {
            hi = 0x8F;
        }
    }
    else {
        return 0;
    }
    if (avail < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (Py_ssize_t k = 2; k < len; k++) {
        if (p[k] < 0x80 || p[k] > 0xBF) {
            return 0;
        }
    }
    return len;
}

/* The string at p[*i] (its opening quote): *i moves past its closing quote; *escaped
   tells whether it holds an escape. 0 if it is not one this scan judges. */
static int
skip_string(const unsigned char *p, Py_ssize_t n, Py_ssize_t *i, int *escaped)
{
    Py_ssize_t at = *i + 1;
    *escaped = 0;
    for (;;) {
#if defined(__SSE2__)
        /* 16 bytes at a time: '"', '\\', and (as signed bytes) below 0x20, which takes
           the control characters and every byte past ASCII */
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                      space = _mm_set1_epi8(0x20);
        while (at + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + at));
            int hit = _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmplt_epi8(v, space)));
            if (hit) {
                at += __builtin_ctz((unsigned)hit);
                break;
            }
            at += 16;
        }
#else
        while (at + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + at, 8);
            uint64_t hit = string_stops(w);
            if (hit) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                at += __builtin_ctzll(hit) >> 3;
#endif
                break;
            }
            at += 8;
        }
#endif
        if (at >= n) {
            return 0;
        }
        unsigned char c = p[at];
        if (c == '"') {
            *i = at + 1;
            return 1;
        }
        if (c == '\\') {
            if (at + 1 >= n) {
                return 0;
            }
            *escaped = 1;
            switch (p[at + 1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                at += 2;
                break;
            case 'u': {
                unsigned v;
                if (at + 6 > n || !hex4(p + at + 2, &v) || (v >= 0xD800 && v <= 0xDFFF)) {
                    return 0;
                }
                at += 6;
                break;
            }
            default:
                return 0;
            }
        }
        else if (c < 0x20) {
            return 0;
        }
        else if (c >= 0x80) {
            Py_ssize_t len = utf8_sequence(p + at, n - at);
            if (!len) {
                return 0;
            }
            at += len;
        }
        else {
            at++; /* only reached without the word loop (big-endian or the last bytes) */
        }
    }
}

static int
skip_number(const unsigned char *p, Py_ssize_t n, Py_ssize_t *i)
{
    Py_ssize_t at = *i, start = at;
#define DIGIT(k) ((k) < n && p[k] >= '0' && p[k] <= '9')
    if (at < n && p[at] == '-') {
        at++;
    }
    if (!DIGIT(at)) {
        return 0;
    }
    if (p[at] == '0') {
        at++;
    }
    else {
        while (DIGIT(at)) {
            at++;
        }
    }
    if (at < n && p[at] == '.') {
        at++;
        if (!DIGIT(at)) {
            return 0;
        }
        while (DIGIT(at)) {
            at++;
        }
    }
    if (at < n && (p[at] == 'e' || p[at] == 'E')) {
        at++;
        if (at < n && (p[at] == '+' || p[at] == '-')) {
            at++;
        }
        if (!DIGIT(at)) {
            return 0;
        }
        while (DIGIT(at)) {
            at++;
        }
    }
#undef DIGIT
    if (at - start > MAX_NUMBER) {
        return 0;
    }
    *i = at;
    return 1;
}

/* Any JSON value at p[*i]; *i moves past it. 0 if it is not one this scan judges. */
static int
skip_value(const unsigned char *p, Py_ssize_t n, Py_ssize_t *i, int depth)
{
    Py_ssize_t at = *i;
    int escaped;
    if (at >= n) {
        return 0;
    }
    switch (p[at]) {
    case '"':
        return skip_string(p, n, i, &escaped);
    case '{':
    case '[': {
        unsigned char close = p[at] == '{' ? '}' : ']';
        if (depth >= MAX_DEPTH) {
            return 0;
        }
        at++;
        if (at < n && p[at] == close) {
            *i = at + 1;
            return 1;
        }
        for (;;) {
            if (close == '}') {
                if (at >= n || p[at] != '"' || !skip_string(p, n, &at, &escaped)) {
                    return 0;
                }
                if (at >= n || p[at] != ':') {
                    return 0;
                }
                at++;
            }
            if (!skip_value(p, n, &at, depth + 1) || at >= n) {
                return 0;
            }
            if (p[at] == close) {
                *i = at + 1;
                return 1;
            }
            if (p[at] != ',') {
                return 0;
            }
            at++;
        }
    }
    case 't':
        if (n - at >= 4 && memcmp(p + at, "true", 4) == 0) {
            *i = at + 4;
            return 1;
        }
        return 0;
    case 'f':
        if (n - at >= 5 && memcmp(p + at, "false", 5) == 0) {
            *i = at + 5;
            return 1;
        }
        return 0;
    case 'n':
        if (n - at >= 4 && memcmp(p + at, "null", 4) == 0) {
            *i = at + 4;
            return 1;
        }
        return 0;
    default:
        return skip_number(p, n, i);
    }
}

/* A head member's string value without escapes (or null, where allowed): its text at
   p[*start:*start + *len] (*start -1 for null). */
static int
head_string(const unsigned char *p, Py_ssize_t n, Py_ssize_t *i, int nullable,
            Py_ssize_t *start, Py_ssize_t *len)
{
    Py_ssize_t at = *i;
    int escaped;
    if (nullable && n - at >= 4 && memcmp(p + at, "null", 4) == 0) {
        *i = at + 4;
        *start = -1;
        *len = 0;
        return 1;
    }
    if (at >= n || p[at] != '"' || !skip_string(p, n, i, &escaped) || escaped) {
        return 0;
    }
    *start = at + 1;
    *len = *i - at - 2;
    return 1;
}

#define NAME_IS(s) (len == (Py_ssize_t)sizeof(s) - 1 && memcmp(name, s, sizeof(s) - 1) == 0)

/* The record at the start of p[0:n] (see above): its length (its object's closing '}'
   included) and its head in *h, or 0. */
static Py_ssize_t
head(const unsigned char *p, Py_ssize_t n, const Known *known, Head *h)
{
    Py_ssize_t at = 1, start, len;
    int seen = 0, escaped;
    if (n < 2 || p[0] != '{' || p[1] == '}') {
        return 0; /* (an empty object has no head) */
    }
    h->outcome_at = -1;
    h->outcome_len = 0;
    h->open = 0;
    for (;;) {
        if (at >= n || p[at] != '"') {
            return 0;
        }
        Py_ssize_t name_at = at + 1;
        if (!skip_string(p, n, &at, &escaped) || escaped || at >= n || p[at] != ':') {
            return 0;
        }
        const unsigned char *name = p + name_at;
        len = at - 1 - name_at;
        at++;
        int member = 0;
        if (NAME_IS("record_type")) {
            member = HEAD_TYPE;
            if (!head_string(p, n, &at, 0, &start, &len)) {
                return 0;
            }
            h->type = -1;
            for (int k = 0; k < known->type_count; k++) {
                if (known->type_lens[k] == len && memcmp(known->types[k], p + start, (size_t)len) == 0) {
                    h->type = k;
                    break;
                }
            }
            if (h->type < 0) {
                return 0;
            }
        }
        else if (NAME_IS("run_id")) {
            member = HEAD_RUN;
            if (!head_string(p, n, &at, 0, &start, &len) || len != known->run_id_len
                || memcmp(p + start, known->run_id, (size_t)len) != 0) {
                return 0;
            }
        }
        else if (NAME_IS("seq")) {
            member = HEAD_SEQ;
            long long seq = 0;
            Py_ssize_t digits = 0;
            while (at + digits < n && p[at + digits] >= '0' && p[at + digits] <= '9') {
                if (digits == MAX_SEQ_DIGITS) {
                    return 0; /* (before seq could overflow) */
                }
                seq = 10 * seq + (p[at + digits] - '0');
                digits++;
            }
            if (digits == 0 || (digits > 1 && p[at] == '0')) {
                return 0;
            }
            at += digits; /* a '.' or 'e' next: not a plain integer, refused below */
            h->seq = seq;
        }
        else if (NAME_IS("outcome")) {
            member = HEAD_OUTCOME;
            if (!head_string(p, n, &at, 1, &h->outcome_at, &h->outcome_len)) {
                return 0;
            }
        }
        else if (NAME_IS("status")) {
            member = HEAD_STATUS;
            if (!head_string(p, n, &at, 1, &start, &len)) {
                return 0;
            }
            h->open = start >= 0 && len == 4 && memcmp(p + start, "open", 4) == 0;
        }
        else if (!skip_value(p, n, &at, 1)) {
            return 0;
        }
        if (seen & member) {
            return 0; /* named twice: msgspec takes the last, this scan judges neither */
        }
        seen |= member;
        if (at >= n) {
            return 0;
        }
        if (p[at] == '}') {
            break;
        }
        if (p[at] != ',') {
            return 0;
        }
        at++;
    }
    if ((seen & (HEAD_TYPE | HEAD_RUN | HEAD_SEQ)) != (HEAD_TYPE | HEAD_RUN | HEAD_SEQ)) {
        return 0; /* a required member missing */
    }
    return at + 1;
}

#undef NAME_IS
