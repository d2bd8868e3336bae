/* How the compiled record loop (model/_records_accel.c) reads a payload straight from
   the payload store's read-ahead window (payloads/_window_accel.c), without a Python
   call per payload: the store hands out a "window source", a tuple

       (capsule, keys, values, mask, number, start, window)

   whose capsule (named PAYLOAD_WINDOW_CAPSULE) holds a payload_window_fn and whose
   other items are what that function reads (PayloadStore.window_source()). The record
   loop knows nothing of packs: it calls the function with the tuple's items after the
   capsule. A window source stays true after the store moves on (written pack bytes never
   change, a table only gains entries), so a stale one only finds less. */
#ifndef AUDITJOURNAL_PAYLOAD_WINDOW_H
#define AUDITJOURNAL_PAYLOAD_WINDOW_H

#include <Python.h>

#define PAYLOAD_WINDOW_CAPSULE "auditjournal.payloads._window_accel.lookup"

/* 1: the payload of the ref (``hex``: ``len`` bytes) is *data .. *data + *size, hashed
   and found equal to the ref (data lies in items[5], a bytes object the caller keeps
   alive); 0: not served here (the caller asks the store's get(), which decides and says
   what is wrong); -1: an exception is set. ``items``: the source's 6 items after the
   capsule. */
typedef int (*payload_window_fn)(PyObject *const *items, const char *hex, Py_ssize_t len,
                                 const char **data, Py_ssize_t *size);

#endif
