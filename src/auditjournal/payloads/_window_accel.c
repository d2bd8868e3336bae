/* payloads/store.py's read of a payload from the read-ahead window, compiled (optional
   build, linked with libcrypto). A replay asks for ~50,000 payloads, nearly all already
   in the window; in Python the ref check, the compact index's probe, the header check
   and the re-hash cost ~2.5 us each, here ~0.7 (most of it the SHA-256 itself).

   in_window(ref, keys, values, mask, number, start, window) -> bytes | None

   ``ref``: the payload's ref; ``keys``/``values``/``mask``: the compact index's columns
   (packindex.py: uint32 digest prefix keys, uint64 values of pack number (10 bits) |
   data offset (28) | length (26)); ``number``/``start``/``window``: the window's pack,
   its offset in the pack and its bytes. Returns the payload's bytes when its ref is
   64 lowercase hex digits, the record after the last one served (see guess_at) or else
   the index's first candidate lies in the window, the record header there carries the
   ref's digest and the data hashes to it. Anything else --
   an invalid ref, no candidate, another pack, a record outside the window, a header of
   another payload, data that does not match, a big payload -- is None: the Python path
   then does it all again and says what is wrong (the same checks, so a damaged payload
   is refused either way). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <openssl/evp.h>

#include "../_sha256_evp.h"     /* sha256_md, shared_ctx, sha256_fetch() */
#include "../_payload_window.h" /* the capsule the record loop reads payloads through */


#define HEADER_SIZE 44 /* magic (4) | digest (32) | length (8), packs.py */
#define MAGIC "AJP1"    /* packs.MAGIC */
#define OFFSET_BITS 28
#define SIZE_BITS 26
#define BIG_PAYLOAD (64 * 1024) /* hashed by Python, with the GIL released */

/* Where the next record is likely to start: a replay asks for payloads mostly in the
   order they were stored, so the record after the last one served is tried first, without
   the index's probe (two cache misses in a big table, ~5 % of an export's time). Only a
   guess: what it finds is served only when its header names the ref's digest and its data
   hashes to it, as a record the index points to is; the pointer is compared, never read. */
static const PyObject *guess_window;
static Py_ssize_t guess_at = -1;

/* 1 and the data when the record at ``at`` in ``window`` is the payload of ``digest``
   (its header is a record's and names the digest, its data lies in the window, is not
   big and hashes to it); 0 when not; -1 on error */
static int
record_at(const unsigned char *window, Py_ssize_t window_len, long long at,
          const unsigned char *digest, const char **data_out, Py_ssize_t *size_out)
{
    if (at < 0 || at + HEADER_SIZE > (long long)window_len) {
        return 0;
    }
    const unsigned char *head = window + at;
    if (memcmp(head, MAGIC, 4) != 0 || memcmp(head + 4, digest, 32) != 0) {
        return 0;
    }
    uint64_t size = 0;
    for (int i = 7; i >= 0; i--) { /* little-endian, as struct "<Q" */
        size = size << 8 | head[36 + i];
    }
    if (size >= BIG_PAYLOAD || at + HEADER_SIZE + (long long)size > (long long)window_len) {
        return 0;
    }
    unsigned char check[32];
    unsigned int n = 0;
    if (!EVP_DigestInit_ex(shared_ctx, sha256_md, NULL)
        || (size && !EVP_DigestUpdate(shared_ctx, head + HEADER_SIZE, (size_t)size))
        || !EVP_DigestFinal_ex(shared_ctx, check, &n) || n != 32) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto SHA-256 failed");
        return -1;
    }
    if (memcmp(check, digest, 32) != 0) { /* damaged: the Python path says so */
        return 0;
    }
    *data_out = (const char *)head + HEADER_SIZE;
    *size_out = (Py_ssize_t)size;
    return 1;
}

/* The read itself (see _payload_window.h): ``items`` are keys, values, mask, number,
   start, window. 1 (found and checked), 0 (the Python path's to do) or -1 (error). */
static int
lookup(PyObject *const *items, const char *hex, Py_ssize_t len, const char **data_out,
       Py_ssize_t *size_out)
{
    static const signed char HEXVAL[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7,
        ['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
        ['e'] = 15, ['f'] = 16, /* value + 1; 0: not a lowercase hex digit */
    };
    if (len != 64) {
        return 0;
    }
    unsigned char digest[32];
    for (int i = 0; i < 32; i++) {
        int hi = HEXVAL[(unsigned char)hex[2 * i]], lo = HEXVAL[(unsigned char)hex[2 * i + 1]];
        if (!hi || !lo) {
            return 0;
        }
        digest[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    PyObject *window = items[5];
    if (!PyBytes_CheckExact(window)) { /* the store's are: their data stays where it is */
        PyErr_SetString(PyExc_TypeError, "the window must be bytes");
        return -1;
    }
    const unsigned char *wbuf = (const unsigned char *)PyBytes_AS_STRING(window);
    Py_ssize_t wlen = PyBytes_GET_SIZE(window);
    if (window == guess_window) { /* before the index's columns are even read */
        int guessed = record_at(wbuf, wlen, guess_at, digest, data_out, size_out);
        if (guessed != 0) {
            if (guessed == 1) {
                guess_at += HEADER_SIZE + *size_out;
            }
            return guessed;
        }
    }
    Py_ssize_t mask = PyLong_AsSsize_t(items[2]);
    long long number = PyLong_AsLongLong(items[3]);
    long long start = PyLong_AsLongLong(items[4]);
    if (PyErr_Occurred()) {
        return -1;
    }
    Py_buffer keys, values;
    if (PyObject_GetBuffer(items[0], &keys, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(items[1], &values, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&keys);
        return -1;
    }
    int rc = 0;
    Py_ssize_t slots = mask + 1;
    /* the columns must be the table's (a table grown meanwhile: the Python path) */
    if (mask < 0 || (slots & mask) || keys.len != 4 * slots || values.len != 8 * slots) {
        goto done;
    }
    uint32_t key;
    memcpy(&key, digest, 4); /* little-endian, as int.from_bytes(digest[:4], "little") */
#if PY_BIG_ENDIAN
    key = ((key & 0xff) << 24) | ((key & 0xff00) << 8) | ((key >> 8) & 0xff00) | (key >> 24);
#endif
    if (key == 0) {
        key = 1;
    }
    const uint32_t *k = (const uint32_t *)keys.buf;
    const uint64_t *v = (const uint64_t *)values.buf;
    Py_ssize_t slot = (Py_ssize_t)(key & (uint32_t)mask);
    uint64_t found = 0;
    int hit = 0;
    for (Py_ssize_t probes = 0; probes < slots; probes++) {
        uint32_t at = k[slot];
        if (at == 0) {
            break;
        }
        if (at == key) {
            found = v[slot];
            hit = 1;
            break;
        }
        slot = (slot + 1) & mask;
    }
    if (!hit) {
        goto done;
    }
    long long pack = (long long)(found >> (OFFSET_BITS + SIZE_BITS));
    long long offset = (long long)((found >> SIZE_BITS) & ((1ULL << OFFSET_BITS) - 1));
    long long size = (long long)(found & ((1ULL << SIZE_BITS) - 1));
    long long at = offset - start - HEADER_SIZE; /* where the record starts in the window */
    if (pack != number) {
        goto done;
    }
    rc = record_at(wbuf, wlen, at, digest, data_out, size_out);
    if (rc == 1 && *size_out != (Py_ssize_t)size) { /* the index and the header disagree */
        rc = 0;
    }
    if (rc == 1) {
        guess_window = window;
        guess_at = at + HEADER_SIZE + size;
    }
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&values);
    return rc;
}

static PyObject *
in_window(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "in_window(ref, keys, values, mask, number, start, window)");
        return NULL;
    }
    PyObject *ref = args[0];
    if (!PyUnicode_CheckExact(ref) || !PyUnicode_IS_ASCII(ref)) {
        Py_RETURN_NONE;
    }
    const char *data;
    Py_ssize_t size;
    int rc = lookup(args + 1, (const char *)PyUnicode_DATA(ref), PyUnicode_GET_LENGTH(ref),
                    &data, &size);
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(data, size);
}

/* insert_entries(raw, number, dat_size, keys, values, mask, room) -> (taken, why)

   CompactIndex.load's loop (packindex.py) over a pack index's entries (48 bytes each:
   digest, data offset, length, little-endian): each entry whose data lies within
   ``dat_size`` and whose location fits the bit fields goes into the table's columns
   (linear probing, as CompactIndex._insert), at most ``room`` of them (the table never
   grows here). Stops at the first entry it does not take: ``why`` 1 = its data is not
   flushed yet, 2 = it does not fit the bit fields, 3 = no room left, 0 = all taken.
   ``taken`` counts the entries inserted. */
static PyObject *
insert_entries(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "insert_entries(raw, number, dat_size, keys, values, mask, room)");
        return NULL;
    }
    long long number = PyLong_AsLongLong(args[1]);
    long long dat_size = PyLong_AsLongLong(args[2]);
    Py_ssize_t mask = PyLong_AsSsize_t(args[5]);
    Py_ssize_t room = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer raw, keys, values;
    if (PyObject_GetBuffer(args[0], &raw, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &keys, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&raw);
        return NULL;
    }
    if (PyObject_GetBuffer(args[4], &values, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&raw);
        PyBuffer_Release(&keys);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t slots = mask + 1;
    if (mask < 0 || (slots & mask) || keys.len != 4 * slots || values.len != 8 * slots
        || raw.len % 48 || number < 0) {
        PyErr_SetString(PyExc_ValueError, "insert_entries: not a table's columns or entries");
        goto done;
    }
    uint32_t *k = (uint32_t *)keys.buf;
    uint64_t *v = (uint64_t *)values.buf;
    const unsigned char *at = (const unsigned char *)raw.buf;
    Py_ssize_t count = raw.len / 48, taken = 0;
    int why = 0;
    for (; taken < count; taken++, at += 48) {
        uint64_t offset = 0, size = 0;
        for (int i = 7; i >= 0; i--) { /* "<32sQQ" */
            offset = offset << 8 | at[32 + i];
            size = size << 8 | at[40 + i];
        }
        if (offset + size < offset || offset + size > (uint64_t)(dat_size < 0 ? 0 : dat_size)) {
            why = 1;
            break;
        }
        if (number >= (1LL << 10) || offset >= (1ULL << OFFSET_BITS) || size >= (1ULL << SIZE_BITS)) {
            why = 2;
            break;
        }
        if (taken >= room) {
            why = 3;
            break;
        }
        uint32_t key = (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16
                       | (uint32_t)at[3] << 24;
        if (key == 0) {
            key = 1;
        }
        Py_ssize_t slot = (Py_ssize_t)(key & (uint32_t)mask);
        while (k[slot]) {
            slot = (slot + 1) & mask;
        }
        k[slot] = key;
        v[slot] = (uint64_t)number << (OFFSET_BITS + SIZE_BITS) | offset << SIZE_BITS | size;
    }
    result = Py_BuildValue("(ni)", taken, why);
done:
    PyBuffer_Release(&raw);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&values);
    return result;
}

/* rehash(old_keys, old_values, keys, values, mask) -> None

   CompactIndex._grow's loop (packindex.py): every used slot of the old columns, in
   slot order, into the new (empty) ones by linear probing, as CompactIndex._insert.
   The projector process's table grows as the recorder's payloads arrive: in Python
   each growth re-inserted every entry (~0.6 us an event over a live run). */
static PyObject *
rehash(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "rehash(old_keys, old_values, keys, values, mask)");
        return NULL;
    }
    Py_ssize_t mask = PyLong_AsSsize_t(args[4]);
    if (mask == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer bufs[4];
    int got = 0;
    PyObject *result = NULL;
    for (; got < 4; got++) {
        if (PyObject_GetBuffer(args[got], &bufs[got], got < 2 ? PyBUF_SIMPLE : PyBUF_WRITABLE)
            < 0) {
            goto done;
        }
    }
    Py_ssize_t slots = mask + 1, old = bufs[0].len / 4;
    if (mask < 0 || (slots & mask) || bufs[2].len != 4 * slots || bufs[3].len != 8 * slots
        || bufs[0].len % 4 || bufs[1].len != 8 * old || old > slots) {
        PyErr_SetString(PyExc_ValueError, "rehash: not a table's columns");
        goto done;
    }
    const uint32_t *ok = (const uint32_t *)bufs[0].buf;
    const uint64_t *ov = (const uint64_t *)bufs[1].buf;
    uint32_t *k = (uint32_t *)bufs[2].buf;
    uint64_t *v = (uint64_t *)bufs[3].buf;
    for (Py_ssize_t i = 0; i < old; i++) {
        uint32_t key = ok[i];
        if (!key) {
            continue;
        }
        Py_ssize_t slot = (Py_ssize_t)(key & (uint32_t)mask);
        while (k[slot]) { /* ends: no more entries than old slots, no more than new ones */
            slot = (slot + 1) & mask;
        }
        k[slot] = key;
        v[slot] = ov[i];
    }
    result = Py_NewRef(Py_None);
done:
    while (got-- > 0) {
        PyBuffer_Release(&bufs[got]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"rehash", (PyCFunction)(void (*)(void))rehash, METH_FASTCALL,
     "rehash(old_keys, old_values, keys, values, mask): the old columns' entries into the "
     "new ones (packindex.CompactIndex._grow)."},
    {"insert_entries", (PyCFunction)(void (*)(void))insert_entries, METH_FASTCALL,
     "insert_entries(raw, number, dat_size, keys, values, mask, room) -> (taken, why): "
     "a pack index's entries into the compact table's columns (packindex.CompactIndex.load)."},
    {"in_window", (PyCFunction)(void (*)(void))in_window, METH_FASTCALL,
     "in_window(ref, keys, values, mask, number, start, window) -> the payload's bytes "
     "from the read-ahead window, checked, or None (the Python path then decides)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_window_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__window_accel(void)
{
    if (sha256_fetch() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    /* the record loop's way in (_payload_window.h) */
    PyObject *capsule = PyCapsule_New((void *)(payload_window_fn)lookup,
                                      PAYLOAD_WINDOW_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(m, "lookup", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
