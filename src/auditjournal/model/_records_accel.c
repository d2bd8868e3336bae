/* model/records.py's RecordMaker.extend compiled (optional build): the export records
   of the events every run has many of -- rows, tokens, node states (started and
   completed), routing events, calls, token outcomes -- written straight as their bytes,
   without a dict per record or msgspec's pass over it (the reference workload's 60,000
   events: ~2.3 us an event in Python without the payload reads, ~0.7 here).

   extend(events, seqs, records, handlers, hot, run_id, get, open_states, tally,
          json_bytes) -> int
   extend_lines(events, handlers, hot, run_id, get, open_states, tally, json_bytes[, seqs])
          -> (used, lines, lengths, seqs, leaves): the same records as the chunk writer's
          lines ("," record newline each) with their Merkle leaf hashes (see Lines)

   ``hot``: the tuple (RowCreated, TokenCreated, NodeStateStarted, NodeStateCompleted,
   RoutingEventRecorded, CallRecorded, TokenOutcomeRecorded, RunCompleted);
   ``handlers``: event type -> the Python handler (event -> [(seq, record bytes)]);
   ``get``: ref -> payload bytes (integrity-checked by the caller's store), or None, or
   (get, window_source): window_source() -> a payload store's window source or None
   (_payload_window.h), through which payloads are read here without calling get;
   ``open_states`` and ``tally``: the maker's (updated in place, as the handlers do);
   ``json_bytes``: value -> records._IN_ORDER.encode(records._json(value)), for the
   values written here only in their common shapes (nested JSON, awkward numbers).

   The bytes are those the Python handlers write (a property test compares them).
   Whatever is not in the shapes handled here -- a value of another type, a big int, a
   datetime not in UTC, a string with a lone surrogate, a state restored from a
   checkpoint with other keys -- is left to the event's Python handler (with no side
   effect done here first), which then writes it or raises as it always does. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co: no shared context (see Lines) */
#include <openssl/sha.h>

#include "../_payload_window.h"

#define MAX_SAFE_INTEGER 9007199254740991LL

enum { ROW, TOKEN, STARTED, COMPLETED, ROUTING, CALL, OUTCOME, RUN_COMPLETED, N_HOT };

/* a growable byte buffer (one per extend() call: handlers may run other threads); with
   ``bytes`` set, the buffer is that bytes object's (extend_lines returns it without a
   copy, resized to what was written) */
typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    PyObject *bytes;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    if (b->bytes != NULL) { /* (a failed resize frees it) */
        if (_PyBytes_Resize(&b->bytes, cap) < 0) {
            b->data = NULL;
            b->cap = b->len = 0;
            return -1;
        }
        b->data = PyBytes_AS_STRING(b->bytes);
        b->cap = cap;
        return 0;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
put(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#define PUTS(b, lit) put((b), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* Return codes of the value writers and record builders: OK written, BAIL not a
   shape handled here (nothing to undo but the buffer), ERR an exception is set. */
#define OK 1
#define BAIL 0
#define ERR (-1)

static const char HEX[] = "0123456789abcdef";

/* a str as msgspec writes it: UTF-8, '"' '\\' and control characters escaped
   (\b \t \n \f \r short, the rest as \u00xx) */
static int
w_str(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) { /* a lone surrogate: msgspec's error is the Python path's to raise */
        PyErr_Clear();
        return BAIL;
    }
    if (buf_reserve(b, n + 2) < 0) {
        return ERR;
    }
    b->data[b->len++] = '"';
    Py_ssize_t run = 0, i = 0;
    /* eight bytes at a time while none needs escaping (most strings: ids, hashes) */
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, u + i, 8);
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
        uint64_t hit = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                       ((backslash - ones) & ~backslash);
        if (hit & highs) {
            break;
        }
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        if (put(b, u + run, i - run) < 0) {
            return ERR;
        }
        run = i + 1;
        char esc[6] = {'\\', 0, '0', '0', 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            esc[1] = 'u';
            esc[4] = HEX[c >> 4];
            esc[5] = HEX[c & 15];
            len = 6;
        }
        if (put(b, esc, len) < 0) {
            return ERR;
        }
    }
    if (put(b, u + run, n - run) < 0 || PUTS(b, "\"") < 0) {
        return ERR;
    }
    return OK;
}

static int
w_ll(Buf *b, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--p = '-';
    }
    return put(b, p, end - p) < 0 ? ERR : OK;
}

static char *
digits(char *p, int v, int n) /* v, zero-padded to n digits (v < 10**n) */
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

static int
w_datetime(Buf *b, PyObject *dt)
{
    /* msgspec's text of a UTC datetime: what iso() gives too */
    if (!PyDateTime_CheckExact(dt) || PyDateTime_DATE_GET_TZINFO(dt) != PyDateTime_TimeZone_UTC) {
        return BAIL;
    }
    char tmp[40], *p = tmp;
    int us = PyDateTime_DATE_GET_MICROSECOND(dt);
    *p++ = '"';
    p = digits(p, PyDateTime_GET_YEAR(dt), 4); /* 1..9999 */
    *p++ = '-';
    p = digits(p, PyDateTime_GET_MONTH(dt), 2);
    *p++ = '-';
    p = digits(p, PyDateTime_GET_DAY(dt), 2);
    *p++ = 'T';
    p = digits(p, PyDateTime_DATE_GET_HOUR(dt), 2);
    *p++ = ':';
    p = digits(p, PyDateTime_DATE_GET_MINUTE(dt), 2);
    *p++ = ':';
    p = digits(p, PyDateTime_DATE_GET_SECOND(dt), 2);
    if (us) {
        *p++ = '.';
        p = digits(p, us, 6);
    }
    *p++ = 'Z';
    *p++ = '"';
    return put(b, tmp, p - tmp) < 0 ? ERR : OK;
}

/* a value msgspec writes as it is: None, str, bool, an int of 64 bits, a UTC datetime */
static int
w_plain(Buf *b, PyObject *v)
{
    if (v == Py_None) {
        return PUTS(b, "null") < 0 ? ERR : OK;
    }
    if (PyUnicode_CheckExact(v)) {
        return w_str(b, v);
    }
    if (v == Py_True) {
        return PUTS(b, "true") < 0 ? ERR : OK;
    }
    if (v == Py_False) {
        return PUTS(b, "false") < 0 ? ERR : OK;
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            return BAIL;
        }
        if (x == -1 && PyErr_Occurred()) {
            return ERR;
        }
        return w_ll(b, x);
    }
    return w_datetime(b, v);
}

/* records._json(v) as written: scalars msgspec writes canonically as they are, the
   rest through json_bytes (canonical JSON, the Python path's bytes) */
static int
w_json(Buf *b, PyObject *v, PyObject *json_bytes)
{
    if (v == Py_None || v == Py_True || v == Py_False || PyUnicode_CheckExact(v)) {
        return w_plain(b, v);
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) {
            return ERR;
        }
        if (!overflow && x >= -MAX_SAFE_INTEGER && x <= MAX_SAFE_INTEGER) {
            return w_ll(b, x);
        }
    }
    else if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        double a = fabs(x);
        if (a >= 1e-4 && a < 1e16 && floor(x) != x) {
            /* shortest round trip, no exponent in this range: ECMAScript's text too */
            char *text = PyOS_double_to_string(x, 'r', 0, 0, NULL);
            if (text == NULL) {
                return ERR;
            }
            int rc = put(b, text, (Py_ssize_t)strlen(text)) < 0 ? ERR : OK;
            PyMem_Free(text);
            return rc;
        }
    }
    PyObject *data = PyObject_CallOneArg(json_bytes, v);
    if (data == NULL) {
        return ERR;
    }
    int rc = BAIL;
    if (PyBytes_CheckExact(data)) {
        rc = put(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) < 0 ? ERR : OK;
    }
    Py_DECREF(data);
    return rc;
}

/* a tuple of str as a JSON array */
static int
w_strings(Buf *b, PyObject *t)
{
    if (!PyTuple_CheckExact(t)) {
        return BAIL;
    }
    if (PUTS(b, "[") < 0) {
        return ERR;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        PyObject *s = PyTuple_GET_ITEM(t, i);
        if (!PyUnicode_CheckExact(s)) {
            return BAIL;
        }
        if ((i && PUTS(b, ",") < 0)) {
            return ERR;
        }
        int rc = w_str(b, s);
        if (rc != OK) {
            return rc;
        }
    }
    return PUTS(b, "]") < 0 ? ERR : OK;
}

/* where payloads come from: get(ref), and the window source when there is one */
typedef struct {
    PyObject *get;          /* borrowed: ref -> bytes */
    PyObject *source_fn;    /* borrowed: () -> a window source or None; NULL: none */
    PyObject *source;       /* the window source taken last (NULL: take one) */
    payload_window_fn read; /* its read (NULL: it holds none, as None) */
} Payloads;

/* a payload inlined: get(ref)'s bytes as they are (Raw), or null without a ref; read
   through the window source when it has the payload, else from get() -- after which
   the next payload takes a new source, since get() moves the window */
static int
w_payload(Buf *b, Payloads *p, PyObject *ref)
{
    if (ref == Py_None) {
        return PUTS(b, "null") < 0 ? ERR : OK;
    }
    if (p->source_fn != NULL && PyUnicode_CheckExact(ref) && PyUnicode_IS_ASCII(ref)) {
        if (p->source == NULL) {
            PyObject *s = PyObject_CallNoArgs(p->source_fn);
            if (s == NULL) {
                return ERR;
            }
            p->source = s;
            p->read = NULL;
            if (PyTuple_CheckExact(s) && PyTuple_GET_SIZE(s) == 7
                && PyCapsule_IsValid(PyTuple_GET_ITEM(s, 0), PAYLOAD_WINDOW_CAPSULE)) {
                p->read = (payload_window_fn)PyCapsule_GetPointer(PyTuple_GET_ITEM(s, 0),
                                                                  PAYLOAD_WINDOW_CAPSULE);
            }
        }
        if (p->read != NULL) {
            const char *data;
            Py_ssize_t size;
            int rc = p->read(&PyTuple_GET_ITEM(p->source, 1), (const char *)PyUnicode_DATA(ref),
                             PyUnicode_GET_LENGTH(ref), &data, &size);
            if (rc < 0) {
                return ERR;
            }
            if (rc == 1) {
                return put(b, data, size) < 0 ? ERR : OK;
            }
        }
        Py_CLEAR(p->source); /* get() below may move the window: take a new source */
    }
    PyObject *data = PyObject_CallOneArg(p->get, ref);
    if (data == NULL) {
        return ERR;
    }
    int rc = BAIL;
    if (PyBytes_CheckExact(data)) {
        rc = put(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) < 0 ? ERR : OK;
    }
    Py_DECREF(data);
    return rc;
}

/* -- the interned names ------------------------------------------------------------- */

#define NAMES(X)                                                                         \
    X(attempt) X(batch_id) X(branch_name) X(call_id) X(call_index) X(call_type)          \
    X(context) X(context_after) X(context_before) X(duration_ms) X(edge_id) X(error)     \
    X(error_hash) X(expand_group_id) X(expected_branches) X(fork_group_id) X(input_data_ref) \
    X(input_data_retained) X(input_hash) X(input_retained) X(join_group_id) X(latency_ms) \
    X(mode) X(node_id) X(occurred_at) X(operation_id) X(ordinal) X(outcome) X(outcome_id) \
    X(output_data_ref) X(output_hash) X(parent_token_ids) X(reason_hash) X(reason_ref)   \
    X(redacted) X(request_hash) X(request_ref) X(request_retained) X(response_hash)      \
    X(response_ref) X(routing_event_id) X(routing_group_id) X(row_id) X(row_index)       \
    X(seq) X(sink_name) X(source_data_hash) X(source_data_ref) X(source_data_retained)   \
    X(source_node_id) X(started_at) X(started_seq) X(state_id) X(status) X(step_in_pipeline) \
    X(step_index) X(success_reason) X(token_id) X(ts)

#define DECLARE(n) static PyObject *s_##n;
NAMES(DECLARE)
#undef DECLARE
#define INDEX(n) N_##n,
enum { NAMES(INDEX) N_NAMES };
#undef INDEX
#define NAME_OF(n) &s_##n,
static PyObject **name_of[N_NAMES] = {NAMES(NAME_OF)};
#undef NAME_OF

/* Where each hot event type keeps each field: msgspec's structs keep them in slots
   (member descriptors), read here without the attribute lookup (~a third of the time
   otherwise). 0: not looked up yet; -1: not a plain slot (PyObject_GetAttr then). The
   types are held (their addresses stay theirs). */
static PyTypeObject *slot_types[N_HOT];
static Py_ssize_t slot_offsets[N_HOT][N_NAMES];
static PyObject *tally_keys[3]; /* "row", "token", "outcome." */

/* -- one event -------------------------------------------------------------------- */

typedef struct {
    int kind;              /* the event's index in ``hot`` */
    PyObject *get;         /* or None */
    Payloads payloads;     /* get and the window source, when get is not None */
    PyObject *run_id_json; /* bytes: the run id written as a JSON string */
    PyObject *open_states;
    PyObject *tally;
    PyObject *json_bytes;
    Buf buf;
} Ctx;

/* attributes read through PyObject_GetAttr (new references, released per event) */
#define MAX_ATTRS 32
typedef struct {
    PyObject *v[MAX_ATTRS];
    int n;
} Attrs;

static void
attrs_clear(Attrs *a)
{
    for (int i = 0; i < a->n; i++) {
        Py_CLEAR(a->v[i]);
    }
    a->n = 0;
}

static PyObject *
attr(Attrs *a, PyObject *obj, PyObject *name)
{
    if (a->n == MAX_ATTRS) {
        PyErr_SetString(PyExc_RuntimeError, "too many attributes");
        return NULL;
    }
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v != NULL) {
        a->v[a->n++] = v;
    }
    return v;
}

/* ``v`` held until the event is done (a value borrowed from a dict a callback could change) */
static PyObject *
hold(Attrs *a, PyObject *v)
{
    if (v != NULL && a->n < MAX_ATTRS) {
        a->v[a->n++] = Py_NewRef(v);
        return v;
    }
    if (v != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "too many attributes");
    }
    return NULL;
}

static Py_ssize_t
slot_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *d = PyObject_GetAttr((PyObject *)type, name);
    Py_ssize_t offset = -1;
    if (d == NULL) {
        PyErr_Clear();
        return -1;
    }
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && m->offset > 0 &&
            PyType_IsSubtype(type, PyDescr_TYPE(d))) {
            offset = m->offset;
        }
    }
    Py_DECREF(d);
    return offset;
}

/* event's field ``index`` of hot type ``kind`` (a borrowed reference while the event
   lives, or one held in ``a``; NULL with an exception) */
static PyObject *
field(Attrs *a, int kind, PyObject *event, int index)
{
    Py_ssize_t offset = slot_offsets[kind][index];
    if (offset == 0) {
        offset = slot_offsets[kind][index] = slot_offset(Py_TYPE(event), *name_of[index]);
    }
    if (offset > 0) {
        PyObject *v = *(PyObject **)((char *)event + offset);
        if (v != NULL) {
            return v;
        }
    }
    return attr(a, event, *name_of[index]);
}

/* Writers in the handlers' key order (sorted); each `W(...)` returns on BAIL/ERR. */
#define W(expr)                                                                          \
    do {                                                                                 \
        int rc_ = (expr);                                                                \
        if (rc_ != OK) {                                                                 \
            return rc_;                                                                  \
        }                                                                                \
    } while (0)
#define KEY(b, lit) W(PUTS((b), lit) < 0 ? ERR : OK)
#define GET(a, obj, name, var)                                                           \
    PyObject *var = field((a), c->kind, (obj), N_##name);                                \
    if (var == NULL) {                                                                   \
        return ERR;                                                                      \
    }
/* ``key`` (a literal with its comma and colon), then the field ``name`` as w_plain writes it */
#define PLAIN(b, key, a, obj, name)                                                      \
    do {                                                                                 \
        KEY(b, key);                                                                     \
        GET(a, obj, name, plain_);                                                       \
        W(w_plain(b, plain_));                                                           \
    } while (0)

static int
w_run_seq(Ctx *c, Buf *b, PyObject *seq)
{
    KEY(b, ",\"run_id\":");
    W(put(b, PyBytes_AS_STRING(c->run_id_json), PyBytes_GET_SIZE(c->run_id_json)) < 0 ? ERR : OK);
    KEY(b, ",\"seq\":");
    return w_plain(b, seq);
}

/* "appended_at" (only with occurred_at) then the time key: occurred_at or ts */
static int
w_times(Buf *b, PyObject *occurred, PyObject *ts, const char *key, int first)
{
    if (occurred != Py_None) {
        KEY(b, "\"appended_at\":");
        W(w_plain(b, ts));
        first = 0;
    }
    if (!first) {
        KEY(b, ",");
    }
    W(put(b, key, (Py_ssize_t)strlen(key)) < 0 ? ERR : OK);
    return w_plain(b, occurred != Py_None ? occurred : ts);
}

static int
count(PyObject *tally, PyObject *key)
{
    PyObject *old = PyDict_GetItemWithError(tally, key);
    if (old == NULL && PyErr_Occurred()) {
        return -1;
    }
    PyObject *now = PyLong_FromLong(1);
    if (now != NULL && old != NULL) {
        Py_SETREF(now, PyNumber_Add(old, now));
    }
    if (now == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(tally, key, now);
    Py_DECREF(now);
    return rc;
}

static int
row(Ctx *c, Attrs *a, PyObject *e)
{
    Buf *b = &c->buf;
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    GET(a, e, source_data_retained, retained_obj);
    int retained = PyObject_IsTrue(retained_obj);
    if (retained < 0) {
        return ERR;
    }
    GET(a, e, source_data_ref, source_ref);
    PyObject *ref = retained ? source_ref : Py_None;
    KEY(b, "{");
    W(w_times(b, occurred, ts, "\"created_at\":", 1));
    PLAIN(b, ",\"record_type\":\"row\",\"row_id\":", a, e, row_id);
    PLAIN(b, ",\"row_index\":", a, e, row_index);
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    if (c->get != Py_None) {
        KEY(b, ",\"source_data\":");
        W(w_payload(b, &c->payloads, ref));
    }
    PLAIN(b, ",\"source_data_hash\":", a, e, source_data_hash);
    KEY(b, ",\"source_data_ref\":");
    W(w_plain(b, ref));
    if (!retained) {
        KEY(b, ",\"source_data_retained\":false");
    }
    PLAIN(b, ",\"source_node_id\":", a, e, source_node_id);
    KEY(b, "}");
    return OK;
}

static int
token(Ctx *c, Attrs *a, PyObject *e)
{
    Buf *b = &c->buf;
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    KEY(b, "{");
    if (occurred != Py_None) {
        KEY(b, "\"appended_at\":");
        W(w_plain(b, ts));
        KEY(b, ",");
    }
    PLAIN(b, "\"branch_name\":", a, e, branch_name);
    KEY(b, ",\"created_at\":");
    W(w_plain(b, occurred != Py_None ? occurred : ts));
    PLAIN(b, ",\"expand_group_id\":", a, e, expand_group_id);
    PLAIN(b, ",\"fork_group_id\":", a, e, fork_group_id);
    PLAIN(b, ",\"join_group_id\":", a, e, join_group_id);
    KEY(b, ",\"parent_token_ids\":");
    GET(a, e, parent_token_ids, parents);
    W(w_strings(b, parents));
    PLAIN(b, ",\"record_type\":\"token\",\"row_id\":", a, e, row_id);
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    GET(a, e, step_in_pipeline, step);
    if (step != Py_None) {
        KEY(b, ",\"step_in_pipeline\":");
        W(w_plain(b, step));
    }
    PLAIN(b, ",\"token_id\":", a, e, token_id);
    KEY(b, "}");
    return OK;
}

static int
routing(Ctx *c, Attrs *a, PyObject *e)
{
    Buf *b = &c->buf;
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    KEY(b, "{");
    W(w_times(b, occurred, ts, "\"created_at\":", 1));
    PLAIN(b, ",\"edge_id\":", a, e, edge_id);
    PLAIN(b, ",\"mode\":", a, e, mode);
    PLAIN(b, ",\"ordinal\":", a, e, ordinal);
    GET(a, e, reason_ref, ref);
    if (c->get != Py_None) {
        KEY(b, ",\"reason\":");
        W(w_payload(b, &c->payloads, ref));
    }
    KEY(b, ",\"reason_hash\":");
    GET(a, e, reason_hash, hash);
    W(w_plain(b, hash));
    KEY(b, ",\"reason_ref\":");
    W(w_plain(b, ref));
    if (ref == Py_None && hash != Py_None) {
        KEY(b, ",\"reason_retained\":false");
    }
    PLAIN(b, ",\"record_type\":\"routing_event\",\"routing_event_id\":", a, e, routing_event_id);
    PLAIN(b, ",\"routing_group_id\":", a, e, routing_group_id);
    PLAIN(b, ",\"row_id\":", a, e, row_id);
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    PLAIN(b, ",\"state_id\":", a, e, state_id);
    KEY(b, "}");
    return OK;
}

static int
call(Ctx *c, Attrs *a, PyObject *e)
{
    Buf *b = &c->buf;
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    KEY(b, "{");
    if (occurred != Py_None) {
        KEY(b, "\"appended_at\":");
        W(w_plain(b, ts));
        KEY(b, ",");
    }
    PLAIN(b, "\"call_id\":", a, e, call_id);
    PLAIN(b, ",\"call_index\":", a, e, call_index);
    PLAIN(b, ",\"call_type\":", a, e, call_type);
    KEY(b, ",\"created_at\":");
    W(w_plain(b, occurred != Py_None ? occurred : ts));
    KEY(b, ",\"error\":");
    GET(a, e, error, error);
    W(w_json(b, error, c->json_bytes));
    KEY(b, ",\"latency_ms\":");
    GET(a, e, latency_ms, latency);
    W(w_json(b, latency, c->json_bytes));
    PLAIN(b, ",\"operation_id\":", a, e, operation_id);
    KEY(b, ",\"record_type\":\"call\"");
    GET(a, e, redacted, redacted);
    int any = PyObject_IsTrue(redacted);
    if (any < 0) {
        return ERR;
    }
    if (any) {
        KEY(b, ",\"redacted\":");
        W(w_strings(b, redacted));
    }
    GET(a, e, request_retained, retained_obj);
    int retained = PyObject_IsTrue(retained_obj);
    if (retained < 0) {
        return ERR;
    }
    GET(a, e, request_ref, request_ref_obj);
    PyObject *request_ref = retained ? request_ref_obj : Py_None;
    GET(a, e, response_ref, response_ref);
    if (c->get != Py_None) {
        KEY(b, ",\"request\":");
        W(w_payload(b, &c->payloads, request_ref));
    }
    PLAIN(b, ",\"request_hash\":", a, e, request_hash);
    KEY(b, ",\"request_ref\":");
    W(w_plain(b, request_ref));
    if (!retained) {
        KEY(b, ",\"request_retained\":false");
    }
    if (c->get != Py_None) {
        KEY(b, ",\"response\":");
        W(w_payload(b, &c->payloads, response_ref));
    }
    KEY(b, ",\"response_hash\":");
    GET(a, e, response_hash, response_hash);
    W(w_plain(b, response_hash));
    KEY(b, ",\"response_ref\":");
    W(w_plain(b, response_ref));
    if (response_ref == Py_None && response_hash != Py_None) {
        KEY(b, ",\"response_retained\":false");
    }
    PLAIN(b, ",\"row_id\":", a, e, row_id);
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    PLAIN(b, ",\"state_id\":", a, e, state_id);
    PLAIN(b, ",\"status\":", a, e, status);
    KEY(b, "}");
    return OK;
}

static int
outcome(Ctx *c, Attrs *a, PyObject *e)
{
    Buf *b = &c->buf;
    GET(a, e, outcome, what); /* a str: the caller has checked */
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    KEY(b, "{");
    if (occurred != Py_None) {
        KEY(b, "\"appended_at\":");
        W(w_plain(b, ts));
        KEY(b, ",");
    }
    GET(a, e, batch_id, batch);
    if (batch != Py_None) {
        KEY(b, "\"batch_id\":");
        W(w_plain(b, batch));
        KEY(b, ",");
    }
    KEY(b, "\"context\":");
    GET(a, e, context, context);
    W(w_json(b, context, c->json_bytes));
    PLAIN(b, ",\"error_hash\":", a, e, error_hash);
    GET(a, e, expand_group_id, expand);
    if (expand != Py_None) {
        KEY(b, ",\"expand_group_id\":");
        W(w_plain(b, expand));
    }
    GET(a, e, expected_branches, expected);
    if (expected != Py_None) {
        KEY(b, ",\"expected_branches\":");
        W(w_json(b, expected, c->json_bytes));
    }
    GET(a, e, fork_group_id, fork);
    if (fork != Py_None) {
        KEY(b, ",\"fork_group_id\":");
        W(w_plain(b, fork));
    }
    GET(a, e, join_group_id, join);
    if (join != Py_None) {
        KEY(b, ",\"join_group_id\":");
        W(w_plain(b, join));
    }
    KEY(b, ",\"outcome\":");
    W(w_plain(b, what));
    PLAIN(b, ",\"outcome_id\":", a, e, outcome_id);
    KEY(b, ",\"record_type\":\"token_outcome\",\"recorded_at\":");
    W(w_plain(b, occurred != Py_None ? occurred : ts));
    PLAIN(b, ",\"row_id\":", a, e, row_id);
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    PLAIN(b, ",\"sink_name\":", a, e, sink_name);
    PLAIN(b, ",\"token_id\":", a, e, token_id);
    KEY(b, "}");
    return OK;
}

/* _state_started: the open state's dict, the keys in the Python handler's order */
static int
started(Ctx *c, Attrs *a, PyObject *e)
{
    GET(a, e, state_id, state_id);
    GET(a, e, token_id, token_id);
    GET(a, e, row_id, row_id);
    GET(a, e, node_id, node_id);
    GET(a, e, step_index, step_index);
    GET(a, e, attempt, attempt);
    GET(a, e, input_hash, input_hash);
    GET(a, e, input_data_ref, input_ref);
    GET(a, e, seq, seq);
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    GET(a, e, input_retained, retained_obj);
    GET(a, e, context_before, context);
    int retained = PyObject_IsTrue(retained_obj);
    if (retained < 0) {
        return ERR;
    }
    PyObject *s = PyDict_New();
    if (s == NULL) {
        return ERR;
    }
    PyObject *keys[] = {s_state_id, s_token_id,   s_row_id,         s_node_id,
                        s_step_index, s_attempt,  s_input_hash,     s_input_data_ref,
                        s_started_seq, s_started_at};
    PyObject *values[] = {state_id, token_id, row_id, node_id, step_index, attempt,
                          input_hash, retained ? input_ref : Py_None, seq,
                          occurred != Py_None ? occurred : ts};
    for (int i = 0; i < 10; i++) {
        if (PyDict_SetItem(s, keys[i], values[i]) < 0) {
            goto fail;
        }
    }
    if (!retained && PyDict_SetItem(s, s_input_data_retained, Py_False) < 0) {
        goto fail;
    }
    if (context != Py_None && PyDict_SetItem(s, s_context_before, context) < 0) {
        goto fail;
    }
    if (PyDict_SetItem(c->open_states, state_id, s) < 0) {
        goto fail;
    }
    Py_DECREF(s);
    return OK;
fail:
    Py_DECREF(s);
    return ERR;
}

/* _state_record_sorted: the record of a completed state whose started fields are the
   usual ones (else BAIL: the Python handler takes the general path) */
static int
completed(Ctx *c, Attrs *a, PyObject *e, PyObject *s)
{
    Buf *b = &c->buf;
    PyObject *ctx_before = PyDict_GetItemWithError(s, s_context_before);
    if (ctx_before == NULL && PyErr_Occurred()) {
        return ERR;
    }
    PyObject *in_retained = PyDict_GetItemWithError(s, s_input_data_retained);
    if (in_retained == NULL && PyErr_Occurred()) {
        return ERR;
    }
    if (PyDict_GET_SIZE(s) - (ctx_before != NULL) - (in_retained != NULL) != 10) {
        return BAIL;
    }
    if ((ctx_before != NULL && hold(a, ctx_before) == NULL) ||
        (in_retained != NULL && hold(a, in_retained) == NULL)) {
        return ERR;
    }
    PyObject *names[] = {s_input_data_ref, s_attempt, s_input_hash, s_node_id, s_row_id,
                         s_started_at, s_started_seq, s_state_id, s_step_index, s_token_id};
    PyObject *v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = PyDict_GetItemWithError(s, names[i]);
        if (v[i] == NULL) {
            return PyErr_Occurred() ? ERR : BAIL;
        }
        if (hold(a, v[i]) == NULL) {
            return ERR;
        }
    }
    PyObject *in_ref = v[0];
    GET(a, e, occurred_at, occurred);
    GET(a, e, ts, ts);
    KEY(b, "{");
    if (occurred != Py_None) {
        KEY(b, "\"appended_at\":");
        W(w_plain(b, ts));
        KEY(b, ",");
    }
    KEY(b, "\"attempt\":");
    W(w_plain(b, v[1]));
    KEY(b, ",\"completed_at\":");
    W(w_plain(b, occurred != Py_None ? occurred : ts));
    GET(a, e, context_after, ctx_after);
    if (ctx_after != Py_None) {
        KEY(b, ",\"context_after\":");
        W(w_json(b, ctx_after, c->json_bytes));
    }
    if (ctx_before != NULL) {
        KEY(b, ",\"context_before\":");
        W(w_json(b, ctx_before, c->json_bytes));
    }
    KEY(b, ",\"duration_ms\":");
    GET(a, e, duration_ms, duration);
    W(w_json(b, duration, c->json_bytes));
    KEY(b, ",\"error\":");
    GET(a, e, error, error);
    W(w_json(b, error, c->json_bytes));
    if (c->get != Py_None) {
        KEY(b, ",\"input_data\":");
        W(w_payload(b, &c->payloads, in_ref));
    }
    KEY(b, ",\"input_data_ref\":");
    W(w_plain(b, in_ref));
    if (in_retained != NULL) {
        KEY(b, ",\"input_data_retained\":");
        W(w_plain(b, in_retained));
    }
    KEY(b, ",\"input_hash\":");
    W(w_plain(b, v[2]));
    KEY(b, ",\"node_id\":");
    W(w_plain(b, v[3]));
    GET(a, e, output_data_ref, out_ref);
    GET(a, e, output_hash, out_hash);
    if (c->get != Py_None) {
        KEY(b, ",\"output_data\":");
        W(w_payload(b, &c->payloads, out_ref));
    }
    KEY(b, ",\"output_data_ref\":");
    W(w_plain(b, out_ref));
    if (out_ref == Py_None && out_hash != Py_None) {
        KEY(b, ",\"output_data_retained\":false");
    }
    KEY(b, ",\"output_hash\":");
    W(w_plain(b, out_hash));
    KEY(b, ",\"record_type\":\"node_state\",\"row_id\":");
    W(w_plain(b, v[4]));
    GET(a, e, seq, seq);
    W(w_run_seq(c, b, seq));
    KEY(b, ",\"started_at\":");
    W(w_plain(b, v[5]));
    KEY(b, ",\"started_seq\":");
    W(w_plain(b, v[6]));
    KEY(b, ",\"state_id\":");
    W(w_plain(b, v[7]));
    PLAIN(b, ",\"status\":", a, e, status);
    KEY(b, ",\"step_index\":");
    W(w_plain(b, v[8]));
    KEY(b, ",\"success_reason\":");
    GET(a, e, success_reason, reason);
    W(w_json(b, reason, c->json_bytes));
    KEY(b, ",\"token_id\":");
    W(w_plain(b, v[9]));
    KEY(b, "}");
    return OK;
}

/* -- the loop ---------------------------------------------------------------------- */

/* extend_lines' output: the records as lines ("," record newline each, back to back) in
   one buffer -- the hot records are written there directly, not copied from a bytes
   object each -- with each one's length and Merkle leaf hash (SHA-256 of 0x00 || record,
   hashed while the record is in the cache). NULL in ``extend``'s mode (lists). */
typedef struct {
    PyObject *lengths;
    Buf leaves;
    SHA256_CTX primed; /* after the leaf prefix: a copy per record */
} Lines;

/* One record made: in lines mode the last ``len`` bytes of ``c->buf`` (after its ","),
   else ``data``/``len`` (``record``, when a handler made it, is appended as it is). */
static int
emit(Buf *b, Lines *ln, PyObject *seqs, PyObject *records, PyObject *seq, const char *data,
     Py_ssize_t len, PyObject *record)
{
    if (PyList_Append(seqs, seq) < 0) {
        return -1;
    }
    if (ln == NULL) {
        PyObject *r = record != NULL ? Py_NewRef(record) : PyBytes_FromStringAndSize(data, len);
        int rc = r == NULL || PyList_Append(records, r) < 0 ? -1 : 0;
        Py_XDECREF(r);
        return rc;
    }
    if (record != NULL) { /* a handler's record: copied in after a "," */
        if (put(b, ",", 1) < 0 || put(b, data, len) < 0) {
            return -1;
        }
    }
    if (put(b, "\n", 1) < 0 || buf_reserve(&ln->leaves, 32) < 0) {
        return -1;
    }
    PyObject *length = PyLong_FromSsize_t(len);
    if (length == NULL || PyList_Append(ln->lengths, length) < 0) {
        Py_XDECREF(length);
        return -1;
    }
    Py_DECREF(length);
    const char *at = b->data + b->len - 1 - len; /* (the buffer may have moved) */
    SHA256_CTX h = ln->primed;
    if (!SHA256_Update(&h, at, (size_t)len) ||
        !SHA256_Final((unsigned char *)ln->leaves.data + ln->leaves.len, &h)) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        return -1;
    }
    ln->leaves.len += 32;
    return 0;
}

static int
append_handled(PyObject *handler, PyObject *event, PyObject *seqs, PyObject *records, Buf *b,
               Lines *ln)
{
    PyObject *out = PyObject_CallOneArg(handler, event);
    if (out == NULL) {
        return -1;
    }
    PyObject *it = PyObject_GetIter(out);
    Py_DECREF(out);
    if (it == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            Py_DECREF(item);
            Py_DECREF(it);
            PyErr_SetString(PyExc_ValueError, "a handler's record is not (seq, bytes)");
            return -1;
        }
        PyObject *record = PyTuple_GET_ITEM(item, 1);
        int rc;
        if (ln == NULL) {
            rc = emit(b, NULL, seqs, records, PyTuple_GET_ITEM(item, 0), NULL, 0, record);
        }
        else {
            Py_buffer view;
            rc = PyObject_GetBuffer(record, &view, PyBUF_SIMPLE);
            if (rc == 0) {
                rc = emit(b, ln, seqs, NULL, PyTuple_GET_ITEM(item, 0), view.buf, view.len,
                          record);
                PyBuffer_Release(&view);
            }
        }
        Py_DECREF(item);
        if (rc) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* extend's loop (``ln`` NULL: records appended to the ``records`` list) or
   extend_lines' (the lines written into ``*lines``); -1 with an exception, -2 for a
   run id it cannot write, else the events used */
static Py_ssize_t
loop(PyObject *const *args, Lines *ln, Buf *lines)
{
    PyObject *events = args[0], *seqs = args[1], *records = args[2], *handlers = args[3];
    PyObject *hot = args[4], *run_id = args[5];
    Ctx c = {.kind = 0, .get = args[6], .run_id_json = NULL, .open_states = args[7],
             .tally = args[8], .json_bytes = args[9], .buf = {NULL, 0, 0, NULL}};
    if (PyTuple_CheckExact(c.get) && PyTuple_GET_SIZE(c.get) == 2) { /* (get, source) */
        c.payloads.source_fn = PyTuple_GET_ITEM(c.get, 1);
        c.get = PyTuple_GET_ITEM(c.get, 0);
    }
    c.payloads.get = c.get;
    if (!PyList_CheckExact(seqs) || (ln == NULL && !PyList_CheckExact(records)) ||
        !PyDict_CheckExact(handlers) ||
        !PyTuple_CheckExact(hot) || PyTuple_GET_SIZE(hot) != N_HOT ||
        !PyUnicode_CheckExact(run_id) || !PyDict_CheckExact(c.open_states) ||
        !PyDict_CheckExact(c.tally)) {
        PyErr_SetString(PyExc_TypeError, "extend(): unexpected argument types");
        return -1;
    }
    PyObject *run_json = NULL;
    {
        int rc = w_str(&c.buf, run_id);
        if (rc == OK) {
            run_json = PyBytes_FromStringAndSize(c.buf.data, c.buf.len);
        }
        PyMem_Free(c.buf.data);
        if (run_json == NULL) {
            return rc == BAIL ? -2 : -1; /* -2: not valid UTF-8, the Python loop does it all */
        }
        c.run_id_json = run_json;
        c.buf = *lines; /* lines mode: the records are written where their lines go */
    }
    PyObject *fast = PySequence_Fast(events, "extend() takes a sequence of events");
    if (fast == NULL) {
        Py_DECREF(run_json);
        *lines = c.buf;
        return -1;
    }
    PyTypeObject *types[N_HOT];
    for (int k = 0; k < N_HOT; k++) {
        types[k] = (PyTypeObject *)PyTuple_GET_ITEM(hot, k);
        if (slot_types[k] != types[k]) { /* other types than last time: look up again */
            Py_XDECREF(slot_types[k]);
            Py_INCREF(types[k]);
            slot_types[k] = types[k];
            memset(slot_offsets[k], 0, sizeof slot_offsets[k]);
        }
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), used = n;
    PyObject **items = PySequence_Fast_ITEMS(fast);
    Attrs a = {{NULL}, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = items[i];
        PyTypeObject *t = Py_TYPE(e);
        int k = 0;
        while (k < N_HOT && types[k] != t) {
            k++;
        }
        int rc = BAIL;
        PyObject *state_id = NULL, *s = NULL, *tally_key = NULL;
        Py_ssize_t start = 0; /* where the record starts in c.buf */
        if (ln == NULL) {
            c.buf.len = 0;
        }
        else if (put(&c.buf, ",", 1) < 0) {
            rc = ERR;
            k = N_HOT; /* nothing written: the error below */
        }
        else {
            start = c.buf.len;
        }
        c.kind = k;
        switch (k) {
        case ROW:
            rc = row(&c, &a, e);
            tally_key = tally_keys[0];
            break;
        case TOKEN:
            rc = token(&c, &a, e);
            tally_key = tally_keys[1];
            break;
        case STARTED:
            rc = started(&c, &a, e);
            break;
        case COMPLETED:
            state_id = field(&a, COMPLETED, e, N_state_id);
            if (state_id == NULL) {
                rc = ERR;
                break;
            }
            s = PyDict_GetItemWithError(c.open_states, state_id);
            if (s == NULL) {
                rc = PyErr_Occurred() ? ERR : BAIL; /* the handler's KeyError */
                break;
            }
            Py_INCREF(s);
            rc = completed(&c, &a, e, s);
            Py_DECREF(s);
            if (rc != BAIL) { /* written, or failed after the handler would have popped it */
                PyObject *exc_type, *exc, *tb;
                PyErr_Fetch(&exc_type, &exc, &tb);
                if (PyDict_DelItem(c.open_states, state_id) < 0) {
                    PyErr_Clear();
                }
                PyErr_Restore(exc_type, exc, tb);
            }
            break;
        case ROUTING:
            rc = routing(&c, &a, e);
            break;
        case CALL:
            rc = call(&c, &a, e);
            break;
        case OUTCOME:
        {
            PyObject *what = field(&a, OUTCOME, e, N_outcome);
            if (what == NULL) {
                rc = ERR;
            }
            else if (PyUnicode_CheckExact(what)) { /* else the handler's "outcome." + it */
                tally_key = PyUnicode_Concat(tally_keys[2], what); /* counted first */
                rc = tally_key == NULL ? ERR : outcome(&c, &a, e);
            }
            break;
        }
        default:
            break;
        }
        if (tally_key != NULL && rc != BAIL) { /* the handlers count before they write */
            PyObject *exc_type, *exc, *tb;
            PyErr_Fetch(&exc_type, &exc, &tb);
            if (count(c.tally, tally_key) < 0) {
                Py_XDECREF(exc_type);
                Py_XDECREF(exc);
                Py_XDECREF(tb);
                rc = ERR;
            }
            else {
                PyErr_Restore(exc_type, exc, tb);
            }
        }
        if (k == OUTCOME) {
            Py_XDECREF(tally_key);
        }
        if (rc == OK && k != STARTED) {
            PyObject *seq = field(&a, k, e, N_seq);
            if (seq == NULL || emit(&c.buf, ln, seqs, records, seq, c.buf.data + start,
                                    c.buf.len - start, NULL) < 0) {
                rc = ERR;
            }
        }
        else if (ln != NULL && rc != ERR) { /* no record here: drop the line's "," */
            c.buf.len = start - 1;
        }
        attrs_clear(&a);
        if (rc == BAIL) {
            PyObject *handler = PyDict_GetItemWithError(handlers, (PyObject *)t);
            if (handler == NULL && PyErr_Occurred()) {
                rc = ERR;
            }
            else if (handler != NULL &&
                     append_handled(handler, e, seqs, records, &c.buf, ln) < 0) {
                rc = ERR;
            }
        }
        if (rc == ERR) {
            Py_DECREF(fast);
            Py_DECREF(run_json);
            Py_XDECREF(c.payloads.source);
            *lines = c.buf;
            return -1;
        }
        if (k == RUN_COMPLETED) {
            used = i + 1;
            break;
        }
    }
    Py_DECREF(fast);
    Py_DECREF(run_json);
    Py_XDECREF(c.payloads.source);
    *lines = c.buf;
    return used;
}

static PyObject *
extend(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "extend() takes 10 arguments");
        return NULL;
    }
    Buf buf = {NULL, 0, 0, NULL};
    Py_ssize_t used = loop(args, NULL, &buf);
    PyMem_Free(buf.data);
    if (used == -2) {
        Py_RETURN_NONE;
    }
    return used < 0 ? NULL : PyLong_FromSsize_t(used);
}

/* extend_lines(events, handlers, hot, run_id, get, open_states, tally, json_bytes[, seqs])
   -> (used, lines, lengths, seqs, leaves) | None: extend's records as ChunkWriter.add_lines
   takes them (None: a run id it cannot write, the Python loop's to do); the seqs are
   appended to ``seqs`` when given (a handler may count them as they come) */
static PyObject *
extend_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 && nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "extend_lines() takes 8 or 9 arguments");
        return NULL;
    }
    /* the lines of a step are about as long as the last step's: room for them at once
       (a replay's step is megabytes; grown from 64 KiB it was copied ~7 times) */
    static Py_ssize_t hint = 1 << 16;
    PyObject *seqs = nargs == 9 ? Py_NewRef(args[8]) : PyList_New(0);
    Lines ln = {PyList_New(0), {NULL, 0, 0, NULL}};
    Buf lines = {NULL, 0, 0, PyBytes_FromStringAndSize(NULL, hint)};
    PyObject *result = NULL;
    if (seqs == NULL || ln.lengths == NULL || lines.bytes == NULL) {
        goto done;
    }
    lines.data = PyBytes_AS_STRING(lines.bytes);
    lines.cap = hint;
    static const unsigned char prefix = 0;
    if (!SHA256_Init(&ln.primed) || !SHA256_Update(&ln.primed, &prefix, 1)) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        goto done;
    }
    PyObject *full[10] = {args[0], seqs, NULL, args[1], args[2], args[3],
                          args[4], args[5], args[6], args[7]};
    Py_ssize_t used = loop(full, &ln, &lines);
    if (used == -2) {
        result = Py_NewRef(Py_None);
    }
    else if (used >= 0 && _PyBytes_Resize(&lines.bytes, lines.len) == 0) {
        Py_ssize_t next = lines.len + lines.len / 8;
        hint = next < (1 << 16) ? 1 << 16 : next > (64 << 20) ? 64 << 20 : next;
        result = Py_BuildValue("(nOOOy#)", used, lines.bytes, ln.lengths, seqs,
                               ln.leaves.data ? ln.leaves.data : "", ln.leaves.len);
    }
done:
    Py_XDECREF(lines.bytes);
    PyMem_Free(ln.leaves.data);
    Py_XDECREF(ln.lengths);
    Py_XDECREF(seqs);
    return result;
}

static PyMethodDef methods[] = {
    {"extend", (PyCFunction)(void (*)(void))extend, METH_FASTCALL,
     "extend(events, seqs, records, handlers, hot, run_id, get, open_states, tally, "
     "json_bytes) -> events used (RecordMaker.extend's loop, the hot records written here)."},
    {"extend_lines", (PyCFunction)(void (*)(void))extend_lines, METH_FASTCALL,
     "extend_lines(events, handlers, hot, run_id, get, open_states, tally, json_bytes) -> "
     "(used, lines, lengths, seqs, leaves) | None: extend's records as lines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_records_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__records_accel(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
#define INTERN(n)                                                                        \
    if (s_##n == NULL && (s_##n = PyUnicode_InternFromString(#n)) == NULL) {             \
        return NULL;                                                                     \
    }
    NAMES(INTERN)
#undef INTERN
    const char *counted[] = {"row", "token", "outcome."};
    for (int i = 0; i < 3; i++) {
        if (tally_keys[i] == NULL && (tally_keys[i] = PyUnicode_InternFromString(counted[i])) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
