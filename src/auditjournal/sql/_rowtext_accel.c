/* The SQL projector's datetime text for SQLite, compiled (optional build).

   datetime_text(value) is value.isoformat(" ", "microseconds")[:26], the text
   SQLAlchemy's SQLite DateTime processor writes ("YYYY-MM-DD HH:MM:SS.ffffff", the
   zone dropped), for a datetime.datetime of exactly that type; for anything else it
   returns None and the Python code decides (the processor, or its error). isoformat
   asks the tzinfo for its offset (a call, and a string it then cuts off): about a
   microsecond per value on a tz-aware datetime, for text made of the datetime's own
   fields, which is what this reads. Nothing here runs Python code. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

static void
digits(char *at, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

static PyObject *
datetime_text(PyObject *module, PyObject *value)
{
    (void)module;
    if (!PyDateTime_CheckExact(value)) {
        Py_RETURN_NONE;
    }
    char text[26];
    /* the fields of a datetime are always in range (year 1..9999): fixed widths */
    digits(text, PyDateTime_GET_YEAR(value), 4);
    text[4] = '-';
    digits(text + 5, PyDateTime_GET_MONTH(value), 2);
    text[7] = '-';
    digits(text + 8, PyDateTime_GET_DAY(value), 2);
    text[10] = ' ';
    digits(text + 11, PyDateTime_DATE_GET_HOUR(value), 2);
    text[13] = ':';
    digits(text + 14, PyDateTime_DATE_GET_MINUTE(value), 2);
    text[16] = ':';
    digits(text + 17, PyDateTime_DATE_GET_SECOND(value), 2);
    text[19] = '.';
    digits(text + 20, PyDateTime_DATE_GET_MICROSECOND(value), 6);
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, 26);
}

static PyMethodDef methods[] = {
    {"datetime_text", datetime_text, METH_O,
     "value.isoformat(' ', 'microseconds')[:26] for an exact datetime, else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowtext_accel", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__rowtext_accel(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
