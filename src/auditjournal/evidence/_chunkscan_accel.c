/* verify's chunk scan, the per-record byte work compiled (optional build, linked with
   libcrypto; evidence/chunkscan.py is the reference and the fallback).

   heads(data, end, state, run_id, types, previous) takes a block of whole chunk lines,
   data[:end], and does for all its records in one call what chunkscan's Python loop
   does per record through export.chunks.ChunkLines(strict=True) and msgspec: the layout
   ('[' first, the first record bare, later ones with a leading ',', nothing after ']'),
   each record's head (read by head() of _chunkscan_head.h in place of the msgspec
   decode: a known record type, this run's id, seqs never going back from `previous`), each
   record's Merkle leaf SHA-256(0x00 || record) (32 bytes each, in one bytes object), and
   what the heads add up to: records per type, token outcome kinds, open node states,
   the first and last seq. It only ever answers for a block it accepts whole: at the
   first line it does not accept it returns None and the caller scans that block with
   the Python loop, which finds and words the problem (or takes a record this scan does
   not judge). So the compiled path can be faster but never say anything else. The
   records are read and hashed in one pass while they are in cache, without the GIL,
   and no Python object is made per record.

   subtrees(leaves, start) is proofs.merkle.range_subtrees over leaves given as one
   bytes object of 32-byte hashes: the aligned (size, root) subtrees of leaves start,
   start + 1, ... (RFC 6962 nodes SHA-256(0x01 || left || right)).

   Both release the GIL while hashing (the file's own SHA-256 runs on a helper thread
   meanwhile). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co: see leaf() */
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>


#define STATE_BEFORE 0
#define STATE_FIRST 1
#define STATE_RECORDS 2
#define STATE_CLOSED 3

/* The low-level SHA256_* calls (deprecated in OpenSSL 3, not removed) cost ~0.3 us less
   a hash than an EVP_DigestInit_ex/Final pair: a third of the time of a small record's
   leaf, most of a node's. They need no context object, so the loops run without the GIL.
   A libcrypto built without them fails this build, and the Python code runs. */
static int
leaf(const unsigned char *rec, size_t n, unsigned char *out)
{
    static const unsigned char zero = 0;
    SHA256_CTX c;
    return SHA256_Init(&c) && SHA256_Update(&c, &zero, 1) && SHA256_Update(&c, rec, n)
        && SHA256_Final(out, &c);
}

static int
node(const unsigned char *left, const unsigned char *right, unsigned char *out)
{
    static const unsigned char one = 1;
    SHA256_CTX c;
    return SHA256_Init(&c) && SHA256_Update(&c, &one, 1) && SHA256_Update(&c, left, 32)
        && SHA256_Update(&c, right, 32) && SHA256_Final(out, &c);
}

#include "_chunkscan_head.h" /* head(): a record line's head */

/* What a block's records add up to (filled without the GIL). */
typedef struct {
    Py_ssize_t *counts;      /* records per known type */
    Py_ssize_t *outcome_at;  /* each token_outcome's outcome text (offset in data; -1 null) */
    Py_ssize_t *outcome_len;
    Py_ssize_t outcomes;
    Py_ssize_t open_states;
    long long first, last;
} Sums;

/* The scan of data[:end] without the GIL: the layout, each record's head and leaf hash;
   1 accepted, 0 not (the caller falls back), -1 libcrypto failed. */
static int
scan(const unsigned char *data, Py_ssize_t end, int *state, const Known *known,
     long long previous, unsigned char *leaves, Sums *sums, Py_ssize_t *count)
{
    Py_ssize_t pos = 0, n = 0;
    Head h = {0, 0, -1, 0, 0};
    while (pos < end) {
        Py_ssize_t start = pos;
        if (end - pos >= 2 && (data[pos] == '[' || data[pos] == ']') && data[pos + 1] == '\n') {
            if (*state == STATE_BEFORE) {
                if (data[start] != '[') {
                    return 0;
                }
                *state = STATE_FIRST;
                pos += 2;
                continue;
            }
            if (*state == STATE_CLOSED) {
                return 0;
            }
            if (data[start] == ']') {
                *state = STATE_CLOSED;
                pos += 2;
                continue;
            }
        }
        if (*state != STATE_RECORDS) {
            if (*state != STATE_FIRST) {
                return 0; /* before '[' or after ']' */
            }
            *state = STATE_RECORDS; /* the first record: no leading ',' */
        }
        else if (data[start] == ',') {
            start++;
        }
        else {
            return 0;
        }
        /* a record this scan takes holds no newline (no raw control character in a
           string, no whitespace outside one): it is the whole line if one follows it */
        Py_ssize_t len = head(data + start, end - start, known, &h);
        if (!len || start + len >= end || data[start + len] != '\n' || h.seq < previous) {
            return 0;
        }
        pos = start + len + 1;
        if (n == 0) {
            sums->first = h.seq;
        }
        sums->last = previous = h.seq;
        sums->counts[h.type]++;
        if (h.type == known->outcome_type) {
            sums->outcome_at[sums->outcomes] = h.outcome_at < 0 ? -1 : start + h.outcome_at;
            sums->outcome_len[sums->outcomes++] = h.outcome_len;
        }
        else if (h.type == known->state_type && h.open) {
            sums->open_states++;
        }
        if (!leaf(data + start, (size_t)len, leaves + 32 * n)) {
            return -1;
        }
        n++;
    }
    *count = n;
    return 1;
}

/* heads(data, end, state, run_id, types, previous)
     -> None | (state, leaves, counts, outcomes, open_states, first, last)
   run_id: bytes (UTF-8); types: tuple of str; counts: records per type, in its order;
   outcomes: {outcome: count} of the token_outcome records (null ones left out);
   first, last: the block's first and last seq (None without a record). */
static PyObject *
heads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyBytes_Check(args[3]) || !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "heads(data, end, state, run_id: bytes, types: tuple, previous)");
        return NULL;
    }
    Py_ssize_t end = PyLong_AsSsize_t(args[1]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long state_in = PyLong_AsLong(args[2]);
    if (state_in == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int overflow = 0;
    long long previous = PyLong_AsLongLongAndOverflow(args[5], &overflow);
    if (previous == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t type_count = PyTuple_GET_SIZE(args[4]);
    if (state_in < STATE_BEFORE || state_in > STATE_CLOSED || overflow || type_count > 256) {
        Py_RETURN_NONE; /* (a previous seq past long long: the Python loop's to judge) */
    }
    const char *types[256];
    Py_ssize_t type_lens[256];
    Known known = {(const unsigned char *)PyBytes_AS_STRING(args[3]), PyBytes_GET_SIZE(args[3]),
                   types, type_lens, (int)type_count, -1, -1};
    for (Py_ssize_t k = 0; k < type_count; k++) {
        PyObject *t = PyTuple_GET_ITEM(args[4], k);
        if (!PyUnicode_Check(t) || (types[k] = PyUnicode_AsUTF8AndSize(t, &type_lens[k])) == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "types must be str");
            }
            return NULL;
        }
        if (type_lens[k] == 13 && memcmp(types[k], "token_outcome", 13) == 0) {
            known.outcome_type = (int)k;
        }
        else if (type_lens[k] == 10 && memcmp(types[k], "node_state", 10) == 0) {
            known.state_type = (int)k;
        }
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (end < 0 || end > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "end outside the data");
        return NULL;
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t lines = 0; /* an upper bound on the records */
    for (const unsigned char *p = data, *stop = data + end;
         (p = memchr(p, '\n', (size_t)(stop - p))) != NULL; p++) {
        lines++;
    }
    PyObject *leaves = PyBytes_FromStringAndSize(NULL, 32 * lines);
    Py_ssize_t *space = PyMem_Calloc((size_t)(2 * lines + type_count + 1), sizeof(Py_ssize_t));
    PyObject *counts = NULL, *outcomes = NULL, *result = NULL;
    if (leaves == NULL || space == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    Sums sums = {space, space + type_count, space + type_count + lines, 0, 0, 0, 0};
    int state = (int)state_in, ok;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    ok = scan(data, end, &state, &known, previous, (unsigned char *)PyBytes_AS_STRING(leaves),
              &sums, &count);
    Py_END_ALLOW_THREADS
    if (ok < 0) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto SHA-256 failed");
        goto done;
    }
    if (ok == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&leaves, 32 * count) < 0) {
        goto done;
    }
    if ((counts = PyList_New(type_count)) == NULL || (outcomes = PyDict_New()) == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < type_count; k++) {
        PyObject *c = PyLong_FromSsize_t(sums.counts[k]);
        if (c == NULL) {
            goto done;
        }
        PyList_SET_ITEM(counts, k, c);
    }
    for (Py_ssize_t k = 0; k < sums.outcomes; k++) {
        if (sums.outcome_at[k] < 0) {
            continue; /* null: not an outcome kind (as the Python loop leaves out None) */
        }
        PyObject *text = PyUnicode_DecodeUTF8((const char *)data + sums.outcome_at[k],
                                              sums.outcome_len[k], "strict");
        if (text == NULL) {
            goto done;
        }
        PyObject *was = PyDict_GetItemWithError(outcomes, text); /* borrowed */
        PyObject *now = NULL;
        if (was != NULL) {
            now = PyLong_FromSsize_t(PyLong_AsSsize_t(was) + 1); /* ours: never overflows */
        }
        else if (!PyErr_Occurred()) {
            now = PyLong_FromLong(1);
        }
        int bad = now == NULL || PyDict_SetItem(outcomes, text, now) < 0;
        Py_DECREF(text);
        Py_XDECREF(now);
        if (bad) {
            goto done;
        }
    }
    if (count) {
        result = Py_BuildValue("(iOOOnLL)", state, leaves, counts, outcomes, sums.open_states,
                               sums.first, sums.last);
    }
    else {
        result = Py_BuildValue("(iOOOnOO)", state, leaves, counts, outcomes, sums.open_states,
                               Py_None, Py_None);
    }
done:
    PyMem_Free(space);
    Py_XDECREF(leaves);
    Py_XDECREF(counts);
    Py_XDECREF(outcomes);
    PyBuffer_Release(&buf);
    return result;
}

/* subtrees(leaves, start) -> [(size, root), ...], as proofs.merkle.range_subtrees */
static PyObject *
subtrees(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "subtrees(leaves, start)");
        return NULL;
    }
    unsigned long long position = PyLong_AsUnsignedLongLong(args[1]);
    if (position == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (buf.len % 32) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "leaves are not 32-byte hashes");
        return NULL;
    }
    Py_ssize_t n = buf.len / 32;
    /* at most two edge nodes per level, 64 levels */
    unsigned char edges[128][32];
    unsigned long long sizes[128];
    int rising = 0, falling = 0; /* rising from the front, falling from the back */
    unsigned char *level = PyMem_Malloc(n ? (size_t)buf.len : 1);
    PyObject *out = NULL;
    if (level == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(level, buf.buf, (size_t)buf.len);
    int ok = 1;
    unsigned long long size = 1;
    Py_ssize_t first = 0; /* level[first:n] is the level */
    Py_BEGIN_ALLOW_THREADS
    while (n > first && rising + falling < 126) {
        if (position & 1) {
            memcpy(edges[rising], level + 32 * first, 32);
            sizes[rising++] = size;
            first++;
            position++;
        }
        if ((n - first) & 1) {
            n--;
            memcpy(edges[127 - falling], level + 32 * n, 32);
            sizes[127 - falling++] = size;
        }
        Py_ssize_t w = 0;
        for (Py_ssize_t i = first; i < n; i += 2) {
            if (!node(level + 32 * i, level + 32 * (i + 1), level + 32 * w)) {
                ok = 0;
                break;
            }
            w++;
        }
        if (!ok) {
            break;
        }
        first = 0;
        n = w;
        position >>= 1;
        size <<= 1;
    }
    Py_END_ALLOW_THREADS
    if (!ok || n > first) {
        PyErr_SetString(PyExc_RuntimeError, ok ? "too many leaves" : "libcrypto SHA-256 failed");
        goto done;
    }
    out = PyList_New(rising + falling);
    if (out == NULL) {
        goto done;
    }
    for (int i = 0; i < rising + falling; i++) {
        int at = i < rising ? i : 127 - (falling - 1 - (i - rising));
        PyObject *pair = Py_BuildValue("(Ky#)", sizes[at], (const char *)edges[at],
                                       (Py_ssize_t)32);
        if (pair == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, pair);
    }
done:
    PyMem_Free(level);
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef methods[] = {
    {"heads", (PyCFunction)(void (*)(void))heads, METH_FASTCALL,
     "heads(data, end, state, run_id, types, previous) -> None | (state, leaves, counts, "
     "outcomes, open_states, first, last); see the module."},
    {"subtrees", (PyCFunction)(void (*)(void))subtrees, METH_FASTCALL,
     "subtrees(leaves, start) -> [(size, root)], as proofs.merkle.range_subtrees."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chunkscan_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__chunkscan_accel(void)
{
    return PyModule_Create(&module);
}
