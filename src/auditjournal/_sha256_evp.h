/* The SHA-256 of the optional C modules that hash with one shared OpenSSL EVP context
   (journal/_seal_accel.c, fs/_digest_accel.c, payloads/_window_accel.c), each compiled
   on its own: one definition of how it is fetched at import, included by each. The
   shared context is used under the GIL only (where a module lets the GIL go while it
   hashes, it hashes with a context of its own). */
#ifndef AUDITJOURNAL_SHA256_EVP_H
#define AUDITJOURNAL_SHA256_EVP_H

#include <Python.h>
#include <openssl/evp.h>

static EVP_MD *sha256_md = NULL;
static EVP_MD_CTX *shared_ctx = NULL;

/* At the module's import: 0, or -1 with ImportError set (libcrypto without SHA-256). */
static int
sha256_fetch(void)
{
    if (sha256_md == NULL) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        shared_ctx = EVP_MD_CTX_new();
        if (sha256_md == NULL || shared_ctx == NULL) {
            PyErr_SetString(PyExc_ImportError, "libcrypto has no SHA-256");
            return -1;
        }
    }
    return 0;
}

#endif
