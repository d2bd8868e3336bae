/* verify's chunk scan, the per-record byte work compiled (optional build, linked with
   libcrypto; evidence/chunkscan.py is the reference and the fallback).

   block(data, end, state) takes a block of whole chunk lines, data[:end], and does for
   all its records in one call what chunkscan's Python loop does per record through
   export.chunks.ChunkLines(strict=True): the layout ('[' first, the first record bare,
   later ones with a leading ',', nothing after ']'), each record's Merkle leaf
   SHA-256(0x00 || record) (32 bytes each, in one bytes object), and the records as
   bytes for the caller to decode (one map() over them, not a Python loop). It only
   ever answers for a block whose layout it accepts whole: at the first line it does
   not accept it returns None and the caller scans that block with the Python loop,
   which finds and words the problem. So the compiled path can be faster but never say
   anything else.

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

/* The scan of data[:end] without the GIL: the layout, each record's leaf hash and its
   place (starts[i], lens[i]); 1 accepted, 0 not (the caller falls back), -1 libcrypto
   failed. */
static int
scan(const unsigned char *data, Py_ssize_t end, int *state,
     unsigned char *leaves, Py_ssize_t *starts, Py_ssize_t *lens, Py_ssize_t *count)
{
    Py_ssize_t pos = 0, n = 0;
    while (pos < end) {
        const unsigned char *nl = memchr(data + pos, '\n', (size_t)(end - pos));
        if (nl == NULL) {
            break; /* bytes after the last newline are not ours (the caller cut at one) */
        }
        Py_ssize_t start = pos, newline = nl - data;
        pos = newline + 1;
        if (newline - start == 1 && (data[start] == '[' || data[start] == ']')) {
            if (*state == STATE_BEFORE) {
                if (data[start] != '[') {
                    return 0;
                }
                *state = STATE_FIRST;
                continue;
            }
            if (*state == STATE_CLOSED) {
                return 0;
            }
            if (data[start] == ']') {
                *state = STATE_CLOSED;
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
        if (!leaf(data + start, (size_t)(newline - start), leaves + 32 * n)) {
            return -1;
        }
        starts[n] = start;
        lens[n] = newline - start;
        n++;
    }
    *count = n;
    return 1;
}

/* block(data, end, state) -> None | (state, leaves, records) */
static PyObject *
block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "block(data, end, state)");
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
    if (state_in < STATE_BEFORE || state_in > STATE_CLOSED) {
        Py_RETURN_NONE;
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
    Py_ssize_t *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(2 * lines + 1));
    PyObject *records = NULL, *result = NULL;
    if (leaves == NULL || starts == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    Py_ssize_t *lens = starts + lines;
    int state = (int)state_in, ok;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    ok = scan(data, end, &state, (unsigned char *)PyBytes_AS_STRING(leaves), starts, lens,
              &count);
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
    records = PyList_New(count);
    if (records == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *rec = PyBytes_FromStringAndSize((const char *)data + starts[i], lens[i]);
        if (rec == NULL) {
            goto done;
        }
        PyList_SET_ITEM(records, i, rec);
    }
    result = Py_BuildValue("(iOO)", state, leaves, records);
done:
    PyMem_Free(starts);
    Py_XDECREF(leaves);
    Py_XDECREF(records);
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
    {"block", (PyCFunction)(void (*)(void))block, METH_FASTCALL,
     "block(data, end, state) -> None | (state, leaves, records); see the module."},
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
