/* The request heads nearly every client sends, parsed in one C call.
 *
 * httptools (llhttp) parses a request in C too, but reports it through a Python callback per
 * event -- message begin, URL, each header, headers complete, message complete -- and those
 * calls, not the parsing, are most of the server's cost per request (see
 * benchmarks/request_path_instructions.py). scan_head parses a whole head in one call and
 * returns what the request reader (lab/http/reader.py) needs.
 *
 * It is not a second HTTP parser with rules of its own: it accepts only a strict subset of
 * what llhttp accepts, and for that subset gives exactly what llhttp would (tests/
 * test_headscan.py checks both with generated heads). Anything outside the subset -- another
 * method, a body, a Connection header other than keep-alive, an Upgrade or Expect header, an
 * incomplete head, a character it is not sure of -- it leaves unparsed (returns None), and the
 * reader feeds those bytes to llhttp, which reads them as it always did, errors
 * included. So a request is never
 * answered differently for being scanned here; it is only answered with fewer calls.
 *
 * The subset: "GET" or "HEAD", an origin-form target of RFC 3986 characters, "HTTP/1.1",
 * headers "name: value" with a token name and a value of visible ASCII (inner spaces and
 * tabs allowed, none at either end), exactly one Host, no Connection header but
 * "Connection: keep-alive", CRLF line ends, and within the server's header limit as the
 * reader counts it (the target, plus name + value + 4 bytes per header).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The most headers a scanned head may have; more go to llhttp (which has its own limit). */
#define MAX_HEADERS 64

static PyObject *method_get;
static PyObject *method_head;
static PyObject *empty_query;

/* RFC 9110 section 5.6.2 tchar. */
static unsigned char is_tchar[256];
/* RFC 3986 pchar plus "/" and "?": unreserved, pct-encoded's "%", sub-delims, ":" and "@". */
static unsigned char is_target_char[256];
/* Visible ASCII, and the space and tab allowed inside a field value (RFC 9110 section 5.5). */
static unsigned char is_value_char[256];
/* A Host value: RFC 3986 host (reg-name, IPv4, [IP-literal]) and ":port" -- the reader's
 * _HOST_BYTES; any other value is llhttp's path, which answers it with 400. */
static unsigned char is_host_char[256];

static void fill_tables(void)
{
    const char *tchar_marks = "!#$%&'*+-.^_`|~";
    const char *target_marks = "-._~%!$&'()*+,;=:@/?";
    const char *host_marks = "-._~%!$&'()*+,;=:[]";
    for (int c = '0'; c <= '9'; c++)
        is_tchar[c] = is_target_char[c] = is_host_char[c] = 1;
    for (int c = 'a'; c <= 'z'; c++)
        is_tchar[c] = is_target_char[c] = is_host_char[c] = is_tchar[c - 32] = is_target_char[c - 32] =
            is_host_char[c - 32] = 1;
    for (const char *mark = tchar_marks; *mark; mark++)
        is_tchar[(unsigned char)*mark] = 1;
    for (const char *mark = target_marks; *mark; mark++)
        is_target_char[(unsigned char)*mark] = 1;
    for (const char *mark = host_marks; *mark; mark++)
        is_host_char[(unsigned char)*mark] = 1;
    for (int c = 0x20; c < 0x7f; c++)
        is_value_char[c] = 1;
    is_value_char['\t'] = 1;
}

/* Does the header name at `name` (length `length`) equal `lower`, whatever its case? */
static int name_is(const unsigned char *name, Py_ssize_t length, const char *lower, Py_ssize_t lower_length)
{
    if (length != lower_length)
        return 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

#define NAME_IS(name, length, literal) name_is(name, length, literal, (Py_ssize_t)sizeof(literal) - 1)

/* Is a Host value of host characters shaped as host[:port] -- a bracketed IP literal or a name
 * without brackets or colons, then an optional port of at most five digits up to 65535? The
 * reader's _host_is_valid, the same rule: a value it refuses is left to llhttp's path, which
 * answers it with 400. */
static int host_is_valid(const unsigned char *value, Py_ssize_t length)
{
    Py_ssize_t i = 0;
    if (length > 0 && value[0] == '[') {
        while (i < length && value[i] != ']')
            i++;
        if (i == length)
            return 0;
        i++;
    } else {
        while (i < length && value[i] != ':') {
            if (value[i] == '[' || value[i] == ']')
                return 0;
            i++;
        }
    }
    if (i == length)
        return 1;
    if (value[i] != ':' || length - i - 1 > 5)
        return 0;
    long port = 0;
    for (i++; i < length; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        port = port * 10 + (value[i] - '0');
    }
    return port <= 65535;
}

/* Header fields whose presence sends the head to llhttp: they frame a body, end or upgrade
 * the connection, or ask for an interim answer, and the reader handles them there. The
 * one exception is "Connection: keep-alive", HTTP/1.1's default said aloud (browsers and many
 * client libraries send it): it changes nothing llhttp would report. */
static int needs_llhttp(const unsigned char *name, Py_ssize_t length,
                        const unsigned char *value, Py_ssize_t value_length)
{
    switch (length) {
    case 6:
        return NAME_IS(name, length, "expect");
    case 7:
        return NAME_IS(name, length, "upgrade");
    case 10:
        return NAME_IS(name, length, "connection") && !NAME_IS(value, value_length, "keep-alive");
    case 14:
        return NAME_IS(name, length, "content-length");
    case 17:
        return NAME_IS(name, length, "transfer-encoding");
    default:
        return 0;
    }
}

typedef struct {
    const unsigned char *name;
    Py_ssize_t name_length;
    const unsigned char *value;
    Py_ssize_t value_length;
} Field;

/* Parses one head at [start, end); returns the offset just past it, or -1 to leave it to llhttp. */
static Py_ssize_t parse_head(const unsigned char *buffer, Py_ssize_t start, Py_ssize_t end, Py_ssize_t limit,
                             PyObject **method, Py_ssize_t *target_start, Py_ssize_t *target_end,
                             Py_ssize_t *query_mark, Field *fields, int *field_count)
{
    const unsigned char *p = buffer + start, *stop = buffer + end;
    if (stop - p < 4)
        return -1;
    if (memcmp(p, "GET ", 4) == 0) {
        *method = method_get;
        p += 4;
    } else if (stop - p >= 5 && memcmp(p, "HEAD ", 5) == 0) {
        *method = method_head;
        p += 5;
    } else {
        return -1;
    }
    if (p >= stop || *p != '/')
        return -1;
    *target_start = p - buffer;
    *query_mark = -1;
    while (p < stop && is_target_char[*p]) {
        if (*p == '?' && *query_mark < 0)
            *query_mark = p - buffer;
        p++;
    }
    *target_end = p - buffer;
    /* The head's size as the reader counts it for max_header_bytes (on_url, on_header):
     * the target, and name + value + 4 per header -- not the raw bytes, which differ. */
    Py_ssize_t counted = *target_end - *target_start;
    if (counted > limit || stop - p < 11 || memcmp(p, " HTTP/1.1\r\n", 11) != 0)
        return -1;
    p += 11;
    int hosts = 0, count = 0;
    for (;;) {
        if (stop - p < 2)
            return -1;
        if (p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        if (count == MAX_HEADERS)
            return -1;
        const unsigned char *name = p;
        while (p < stop && is_tchar[*p])
            p++;
        if (p == name || p >= stop || *p != ':')
            return -1;
        Py_ssize_t name_length = p - name;
        p++;
        if (p < stop && *p == ' ')
            p++;
        const unsigned char *value = p;
        while (p < stop && is_value_char[*p])
            p++;
        if (stop - p < 2 || p[0] != '\r' || p[1] != '\n' || p == value)
            return -1;
        if (value[0] == ' ' || value[0] == '\t' || p[-1] == ' ' || p[-1] == '\t')
            return -1;  /* llhttp's handling of outer whitespace is its own business */
        if (needs_llhttp(name, name_length, value, p - value))
            return -1;
        if (NAME_IS(name, name_length, "host")) {
            for (const unsigned char *c = value; c < p; c++)
                if (!is_host_char[*c])
                    return -1;
            if (!host_is_valid(value, p - value))
                return -1;
            hosts++;
        }
        fields[count].name = name;
        fields[count].name_length = name_length;
        fields[count].value = value;
        fields[count].value_length = p - value;
        count++;
        p += 2;
        counted += name_length + fields[count - 1].value_length + 4;
        if (counted > limit)
            return -1;
    }
    if (hosts != 1)
        return -1;
    *field_count = count;
    return p - buffer;
}

static PyObject *build_result(const unsigned char *buffer, Py_ssize_t next, PyObject *method,
                              Py_ssize_t target_start, Py_ssize_t target_end, Py_ssize_t query_mark,
                              const Field *fields, int field_count)
{
    Py_ssize_t path_end = query_mark >= 0 ? query_mark : target_end;
    PyObject *path = PyUnicode_DecodeASCII((const char *)buffer + target_start, path_end - target_start, NULL);
    PyObject *query;
    if (query_mark >= 0) {
        query = PyUnicode_DecodeASCII((const char *)buffer + query_mark + 1, target_end - query_mark - 1, NULL);
    } else {
        query = empty_query;
        Py_INCREF(query);
    }
    PyObject *headers = PyList_New(field_count);
    if (path == NULL || query == NULL || headers == NULL)
        goto failed;
    for (int i = 0; i < field_count; i++) {
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL)
            goto failed;
        PyList_SET_ITEM(headers, i, pair);  /* freed with the list if what follows fails */
        PyObject *name = PyBytes_FromStringAndSize((const char *)fields[i].name, fields[i].name_length);
        if (name == NULL)
            goto failed;
        PyTuple_SET_ITEM(pair, 0, name);
        PyObject *value = PyBytes_FromStringAndSize((const char *)fields[i].value, fields[i].value_length);
        if (value == NULL)
            goto failed;
        PyTuple_SET_ITEM(pair, 1, value);
    }
    PyObject *next_offset = PyLong_FromSsize_t(next);
    if (next_offset == NULL)
        goto failed;
    Py_INCREF(method);
    PyObject *result = PyTuple_New(5);
    if (result == NULL) {
        Py_DECREF(next_offset);
        Py_DECREF(method);
        goto failed;
    }
    PyTuple_SET_ITEM(result, 0, next_offset);
    PyTuple_SET_ITEM(result, 1, method);
    PyTuple_SET_ITEM(result, 2, path);
    PyTuple_SET_ITEM(result, 3, query);
    PyTuple_SET_ITEM(result, 4, headers);
    return result;
failed:
    Py_XDECREF(path);
    Py_XDECREF(query);
    Py_XDECREF(headers);
    return NULL;
}

PyDoc_STRVAR(scan_head_doc,
"scan_head(buffer, start, end, limit)\n--\n\n"
"Parse the request head at buffer[start:end] if it is one of the plain heads this module\n"
"knows (see the module's documentation) and no longer than limit bytes.\n\n"
"Returns (next_offset, method, path, query, headers) -- headers as the (name, value) bytes\n"
"pairs llhttp reports -- or None, leaving those bytes to llhttp.");

static PyObject *scan_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan_head(buffer, start, end, limit) takes 4 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[3]);
    if ((start == -1 || end == -1 || limit == -1) && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan_head: start and end must lie within the buffer");
        return NULL;
    }
    const unsigned char *buffer = view.buf;
    PyObject *method = NULL;
    Py_ssize_t target_start, target_end, query_mark;
    Field fields[MAX_HEADERS];
    int field_count = 0;
    Py_ssize_t next = parse_head(buffer, start, end, limit, &method, &target_start, &target_end,
                                 &query_mark, fields, &field_count);
    PyObject *result;
    if (next < 0) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        result = build_result(buffer, next, method, target_start, target_end, query_mark, fields, field_count);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef headscan_methods[] = {
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL, scan_head_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef headscan_module = {
    PyModuleDef_HEAD_INIT, "lab.http._headscan",
    "The plain request heads nearly every client sends, parsed in one C call (see _headscan.c).",
    -1, headscan_methods,
};

PyMODINIT_FUNC PyInit__headscan(void)
{
    fill_tables();
    method_get = PyUnicode_InternFromString("GET");
    method_head = PyUnicode_InternFromString("HEAD");
    empty_query = PyUnicode_FromString("");
    if (method_get == NULL || method_head == NULL || empty_query == NULL)
        return NULL;
    return PyModule_Create(&headscan_module);
}
