/* journal/lines.py's seal() compiled (optional build, linked with libcrypto): the
   journal line of an event's bytes and its chain value, sha256(prev_chain || event).
   The line is the event's JSON object without its closing brace, then
   ,"chain":"<64 lowercase hex>"} and a newline; the same bytes as the Python seal (a
   property test). SHA-256 comes from libcrypto's EVP interface with the digest
   fetched once, at import: hashlib fetches it for every hash object (~290 ns with
   OpenSSL 3), which is most of the cost of hashing a ~500-byte line. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

static EVP_MD *sha256_md = NULL;
static EVP_MD_CTX *shared_ctx = NULL; /* used under the GIL only (never released here) */

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

static PyMethodDef methods[] = {
    {"seal", (PyCFunction)(void (*)(void))seal, METH_FASTCALL,
     "seal(event_bytes, prev_chain) -> (journal line, chain), as journal.lines.seal."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_seal_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__seal_accel(void)
{
    if (sha256_md == NULL) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        shared_ctx = EVP_MD_CTX_new();
        if (sha256_md == NULL || shared_ctx == NULL) {
            PyErr_SetString(PyExc_ImportError, "libcrypto has no SHA-256");
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
