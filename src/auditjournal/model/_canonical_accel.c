/* The recorder's hot-path checks, compiled (optional build): the fast path of
   auditjournal.model.canonical's walk, and of the secret filter's.

   plain(value, depth) is True when value needs no conversion and no rejection before
   msgspec encodes it: str, bool, None, an int within +-(2**53 - 1), a float msgspec
   writes as ECMAScript does (1e-4 <= |x| < 1e16, not integral), and dicts (str keys)
   and lists of those, exact types only, nested less than MAX_DEPTH levels counting
   from depth. False means "not known plain": the Python walk then converts the value
   or names what is wrong with it. Nothing here runs Python code, so the borrowed
   references of the walk stay valid. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#define MAX_SAFE_INTEGER 9007199254740991LL
#define MAX_DEPTH 512

static int
is_plain(PyObject *o, int depth)
{
    if (PyUnicode_CheckExact(o) || o == Py_None || o == Py_True || o == Py_False) {
        return 1;
    }
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            return 0;
        }
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return v >= -MAX_SAFE_INTEGER && v <= MAX_SAFE_INTEGER;
    }
    if (PyFloat_CheckExact(o)) {
        double v = PyFloat_AS_DOUBLE(o);
        double a = fabs(v);
        return a >= 1e-4 && a < 1e16 && floor(v) != v;
    }
    if (depth >= MAX_DEPTH) {
        return 0;
    }
    if (PyDict_CheckExact(o)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(o, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key) || !is_plain(item, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (PyList_CheckExact(o)) {
        Py_ssize_t n = PyList_GET_SIZE(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!is_plain(PyList_GET_ITEM(o, i), depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* The (value, depth) arguments of plain() and normalized(): 1 and *depth when the depth
   is one to check here, 0 when it is a limit the walk handles (the C stack stays short),
   -1 (TypeError set) when the arguments are not (value, int). */
static int
depth_arg(PyObject *const *args, Py_ssize_t nargs, const char *usage, int *depth)
{
    if (nargs != 2 || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    int overflow = 0;
    long value = PyLong_AsLongAndOverflow(args[1], &overflow);
    if (overflow || value < 0 || value > MAX_DEPTH) {
        return 0;
    }
    *depth = (int)value;
    return 1;
}

static PyObject *
plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int depth = 0;
    int rc = depth_arg(args, nargs, "plain(value, depth: int)", &depth);
    if (rc <= 0) {
        return rc < 0 ? NULL : Py_NewRef(Py_False);
    }
    return PyBool_FromLong(is_plain(args[0], depth));
}

/* normalized(value, depth): the walk's result where it is cheap to know -- value itself
   when plain (as above), or a copy in which each integral float within +-(2**53 - 1)
   is the int the walk makes of it (ECMAScript writes 3.0 as 3; ~10 % of the payloads of
   a pipeline with prices and amounts hold one) -- else the module's WALK marker: the
   Python walk converts the value or names what is wrong with it. Copies are made as the
   walk makes them (dict(o) / list(o), the changed items set), only where something
   changed. Nothing here runs Python code (exact dicts, exact str keys). */
static PyObject *WALK; /* the marker: "take the walk" */

static PyObject *normalized_of(PyObject *o, int depth);

/* An item's normalized value: 0 when it is the item itself, 1 when *got is a new value
   for it, -1 when the caller stops and returns *got (WALK, or NULL with an error set) */
static int
normalized_item(PyObject *item, int depth, PyObject **got)
{
    *got = normalized_of(item, depth);
    if (*got == item) {
        Py_DECREF(*got);
        return 0;
    }
    return *got == NULL || *got == WALK ? -1 : 1;
}

static PyObject *
normalized_of(PyObject *o, int depth)
{
    if (PyFloat_CheckExact(o)) {
        double v = PyFloat_AS_DOUBLE(o);
        double a = fabs(v);
        if (floor(v) != v) { /* also NaN */
            return Py_NewRef(a >= 1e-4 && a < 1e16 ? o : WALK);
        }
        return a <= (double)MAX_SAFE_INTEGER ? PyLong_FromDouble(v) : Py_NewRef(WALK);
    }
    if (!PyDict_CheckExact(o) && !PyList_CheckExact(o)) {
        return Py_NewRef(is_plain(o, depth) ? o : WALK); /* a scalar, or not JSON's */
    }
    if (depth >= MAX_DEPTH) {
        return Py_NewRef(WALK);
    }
    PyObject *copy = NULL;
    if (PyDict_CheckExact(o)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(o, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) {
                Py_XDECREF(copy);
                return Py_NewRef(WALK);
            }
            PyObject *got;
            int changed = normalized_item(item, depth + 1, &got);
            if (changed <= 0) {
                if (changed == 0) {
                    continue;
                }
                Py_XDECREF(copy);
                return got;
            }
            if (copy == NULL && (copy = PyDict_Copy(o)) == NULL) {
                Py_DECREF(got);
                return NULL;
            }
            int rc = PyDict_SetItem(copy, key, got);
            Py_DECREF(got);
            if (rc < 0) {
                Py_DECREF(copy);
                return NULL;
            }
        }
        return copy != NULL ? copy : Py_NewRef(o);
    }
    Py_ssize_t n = PyList_GET_SIZE(o);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(o, i), *got;
        int changed = normalized_item(item, depth + 1, &got);
        if (changed == 0) {
            continue;
        }
        if (changed < 0) {
            Py_XDECREF(copy);
            return got;
        }
        if (copy == NULL && (copy = PyList_GetSlice(o, 0, n)) == NULL) {
            Py_DECREF(got);
            return NULL;
        }
        PyList_SET_ITEM(copy, i, got); /* steals got; the copy's old item: */
        Py_DECREF(item);
    }
    return copy != NULL ? copy : Py_NewRef(o);
}

static PyObject *
normalized(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int depth = 0;
    int rc = depth_arg(args, nargs, "normalized(value, depth: int)", &depth);
    if (rc <= 0) {
        return rc < 0 ? NULL : Py_NewRef(WALK);
    }
    return normalized_of(args[0], depth);
}

/* The secret filter's fast path: 1 when nothing in o can hold a secret field, that is
   every dict (exact) has only exact-str keys found in `names` (names the filter has
   seen not to be secret) and every value is an exact scalar or such a dict, list or
   tuple, nested at most FILTER_DEPTH levels; 0 means "walk it in Python". Set lookups
   of exact str keys run no Python code. */
#define FILTER_DEPTH 200

static int
is_unfiltered(PyObject *o, PyObject *names, int depth)
{
    if (PyUnicode_CheckExact(o) || PyLong_CheckExact(o) || PyFloat_CheckExact(o)
        || o == Py_None || o == Py_True || o == Py_False) {
        return 1;
    }
    if (depth >= FILTER_DEPTH) {
        return 0;
    }
    if (PyDict_CheckExact(o)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(o, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) {
                return 0;
            }
            int known = PySet_Contains(names, key);
            if (known != 1) {
                if (known < 0) {
                    PyErr_Clear();
                }
                return 0;
            }
            if (!is_unfiltered(item, names, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!is_unfiltered(items[i], names, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

static PyObject *
unfiltered(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PySet_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "unfiltered(value, names: set)");
        return NULL;
    }
    return PyBool_FromLong(is_unfiltered(args[0], args[1], 0));
}

static PyMethodDef methods[] = {
    {"plain", (PyCFunction)(void (*)(void))plain, METH_FASTCALL,
     "plain(value, depth) -> True if the canonical walk would pass value unchanged."},
    {"normalized", (PyCFunction)(void (*)(void))normalized, METH_FASTCALL,
     "normalized(value, depth) -> the walk's result where cheap to know, else WALK."},
    {"unfiltered", (PyCFunction)(void (*)(void))unfiltered, METH_FASTCALL,
     "unfiltered(value, names) -> True if the secret filter would find nothing in value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_canonical_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__canonical_accel(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (WALK == NULL && (WALK = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "WALK", WALK) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
