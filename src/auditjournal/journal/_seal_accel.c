/* journal/lines.py's seal() compiled (optional build, linked with libcrypto): the
   journal line of an event's bytes and its chain value, sha256(prev_chain || event).
   The line is the event's JSON object without its closing brace, then
   ,"chain":"<64 lowercase hex>"} and a newline; the same bytes as the Python seal (a
   property test). SHA-256 comes from libcrypto's EVP interface with the digest
   fetched once, at import: hashlib fetches it for every hash object (~290 ns with
   OpenSSL 3), which is most of the cost of hashing a ~500-byte line. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co, for check_lines (see there) */
#include <openssl/evp.h>

#include "../_sha256_evp.h" /* sha256_md, shared_ctx, sha256_fetch() */
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>


static const char HEX[] = "0123456789abcdef";
static const char PREFIX[] = ",\"chain\":\"";
#define PREFIX_LEN 10
#define END_LEN 3

static int
digest2(const void *a, size_t alen, const void *b, size_t blen, unsigned char *out)
{
    unsigned int n = 0;
    if (!EVP_DigestInit_ex(shared_ctx, sha256_md, NULL)
        || (alen && !EVP_DigestUpdate(shared_ctx, a, alen))
        || !EVP_DigestUpdate(shared_ctx, b, blen)
        || !EVP_DigestFinal_ex(shared_ctx, out, &n) || n != 32) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto SHA-256 failed");
        return -1;
    }
    return 0;
}

/* seal(event_bytes, prev_chain) -> (line, chain), as journal/lines.py's seal_python:
   both arguments any bytes-like object, the line of an empty event as Python's
   slicing makes it (no first byte to keep). */
static PyObject *
seal(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seal(event_bytes, prev_chain)");
        return NULL;
    }
    Py_buffer event, prev;
    if (PyObject_GetBuffer(args[0], &event, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &prev, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&event);
        return NULL;
    }
    unsigned char chain[32];
    PyObject *line = NULL;
    Py_ssize_t keep = event.len > 0 ? event.len - 1 : 0; /* all but the closing brace */
    if (digest2(prev.buf, (size_t)prev.len, event.buf, (size_t)event.len, chain) == 0) {
        line = PyBytes_FromStringAndSize(NULL, keep + PREFIX_LEN + 64 + END_LEN);
    }
    if (line != NULL) {
        char *p = PyBytes_AS_STRING(line);
        memcpy(p, event.buf, (size_t)keep);
        p += keep;
        memcpy(p, PREFIX, PREFIX_LEN);
        p += PREFIX_LEN;
        for (int i = 0; i < 32; i++) {
            *p++ = HEX[chain[i] >> 4];
            *p++ = HEX[chain[i] & 15];
        }
        memcpy(p, "\"}\n", END_LEN);
    }
    PyBuffer_Release(&event);
    PyBuffer_Release(&prev);
    if (line == NULL) {
        return NULL;
    }
    PyObject *digest = PyBytes_FromStringAndSize((const char *)chain, 32);
    if (digest == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, line, digest);
    Py_DECREF(line);
    Py_DECREF(digest);
    return pair;
}

/* -- reading: check_lines ------------------------------------------------------------- */

#define SUFFIX_LEN (PREFIX_LEN + 64 + END_LEN)
#define MAX_DEPTH 32    /* deeper nesting: not ours to judge (the Python path reads it) */
#define MAX_KEYS 512    /* member names held at once over all open objects */
#define MAX_NUMBER 1000 /* longer number tokens: the Python path (int digit limits) */

/* 1 if the JSON text p[0:n] names no member twice in any object, within what this scan
   judges: member names without a backslash (raw bytes equal exactly when the names are
   equal), nesting to MAX_DEPTH, MAX_KEYS names, numbers to MAX_NUMBER characters.
   0 for a repeat and for anything else: the caller then reads the line the Python way,
   which words the problem or takes the line. The text is assumed to be JSON (the
   caller's msgspec decode of the same bytes must succeed before the line is taken), so
   a string is all bytes up to an unescaped quote and a string right after '{' or an
   object's ',' is a member name. It also asks the text to be one object whose brackets
   close exactly at its last byte, which makes check_lines' array of such lines hold
   them one element each once msgspec accepts it as JSON. */
static int
unique_members(const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *key_at[MAX_KEYS];
    Py_ssize_t key_len[MAX_KEYS];
    int key_base[MAX_DEPTH + 1];
    char is_object[MAX_DEPTH + 1];
    int depth = 0, keys = 0, expect_key = 0;
    is_object[0] = 0;
    if (n < 2 || p[0] != '{') {
        return 0; /* one object, from the first byte to the last (see check_lines) */
    }
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"') {
            Py_ssize_t start = ++i;
            int escaped = 0;
            for (;;) {
                while (i + 8 <= n) { /* 8 bytes at a time while none is '"' or '\\' */
                    uint64_t w, q, b, hit;
                    memcpy(&w, p + i, 8);
                    q = w ^ 0x2222222222222222ULL;
                    b = w ^ 0x5c5c5c5c5c5c5c5cULL;
                    hit = (((q - 0x0101010101010101ULL) & ~q) | ((b - 0x0101010101010101ULL) & ~b))
                          & 0x8080808080808080ULL;
                    if (hit) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                        /* the lowest flagged byte is a true one (a borrow only runs upwards) */
                        i += __builtin_ctzll(hit) >> 3;
#endif
                        break;
                    }
                    i += 8;
                }
                if (i >= n) {
                    return 0;
                }
                if (p[i] == '"') {
                    break;
                }
                if (p[i] == '\\') {
                    escaped = 1;
                    i += 2;
                }
                else {
                    i++;
                }
            }
            if (expect_key) {
                Py_ssize_t len = i - start;
                if (escaped || keys >= MAX_KEYS) {
                    return 0;
                }
                for (int k = key_base[depth]; k < keys; k++) {
                    if (key_len[k] == len && memcmp(key_at[k], p + start, (size_t)len) == 0) {
                        return 0;
                    }
                }
                key_at[keys] = p + start;
                key_len[keys++] = len;
                expect_key = 0;
            }
            i++;
            continue;
        }
        switch (c) {
        case '{':
        case '[':
            if (depth >= MAX_DEPTH) {
                return 0;
            }
            depth++;
            is_object[depth] = (c == '{');
            key_base[depth] = keys;
            expect_key = (c == '{');
            break;
        case '}':
        case ']':
            if (depth == 0 || is_object[depth] != (c == '}')) {
                return 0;
            }
            keys = key_base[depth];
            depth--;
            expect_key = 0;
            if (depth == 0 && i != n - 1) {
                return 0; /* the line's object ends before the line does */
            }
            break;
        case ',':
            expect_key = is_object[depth];
            break;
        case '-':
        case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9': {
            Py_ssize_t start = i;
            while (i < n && ((p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '+'
                             || p[i] == '.' || p[i] == 'e' || p[i] == 'E')) {
                i++;
            }
            if (i - start > MAX_NUMBER) {
                return 0;
            }
            continue;
        }
        default:
            break;
        }
        i++;
    }
    return depth == 0;
}

/* 1 if data[start:newline] (newline at data[newline]) is a journal line whose stored
   chain is sha256(prev || its event bytes) and which names no member twice; its chain
   into out. 0 otherwise (the Python read_entry words why, or takes it). */
static int
check_line(const unsigned char *line, Py_ssize_t len, const unsigned char *prev,
           Py_ssize_t prev_len, unsigned char *out)
{
    /* len counts the newline */
    if (len <= SUFFIX_LEN + 1 || memcmp(line + len - SUFFIX_LEN, PREFIX, PREFIX_LEN) != 0
        || memcmp(line + len - END_LEN, "\"}\n", END_LEN) != 0) {
        return 0;
    }
    static const unsigned char brace = '}';
    SHA256_CTX c;
    if (!SHA256_Init(&c) || !SHA256_Update(&c, prev, (size_t)prev_len)
        || !SHA256_Update(&c, line, (size_t)(len - SUFFIX_LEN))
        || !SHA256_Update(&c, &brace, 1) || !SHA256_Final(out, &c)) {
        return 0;
    }
    const unsigned char *hex = line + len - 64 - END_LEN;
    for (int i = 0; i < 32; i++) {
        if (hex[2 * i] != (unsigned char)HEX[out[i] >> 4]
            || hex[2 * i + 1] != (unsigned char)HEX[out[i] & 15]) {
            return 0;
        }
    }
    return unique_members(line, len - 1);
}

/* check_lines(data, start, prev_chain, limit) -> (stop, chains, array)

   The whole lines of data[start:] (at most limit of them; limit < 0: all) that
   journal/lines.py's read_entry would take, in order, up to the first it might not:
   stop is where that one starts (or the end of the last line taken), chains their
   chain values, array the lines as one JSON array ("[" line "," line ... "]") for the
   caller to decode in one call (its decode and seq checks come before it takes them).
   The hashing and the member scan run without the GIL (a projector thread beside the
   recorder); SHA256_* (deprecated in OpenSSL 3, not removed) need no shared context. */
static PyObject *
check_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "check_lines(data, start, prev_chain, limit)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[3]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer buf, prev;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &prev, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *result = NULL, *chains = NULL, *array = NULL;
    unsigned char *digests = NULL;
    if (start < 0 || start > buf.len) {
        PyErr_SetString(PyExc_ValueError, "start outside the data");
        goto done;
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t most = 0; /* whole lines after start, up to limit */
    for (const unsigned char *p = data + start, *stop = data + buf.len;
         (limit < 0 || most < limit) && (p = memchr(p, '\n', (size_t)(stop - p))) != NULL;
         p++) {
        most++;
    }
    digests = PyMem_Malloc(32 * (size_t)(most + 1));
    if (digests == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t taken = 0, pos = start;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *chain = prev.buf;
    Py_ssize_t chain_len = prev.len;
    while (taken < most) {
        const unsigned char *nl = memchr(data + pos, '\n', (size_t)(buf.len - pos));
        Py_ssize_t end = nl - data + 1;
        if (!check_line(data + pos, end - pos, chain, chain_len, digests + 32 * taken)) {
            break;
        }
        chain = digests + 32 * taken++;
        chain_len = 32;
        pos = end;
    }
    Py_END_ALLOW_THREADS
    chains = PyList_New(taken);
    if (chains == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < taken; i++) {
        PyObject *digest = PyBytes_FromStringAndSize((const char *)digests + 32 * i, 32);
        if (digest == NULL) {
            goto done;
        }
        PyList_SET_ITEM(chains, i, digest);
    }
    /* the lines with a ',' for each newline but the last: "[" l1 "," l2 ... "]" */
    array = PyBytes_FromStringAndSize(NULL, pos - start + 2);
    if (array == NULL) {
        goto done;
    }
    char *out = PyBytes_AS_STRING(array);
    out[0] = '[';
    memcpy(out + 1, data + start, (size_t)(pos - start));
    for (char *p = out + 1, *stop = out + 1 + (pos - start);
         (p = memchr(p, '\n', (size_t)(stop - p))) != NULL; p++) {
        *p = ','; /* a newline ends each taken line and occurs nowhere else in it */
    }
    out[pos - start] = taken ? '\n' : '[';
    out[pos - start + 1] = ']';
    result = Py_BuildValue("(nOO)", pos, chains, array);
done:
    Py_XDECREF(chains);
    Py_XDECREF(array);
    PyMem_Free(digests);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&prev);
    return result;
}

static PyMethodDef methods[] = {
    {"seal", (PyCFunction)(void (*)(void))seal, METH_FASTCALL,
     "seal(event_bytes, prev_chain) -> (journal line, chain), as journal.lines.seal."},
    {"check_lines", (PyCFunction)(void (*)(void))check_lines, METH_FASTCALL,
     "check_lines(data, start, prev_chain, limit) -> (stop, chains, array); see the source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_seal_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__seal_accel(void)
{
    if (sha256_fetch() < 0) {
        return NULL;
    }
    return PyModule_Create(&module);
}
