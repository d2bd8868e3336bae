/* fs/digests.py's SHA-256 helpers compiled (optional build, linked with libcrypto): one
   digest of a buffer, the RFC 6962 leaf hashes of many records, and the node hashes of
   a Merkle level -- the same bytes as the Python functions (a property test).

   Why: the export hashes every record (its Merkle leaf), every pair of nodes and every
   inlined payload (re-checked against its ref). hashlib fetches the digest for every
   hash object it creates (~290 ns with OpenSSL 3), about as much as hashing a record;
   here the digest is fetched once, at import, and a batch costs one call.

   A shared context serves small inputs under the GIL (never released while it is in
   use); an input of BIG_INPUT bytes or more gets a context of its own and is hashed
   with the GIL released, as hashlib does, so other threads (a recorder) run meanwhile. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

#include "../_sha256_evp.h" /* sha256_md, shared_ctx, sha256_fetch() */


#define BIG_INPUT (64 * 1024)

static int
digest_with(EVP_MD_CTX *ctx, unsigned char prefix, int with_prefix, const void *a,
            size_t alen, const void *b, size_t blen, unsigned char *out)
{
    unsigned int n = 0;
    if (!EVP_DigestInit_ex(ctx, sha256_md, NULL)
        || (with_prefix && !EVP_DigestUpdate(ctx, &prefix, 1))
        || (alen && !EVP_DigestUpdate(ctx, a, alen))
        || (blen && !EVP_DigestUpdate(ctx, b, blen))
        || !EVP_DigestFinal_ex(ctx, out, &n) || n != 32) {
        return -1;
    }
    return 0;
}

static PyObject *
failed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "libcrypto SHA-256 failed");
    return NULL;
}

/* sha256(data) -> the 32-byte digest of any bytes-like object. */
static PyObject *
sha256(PyObject *module, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    unsigned char out[32];
    int rc;
    if (data.len >= BIG_INPUT) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL) {
            PyBuffer_Release(&data);
            return PyErr_NoMemory();
        }
        Py_BEGIN_ALLOW_THREADS
        rc = digest_with(ctx, 0, 0, data.buf, (size_t)data.len, NULL, 0, out);
        Py_END_ALLOW_THREADS
        EVP_MD_CTX_free(ctx);
    }
    else {
        rc = digest_with(shared_ctx, 0, 0, data.buf, (size_t)data.len, NULL, 0, out);
    }
    PyBuffer_Release(&data);
    if (rc < 0) {
        return failed();
    }
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* leaf_hashes(records) -> sha256(0x00 || record) of each record of a list or tuple of
   bytes-like objects, back to back (32 bytes each). */
static PyObject *
leaf_hashes(PyObject *module, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "leaf_hashes() takes a list of records");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    if (count > PY_SSIZE_T_MAX / 32) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * 32);
    if (result == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        /* the list may not change under us: nothing here runs Python code, but a
           buffer export could (a custom object); re-read the size each time */
        if (i >= PySequence_Fast_GET_SIZE(seq)) {
            PyErr_SetString(PyExc_RuntimeError, "the records changed while hashed");
            goto error;
        }
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(item);
        Py_buffer data;
        int got = PyObject_GetBuffer(item, &data, PyBUF_SIMPLE);
        Py_DECREF(item);
        if (got < 0) {
            goto error;
        }
        int rc = digest_with(shared_ctx, 0, 1, data.buf, (size_t)data.len, NULL, 0,
                             out + 32 * i);
        PyBuffer_Release(&data);
        if (rc < 0) {
            failed();
            goto error;
        }
    }
    Py_DECREF(seq);
    return result;
error:
    Py_DECREF(seq);
    Py_DECREF(result);
    return NULL;
}

/* node_hashes(level) -> sha256(0x01 || left || right) of each pair of 32-byte hashes
   given back to back (64 bytes a pair), back to back. */
static PyObject *
node_hashes(PyObject *module, PyObject *arg)
{
    Py_buffer level;
    if (PyObject_GetBuffer(arg, &level, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (level.len % 64) {
        PyBuffer_Release(&level);
        PyErr_SetString(PyExc_ValueError, "node_hashes() takes pairs of 32-byte hashes");
        return NULL;
    }
    Py_ssize_t pairs = level.len / 64;
    PyObject *result = PyBytes_FromStringAndSize(NULL, pairs * 32);
    if (result == NULL) {
        PyBuffer_Release(&level);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *in = (const unsigned char *)level.buf;
    for (Py_ssize_t i = 0; i < pairs; i++) {
        if (digest_with(shared_ctx, 1, 1, in + 64 * i, 64, NULL, 0, out + 32 * i) < 0) {
            PyBuffer_Release(&level);
            Py_DECREF(result);
            return failed();
        }
    }
    PyBuffer_Release(&level);
    return result;
}

static PyMethodDef methods[] = {
    {"sha256", sha256, METH_O, "sha256(data) -> its 32-byte SHA-256 digest."},
    {"leaf_hashes", leaf_hashes, METH_O,
     "leaf_hashes(records) -> the RFC 6962 leaf hash of each record, back to back."},
    {"node_hashes", node_hashes, METH_O,
     "node_hashes(level) -> the RFC 6962 node hash of each pair of hashes, back to back."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_digest_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__digest_accel(void)
{
    if (sha256_fetch() < 0) {
        return NULL;
    }
    return PyModule_Create(&module);
}
