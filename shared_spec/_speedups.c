/*
 * shared_spec._speedups: optional CPython kernels for the two hot loops of an
 * IMA measurement list.
 *
 *   parse_ima_ng_block()  decodes a block of kernel-form ima-ng ascii lines into
 *                         ImaEntry objects (shared_spec.ima._bulk_ima_ng in C);
 *   extend_ima_run()      extends every bank of a run of ImaEntry objects
 *                         (shared_spec.ima._extend_run in C), with OpenSSL's
 *                         libcrypto, one thread per bank.
 *
 * The Python code in shared_spec/ima.py defines what both compute and stays
 * the only code on MicroPython. Each kernel takes only the narrow, common
 * case and answers None / False for anything else, without side effects, so
 * the Python runs instead; tests/test_speedups.py compares both paths on
 * generated and mutated input. No length read from the input sizes an
 * allocation: arrays are sized by the block's own byte count or a list's
 * length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- ascii -- */

/* Byte classes, filled at import: what bytes.split() splits on plus NUL (which no
 * field of a kernel line holds), and each hex digit's value (-1: not one). */
static unsigned char separator[256];
static signed char hex_digit[256];

static void
init_tables(void)
{
    const char *seps = " \n\t\r\v\f";
    for (const char *c = seps; *c; c++)
        separator[(unsigned char)*c] = 1;
    separator[0] = 1;
    for (int c = 0; c < 256; c++)
        hex_digit[c] = -1;
    for (int c = 0; c < 10; c++)
        hex_digit['0' + c] = (signed char)c;
    for (int c = 0; c < 6; c++) {
        hex_digit['a' + c] = (signed char)(10 + c);
        hex_digit['A' + c] = (signed char)(10 + c);
    }
}

/* Decode 2*n hex digits at src into n bytes at dst; 0 on a non-hex digit. */
static int
unhex(const unsigned char *src, Py_ssize_t n, unsigned char *dst)
{
    int bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int hi = hex_digit[src[2 * i]], lo = hex_digit[src[2 * i + 1]];
        bad |= hi | lo;  /* negative once any digit is not hex */
        dst[i] = (unsigned char)((hi & 0xF) << 4 | (lo & 0xF));
    }
    return bad >= 0;
}

static void
put_u32(unsigned char *p, uint32_t v, int big_endian)
{
    if (big_endian) {
        p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
    } else {
        p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
        p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
    }
}

/* One line split into its five fields (start, length), after any leading space. */
typedef struct {
    const unsigned char *f[5];
    Py_ssize_t len[5];
} line_fields;

/* Split [p, end) at single spaces into exactly five non-empty fields that hold no
 * separator; 0 otherwise (what _bulk_ima_ng's separator and token counts reject). */
static int
split_line(const unsigned char *p, const unsigned char *end, line_fields *out)
{
    int k = 0;
    const unsigned char *start = p;
    for (; p < end; p++) {
        unsigned char c = *p;
        if (!separator[c])
            continue;
        if (c != ' ' || k == 4 || p == start)
            return 0;
        out->f[k] = start;
        out->len[k] = p - start;
        k++;
        start = p + 1;
    }
    if (k != 4 || p == start)
        return 0;
    out->f[4] = start;
    out->len[4] = p - start;
    return 1;
}

/* The attributes an ImaEntry of an ascii ima-ng line holds, set straight into their
 * __slots__ (what object.__new__ plus one store per attribute does in Python). */
enum { A_PCR, A_INDEX, A_HASH, A_HASH_ALG, A_NAME, A_DATA, A_OFFSET, A_BIG_ENDIAN, N_ATTRS };
static const char *const entry_attrs[N_ATTRS] = {
    "pcr", "index", "template_hash", "template_hash_alg", "template_name", "template_data",
    "offset", "big_endian",
};

/* Each attribute's offset in ``type``'s objects: a writable object slot of the type or
 * a base; 0 if any is something else (the caller then declines). */
static int
slot_offsets(PyTypeObject *type, Py_ssize_t offsets[N_ATTRS])
{
    for (int a = 0; a < N_ATTRS; a++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, entry_attrs[a]);
        if (d == NULL) {
            PyErr_Clear();
            return 0;
        }
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 PyType_IsSubtype(type, PyDescr_TYPE(d));
        if (ok) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            ok = m->type == T_OBJECT_EX && !(m->flags & READONLY);
            offsets[a] = m->offset;
        }
        Py_DECREF(d);
        if (!ok)
            return 0;
    }
    return 1;
}

/* A slot's value, borrowed (NULL when unset). */
static PyObject *
get_slot(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

static void
set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)obj + offset);
    PyObject *old = *slot;
    Py_INCREF(value);
    *slot = value;
    Py_XDECREF(old);
}

PyDoc_STRVAR(parse_ima_ng_block_doc,
"parse_ima_ng_block(block, pos, big_endian, alg_by_size, entry_type, template_name)\n--\n\n"
"The entries of ``block`` (whole lines at offset ``pos``, no final newline) when every\n"
"line is a kernel-form ima-ng line, as shared_spec.ima._bulk_ima_ng defines, with a\n"
"template hash whose size is a key of ``alg_by_size`` (its value is the entries'\n"
"template_hash_alg); otherwise None. Entries are new ``entry_type`` objects whose\n"
"slots are set as _bulk_ima_ng sets them (``big_endian`` and ``template_name`` are\n"
"stored as given).");

static PyObject *
parse_ima_ng_block(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    PyObject *big_endian_obj, *alg_by_size, *template_name;
    PyTypeObject *entry_type;
    if (!PyArg_ParseTuple(args, "y*nOO!O!U", &view, &pos, &big_endian_obj, &PyDict_Type,
                          &alg_by_size, &PyType_Type, &entry_type, &template_name))
        return NULL;
    const unsigned char *buf = view.buf, *end = buf + view.len;
    PyObject *result = NULL, *entries = NULL, *alg = NULL, *pcr = NULL;
    unsigned char *tdata = NULL;
    Py_ssize_t offs[N_ATTRS];
    int big_endian = PyObject_IsTrue(big_endian_obj);
    if (big_endian < 0)
        goto error;
    if (!slot_offsets(entry_type, offs))
        goto decline;

    /* one leading space on every line or on none ("%2d" prints PCRs 0..9 so) */
    int lead = view.len > 0 && buf[0] == ' ';
    Py_ssize_t lines = 1;
    for (const unsigned char *q = buf; (q = memchr(q, '\n', end - q)) != NULL; q++) {
        lines++;
        lead |= q + 1 < end && q[1] == ' ';
    }
    entries = PyList_New(lines);
    if (!entries)
        goto error;

    Py_ssize_t hlen = -1, dlen = -1, plen = 0, dsize = 0;
    const unsigned char *prefix = NULL, *prev_pcr = NULL;
    Py_ssize_t prev_pcr_len = 0;
    const unsigned char *p = buf;
    for (Py_ssize_t i = 0; i < lines; i++) {
        const unsigned char *nl = memchr(p, '\n', end - p);
        const unsigned char *le = nl ? nl : end;
        Py_ssize_t line_offset = pos + (p - buf);
        if (lead) {
            if (p == le || *p != ' ')
                goto decline;
            p++;
        }
        line_fields lf;
        if (!split_line(p, le, &lf))
            goto decline;
        if (lf.len[2] != 6 || memcmp(lf.f[2], "ima-ng", 6) != 0)
            goto decline;

        /* PCR: decimal digits, at most 0xFFFFFFFF; one int per run of equal text */
        if (prev_pcr == NULL || lf.len[0] != prev_pcr_len ||
                memcmp(lf.f[0], prev_pcr, prev_pcr_len) != 0) {
            uint64_t v = 0;
            for (Py_ssize_t k = 0; k < lf.len[0]; k++) {
                unsigned char c = lf.f[0][k];
                if (c < '0' || c > '9')
                    goto decline;
                v = v * 10 + (c - '0');
                if (v > 0xFFFFFFFFu)
                    goto decline;
            }
            Py_XSETREF(pcr, PyLong_FromUnsignedLongLong(v));
            if (!pcr)
                goto error;
            prev_pcr = lf.f[0];
            prev_pcr_len = lf.len[0];
        }

        /* template hash: the same even length on every line, a size alg_by_size has */
        if (hlen < 0) {
            hlen = lf.len[1];
            if (hlen & 1)
                goto decline;
            PyObject *size = PyLong_FromSsize_t(hlen / 2);
            if (!size)
                goto error;
            alg = PyDict_GetItemWithError(alg_by_size, size);
            Py_DECREF(size);
            if (!alg) {
                if (PyErr_Occurred())
                    goto error;
                goto decline;
            }
            Py_INCREF(alg);
        } else if (lf.len[1] != hlen) {
            goto decline;
        }

        /* file digest "<algo>:<hex>": the first line's text up to its last colon
           starts every line, all of the same length */
        if (dlen < 0) {
            dlen = lf.len[3];
            for (Py_ssize_t k = dlen - 1; k >= 0; k--) {
                if (lf.f[3][k] == ':') {
                    plen = k + 1;
                    break;
                }
            }
            if (plen == 0 || plen == dlen || (dlen - plen) & 1)
                goto decline;
            prefix = lf.f[3];
            dsize = (dlen - plen) / 2;
            /* d-ng: u32 length, "<algo>:", NUL, digest; n-ng: u32 length, name, NUL */
            tdata = PyMem_Malloc(4 + plen + 1 + dsize + 4 + (end - buf) + 1);
            if (!tdata) {
                PyErr_NoMemory();
                goto error;
            }
            put_u32(tdata, (uint32_t)(plen + 1 + dsize), big_endian);
            memcpy(tdata + 4, prefix, plen);
            tdata[4 + plen] = 0;
        } else if (lf.len[3] != dlen || memcmp(lf.f[3], prefix, plen) != 0) {
            goto decline;
        }
        unsigned char *w = tdata + 4 + plen + 1;
        if (!unhex(lf.f[3] + plen, dsize, w))
            goto decline;
        w += dsize;
        Py_ssize_t name_len = lf.len[4];
        put_u32(w, (uint32_t)(name_len + 1), big_endian);
        memcpy(w + 4, lf.f[4], name_len);
        w[4 + name_len] = 0;
        w += 4 + name_len + 1;

        PyObject *e = entry_type->tp_alloc(entry_type, 0);
        if (!e)
            goto error;
        PyList_SET_ITEM(entries, i, e);
        PyObject *th = PyBytes_FromStringAndSize(NULL, hlen / 2);
        if (!th)
            goto error;
        set_slot(e, offs[A_HASH], th);
        Py_DECREF(th);
        if (!unhex(lf.f[1], hlen / 2, (unsigned char *)PyBytes_AS_STRING(th)))
            goto decline;
        PyObject *td = PyBytes_FromStringAndSize((const char *)tdata, w - tdata);
        PyObject *off = td ? PyLong_FromSsize_t(line_offset) : NULL;
        if (!off) {
            Py_XDECREF(td);
            goto error;
        }
        set_slot(e, offs[A_DATA], td);
        set_slot(e, offs[A_OFFSET], off);
        Py_DECREF(td);
        Py_DECREF(off);
        set_slot(e, offs[A_PCR], pcr);
        set_slot(e, offs[A_INDEX], pcr);
        set_slot(e, offs[A_HASH_ALG], alg);
        set_slot(e, offs[A_NAME], template_name);
        set_slot(e, offs[A_BIG_ENDIAN], big_endian_obj);
        p = nl ? nl + 1 : end;
    }
    result = Py_NewRef(entries);
    goto done;
decline:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    /* the list of a declined block holds NULL slots: its dealloc skips them */
    Py_XDECREF(entries);
    Py_XDECREF(alg);
    Py_XDECREF(pcr);
    PyMem_Free(tdata);
    PyBuffer_Release(&view);
    return result;
}

/* --------------------------------------------------------------- extend -- */

#define MAX_DIGEST 64
/* the shortest run hashed on one thread per bank (a thread costs tens of microseconds) */
#define THREAD_RUN_MIN 1024

/* One bank's share of a run: its digest, its registers' values, and the result. */
typedef struct {
    EVP_MD *md;
    int size;
    unsigned char (*values)[MAX_DIGEST]; /* per register slot */
    char *live;                          /* per slot: replayable (value not None) */
    int ok;
} bank_job;

/* The run, read from the entries while holding the GIL. */
typedef struct {
    Py_ssize_t n;
    const unsigned char **data;
    Py_ssize_t *data_len;
    char *violation;
    int *slot;
    Py_ssize_t nslots;
} run_view;

typedef struct {
    const run_view *run;
    bank_job *job;
} thread_arg;

static void
extend_bank(const run_view *run, bank_job *job)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char d[MAX_DIGEST], ff[MAX_DIGEST], pair[2 * MAX_DIGEST];
    int size = job->size;
    memset(ff, 0xFF, sizeof ff);
    job->ok = ctx != NULL;
    for (Py_ssize_t i = 0; job->ok && i < run->n; i++) {
        int s = run->slot[i];
        if (!job->live[s])
            continue;
        const unsigned char *dig = ff;
        if (!run->violation[i]) {
            job->ok = EVP_DigestInit_ex2(ctx, job->md, NULL) &&
                      EVP_DigestUpdate(ctx, run->data[i], run->data_len[i]) &&
                      EVP_DigestFinal_ex(ctx, d, NULL);
            dig = d;
        }
        memcpy(pair, job->values[s], size);
        memcpy(pair + size, dig, size);
        job->ok = job->ok && EVP_DigestInit_ex2(ctx, job->md, NULL) &&
                  EVP_DigestUpdate(ctx, pair, 2 * size) &&
                  EVP_DigestFinal_ex(ctx, job->values[s], NULL);
    }
    EVP_MD_CTX_free(ctx);
}

static void *
extend_bank_thread(void *arg)
{
    thread_arg *t = arg;
    extend_bank(t->run, t->job);
    return NULL;
}

PyDoc_STRVAR(extend_ima_run_doc,
"extend_ima_run(entries, entry_type, digest_names, values) -> bool\n--\n\n"
"Extend, for each bank k, ``values[k]`` ({register: bytes or None}, updated in place)\n"
"by every entry of ``entries`` as shared_spec.ima._extend_run does: H(value || d) with\n"
"d the bank's hash of the template data, all 0xFF for a violation (an empty or\n"
"all-zero template hash), registers whose value is None skipped. ``digest_names``:\n"
"OpenSSL's name of each bank's digest. False, touching nothing, unless every entry is\n"
"exactly ``entry_type`` with bytes template data of a template other than \"ima\",\n"
"a bytes template hash and an int register already in every ``values[k]``, and\n"
"OpenSSL has every digest.");

static PyObject *
extend_ima_run(PyObject *self, PyObject *args)
{
    PyObject *entries, *entry_type, *names, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyList_Type, &entries, &PyType_Type, &entry_type,
                          &PyTuple_Type, &names, &PyTuple_Type, &values))
        return NULL;
    Py_ssize_t nbanks = PyTuple_GET_SIZE(names);
    if (nbanks != PyTuple_GET_SIZE(values) || nbanks == 0)
        Py_RETURN_FALSE;
    for (Py_ssize_t k = 0; k < nbanks; k++)
        if (!PyDict_CheckExact(PyTuple_GET_ITEM(values, k)) ||
                !PyUnicode_Check(PyTuple_GET_ITEM(names, k)))
            Py_RETURN_FALSE;

    Py_ssize_t n = PyList_GET_SIZE(entries);
    run_view run = {0};
    bank_job *jobs = NULL;
    PyObject **held = NULL;   /* the template data objects, kept alive without the GIL */
    PyObject **slot_keys = NULL;
    PyObject *answer = NULL;
    Py_ssize_t nheld = 0;
    int declined = 0;

    run.n = n;
    run.data = PyMem_Calloc(n ? n : 1, sizeof *run.data);
    run.data_len = PyMem_Calloc(n ? n : 1, sizeof *run.data_len);
    run.violation = PyMem_Calloc(n ? n : 1, 1);
    run.slot = PyMem_Calloc(n ? n : 1, sizeof *run.slot);
    held = PyMem_Calloc(n ? n : 1, sizeof *held);
    slot_keys = PyMem_Calloc(n ? n : 1, sizeof *slot_keys);
    jobs = PyMem_Calloc(nbanks, sizeof *jobs);
    if (!run.data || !run.data_len || !run.violation || !run.slot || !held || !slot_keys ||
            !jobs) {
        PyErr_NoMemory();
        goto finish;
    }

    /* read the run (GIL held): four slots of each entry, checked as _extend_run needs */
    Py_ssize_t offs[N_ATTRS];
    if (!slot_offsets((PyTypeObject *)entry_type, offs)) {
        declined = 1;
        goto finish;
    }
    PyObject *last_index = NULL;
    int last_slot = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if ((PyObject *)Py_TYPE(e) != entry_type) {
            declined = 1;
            goto finish;
        }
        PyObject *index = get_slot(e, offs[A_INDEX]);
        PyObject *th = get_slot(e, offs[A_HASH]);
        PyObject *data = get_slot(e, offs[A_DATA]);
        PyObject *name = get_slot(e, offs[A_NAME]);
        /* an unset slot (AttributeError in Python), data None ("ima" ascii entry of an
           unknown template), the "ima" template's own hashed bytes: the Python's */
        if (!index || !th || !data || !name || !PyLong_CheckExact(index) ||
                !PyBytes_CheckExact(th) || !PyBytes_CheckExact(data) ||
                !PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "ima") == 0) {
            declined = 1;
            goto finish;
        }
        const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(th);
        Py_ssize_t tl = PyBytes_GET_SIZE(th), z = 0;
        while (z < tl && t[z] == 0)
            z++;
        run.violation[i] = z == tl;
        run.data[i] = (const unsigned char *)PyBytes_AS_STRING(data);
        run.data_len[i] = PyBytes_GET_SIZE(data);
        held[nheld++] = Py_NewRef(data);
        /* the register's slot: most runs extend one register */
        if (last_index == NULL || PyObject_RichCompareBool(index, last_index, Py_EQ) != 1) {
            int found = -1;
            for (Py_ssize_t s = 0; s < run.nslots; s++) {
                int eq = PyObject_RichCompareBool(index, slot_keys[s], Py_EQ);
                if (eq < 0)
                    goto finish;
                if (eq) {
                    found = (int)s;
                    break;
                }
            }
            if (found < 0) {
                found = (int)run.nslots;
                slot_keys[run.nslots++] = Py_NewRef(index);
            }
            last_index = slot_keys[found];
            last_slot = found;
        }
        run.slot[i] = last_slot;
    }

    /* each bank's digest and starting values; every register must be in values */
    for (Py_ssize_t k = 0; k < nbanks; k++) {
        const char *mdname = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, k));
        if (!mdname)
            goto finish;
        jobs[k].md = EVP_MD_fetch(NULL, mdname, NULL);
        if (!jobs[k].md || EVP_MD_get_size(jobs[k].md) > MAX_DIGEST) {
            declined = 1;
            goto finish;
        }
        jobs[k].size = EVP_MD_get_size(jobs[k].md);
        jobs[k].values = PyMem_Calloc(run.nslots ? run.nslots : 1, MAX_DIGEST);
        jobs[k].live = PyMem_Calloc(run.nslots ? run.nslots : 1, 1);
        if (!jobs[k].values || !jobs[k].live) {
            PyErr_NoMemory();
            goto finish;
        }
        PyObject *bank = PyTuple_GET_ITEM(values, k);
        for (Py_ssize_t s = 0; s < run.nslots; s++) {
            PyObject *v = PyDict_GetItemWithError(bank, slot_keys[s]);
            if (v == NULL) {
                if (PyErr_Occurred())
                    goto finish;
                declined = 1;
                goto finish;
            }
            if (v == Py_None)
                continue;
            if (!PyBytes_CheckExact(v) || PyBytes_GET_SIZE(v) != jobs[k].size) {
                declined = 1;
                goto finish;
            }
            memcpy(jobs[k].values[s], PyBytes_AS_STRING(v), jobs[k].size);
            jobs[k].live[s] = 1;
        }
    }

    /* hash without the GIL: bank 0 here, every other bank on a thread of its own once
       the run is long enough to repay starting one */
    int threaded = n >= THREAD_RUN_MIN;
    pthread_t *threads = PyMem_Calloc(nbanks, sizeof *threads);
    thread_arg *targs = PyMem_Calloc(nbanks, sizeof *targs);
    char *started = PyMem_Calloc(nbanks, 1);
    if (!threads || !targs || !started) {
        PyMem_Free(threads);
        PyMem_Free(targs);
        PyMem_Free(started);
        PyErr_NoMemory();
        goto finish;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 1; k < nbanks; k++) {
        targs[k].run = &run;
        targs[k].job = &jobs[k];
        started[k] = threaded &&
                     pthread_create(&threads[k], NULL, extend_bank_thread, &targs[k]) == 0;
    }
    extend_bank(&run, &jobs[0]);
    for (Py_ssize_t k = 1; k < nbanks; k++) {
        if (started[k])
            pthread_join(threads[k], NULL);
        else
            extend_bank(&run, &jobs[k]);
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(threads);
    PyMem_Free(targs);
    PyMem_Free(started);
    for (Py_ssize_t k = 0; k < nbanks; k++) {
        if (!jobs[k].ok) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL digest failed");
            goto finish;
        }
    }
    /* write back, all banks or (on an error) none */
    for (Py_ssize_t k = 0; k < nbanks; k++) {
        PyObject *bank = PyTuple_GET_ITEM(values, k);
        for (Py_ssize_t s = 0; s < run.nslots; s++) {
            if (!jobs[k].live[s])
                continue;
            PyObject *v = PyBytes_FromStringAndSize((const char *)jobs[k].values[s],
                                                    jobs[k].size);
            if (!v || PyDict_SetItem(bank, slot_keys[s], v) < 0) {
                Py_XDECREF(v);
                goto finish;
            }
            Py_DECREF(v);
        }
    }
    answer = Py_NewRef(Py_True);

finish:
    if (declined && !PyErr_Occurred())
        answer = Py_NewRef(Py_False);
    for (Py_ssize_t i = 0; i < nheld; i++)
        Py_DECREF(held[i]);
    for (Py_ssize_t s = 0; s < run.nslots; s++)
        Py_DECREF(slot_keys[s]);
    if (jobs) {
        for (Py_ssize_t k = 0; k < nbanks; k++) {
            EVP_MD_free(jobs[k].md);
            PyMem_Free(jobs[k].values);
            PyMem_Free(jobs[k].live);
        }
    }
    PyMem_Free(jobs);
    PyMem_Free(held);
    PyMem_Free(slot_keys);
    PyMem_Free(run.data);
    PyMem_Free(run.data_len);
    PyMem_Free(run.violation);
    PyMem_Free(run.slot);
    return answer;
}

/* --------------------------------------------------------------- module -- */

static PyMethodDef methods[] = {
    {"parse_ima_ng_block", parse_ima_ng_block, METH_VARARGS, parse_ima_ng_block_doc},
    {"extend_ima_run", extend_ima_run, METH_VARARGS, extend_ima_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shared_spec._speedups",
    "Optional CPython kernels for IMA lists (see shared_spec/_speedups.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_tables();
    return PyModule_Create(&module);
}
