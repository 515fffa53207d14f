/*
 * The hot path of MetricLogger.log in C (optional: ml_dash.metrics falls back to
 * the pure-Python implementation when this module is not built).
 *
 * log(**fields) builds the fields dict presized for one more key and checks
 * that the row is plain: at most NARROW_ROW_FIELDS fields, ASCII names of 1 to
 * MAX_NAME_CHARS characters, values that are floats, bools, None, ints that fit
 * in 64 bits, or ASCII strings of at most SMALL_STR_CHARS characters in all (the
 * constants of ml_dash/agent/values.py: such a row is covered by its stream's
 * fixed memory estimate). Any other row goes to the Python method
 * _check_fields, which checks it against the value domain (raising TypeError or
 * ValueError), converts numpy values, and returns what to append: the dict, a
 * SizedRow counted at its own size, or None when the memory bound dropped it.
 * Then the call time is stored as "_ts" (a field of that name is refused), the
 * row is appended to the stream's deque, and the deque's length is compared
 * with stream.wake_at; past it, the Python method _on_threshold(row) runs (wake
 * the agent, memory bound, closed run). Everything but that straight line is
 * Python code, called from here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *append;   /* bound deque.append of the stream's queue */
    PyObject *queue;    /* the deque itself, for its length */
    PyObject *stream;   /* the agent's RowStream: wake_at lives there */
} FastLogger;

static PyObject *str_ts, *str_wake_at, *str_check_fields, *str_on_threshold, *str_log_slow;

/* ml_dash/agent/values.py: NARROW_ROW_FIELDS, MAX_NAME_CHARS, SMALL_STR_CHARS */
#define NARROW_ROW_FIELDS 32
#define MAX_NAME_CHARS 256
#define SMALL_STR_CHARS 64

static int
is_short_ascii(PyObject *text, Py_ssize_t min_len, Py_ssize_t max_len)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    return PyUnicode_IS_ASCII(text) && length >= min_len && length <= max_len;
}

/* Whether a value is plain; ASCII string lengths are added to *chars (the row's limit is on their sum). */
static int
is_plain(PyObject *value, Py_ssize_t *chars)
{
    if (PyFloat_CheckExact(value) || value == Py_None || value == Py_True || value == Py_False) {
        return 1;
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (number == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return overflow == 0;
    }
    if (PyUnicode_CheckExact(value) && is_short_ascii(value, 0, SMALL_STR_CHARS)) {
        *chars += PyUnicode_GET_LENGTH(value);
        return *chars <= SMALL_STR_CHARS;
    }
    return 0;
}

static PyObject *
now_as_float(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
}

static PyObject *
FastLogger_log(FastLogger *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs != 0 || self->append == NULL) {
        /* a positional dict of fields, or an unbound logger: the Python path handles it */
        PyObject *method = PyObject_GetAttr((PyObject *)self, str_log_slow);
        if (method == NULL) {
            return NULL;
        }
        PyObject *result = PyObject_Vectorcall(method, args, nargs, kwnames);
        Py_DECREF(method);
        return result;
    }
#if PY_VERSION_HEX < 0x030E0000
    PyObject *fields = _PyDict_NewPresized(nkw + 1);  /* room for _ts: no resize */
#else
    PyObject *fields = PyDict_New();
#endif
    if (fields == NULL) {
        return NULL;
    }
    int all_plain = nkw <= NARROW_ROW_FIELDS;
    Py_ssize_t chars = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if (all_plain && !(is_plain(value, &chars) && is_short_ascii(key, 1, MAX_NAME_CHARS))) {
            all_plain = 0;
        }
        if (PyDict_SetItem(fields, key, value) < 0) {
            goto error;
        }
    }
    PyObject *row = fields;  /* what is appended: the dict, or what _check_fields returns */
    Py_INCREF(row);
    if (!all_plain) {
        Py_DECREF(row);
        row = PyObject_CallMethodOneArg((PyObject *)self, str_check_fields, fields);
        if (row == NULL) {
            goto error;
        }
        if (row == Py_None) {  /* dropped by the memory bound (counted there) */
            Py_DECREF(fields);
            return row;
        }
    }
    PyObject *stamp = now_as_float();
    if (stamp == NULL) {
        Py_DECREF(row);
        goto error;
    }
    int failed = PyDict_SetItem(fields, str_ts, stamp);
    Py_DECREF(stamp);
    if (failed == 0 && PyDict_GET_SIZE(fields) == nkw) {  /* "_ts" was one of the fields */
        PyErr_SetString(PyExc_ValueError,
                        "metric field name '_ts' is reserved: ml-dash records the logging time in it");
        failed = -1;
    }
    Py_DECREF(fields);
    if (failed < 0) {
        Py_DECREF(row);
        return NULL;
    }
    PyObject *appended = PyObject_CallOneArg(self->append, row);
    if (appended == NULL) {
        Py_DECREF(row);
        return NULL;
    }
    Py_DECREF(appended);
    Py_ssize_t length = PyObject_Size(self->queue);
    PyObject *wake_at_obj = PyObject_GetAttr(self->stream, str_wake_at);
    if (length < 0 || wake_at_obj == NULL) {
        Py_XDECREF(wake_at_obj);
        Py_DECREF(row);
        return NULL;
    }
    Py_ssize_t wake_at = PyLong_AsSsize_t(wake_at_obj);
    Py_DECREF(wake_at_obj);
    if (wake_at == -1 && PyErr_Occurred()) {
        Py_DECREF(row);
        return NULL;
    }
    if (length >= wake_at) {
        PyObject *result = PyObject_CallMethodOneArg((PyObject *)self, str_on_threshold, row);
        Py_DECREF(row);
        return result;
    }
    Py_DECREF(row);
    Py_RETURN_NONE;
error:
    Py_DECREF(fields);
    return NULL;
}

static PyObject *
FastLogger_bind_queue(FastLogger *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_bind_queue(queue, stream)");
        return NULL;
    }
    PyObject *append = PyObject_GetAttrString(args[0], "append");
    if (append == NULL) {
        return NULL;
    }
    Py_XSETREF(self->append, append);
    Py_INCREF(args[0]);
    Py_XSETREF(self->queue, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(self->stream, args[1]);
    Py_RETURN_NONE;
}

static int
FastLogger_traverse(FastLogger *self, visitproc visit, void *arg)
{
    Py_VISIT(self->append);
    Py_VISIT(self->queue);
    Py_VISIT(self->stream);
    return 0;
}

static int
FastLogger_clear(FastLogger *self)
{
    Py_CLEAR(self->append);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->stream);
    return 0;
}

static void
FastLogger_dealloc(FastLogger *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FastLogger_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);  /* heap type: each instance holds a reference to it */
}

static PyMethodDef FastLogger_methods[] = {
    {"log", (PyCFunction)(void (*)(void))FastLogger_log, METH_FASTCALL | METH_KEYWORDS,
     "log(**fields): append one row (see ml_dash.metrics.MetricLogger.log)."},
    {"_bind_queue", (PyCFunction)(void (*)(void))FastLogger_bind_queue, METH_FASTCALL,
     "_bind_queue(queue, stream): the deque to append to and the stream holding wake_at."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot FastLogger_slots[] = {
    {Py_tp_doc, "C hot path of MetricLogger (subclassed in Python)."},
    {Py_tp_dealloc, FastLogger_dealloc},
    {Py_tp_traverse, FastLogger_traverse},
    {Py_tp_clear, FastLogger_clear},
    {Py_tp_methods, FastLogger_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec FastLogger_spec = {
    .name = "ml_dash._fastlog.FastLogger",
    .basicsize = sizeof(FastLogger),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = FastLogger_slots,
};

static int
fastlog_exec(PyObject *module)
{
    str_ts = PyUnicode_InternFromString("_ts");
    str_wake_at = PyUnicode_InternFromString("wake_at");
    str_check_fields = PyUnicode_InternFromString("_check_fields");
    str_on_threshold = PyUnicode_InternFromString("_on_threshold");
    str_log_slow = PyUnicode_InternFromString("_log_slow");
    if (!str_ts || !str_wake_at || !str_check_fields || !str_on_threshold || !str_log_slow) {
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &FastLogger_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "FastLogger", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot fastlog_slots[] = {
    {Py_mod_exec, fastlog_exec},
    {0, NULL},
};

static struct PyModuleDef fastlog_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ml_dash._fastlog",
    .m_doc = "C hot path for ml_dash.metrics (optional).",
    .m_size = 0,
    .m_slots = fastlog_slots,
};

PyMODINIT_FUNC
PyInit__fastlog(void)
{
    return PyModuleDef_Init(&fastlog_module);
}
