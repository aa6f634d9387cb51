/* voxcodec.core._native: the thin CPython binding of the native engine (vx6.c).  Buffers in, bytes
 * or an error code out; the GIL is released while a block codes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "vx6.h"

static int get_params(Py_buffer *raw, vx6_params *p) {
  if (raw->len != VX6_PARAM_BYTES) return VX6_ERR_PARAMS;
  return vx6_parse_params((const uint8_t *)raw->buf, p);
}

/* encode(voxels, d, h, w, itemsize, lo, hi, centre, shift, params, kinds, starts, values, slice_bytes
 * [, workspace]) -> bytes or int; slice_bytes: a writable buffer of d int64; workspace: a writable buffer
 * of workspace(d, h, w, params, 0) bytes, lent to the engine (vx6_encode_ws) */
static PyObject *py_encode(PyObject *self, PyObject *args) {
  Py_buffer vox, raw, kinds, starts, values, ends, ws = {0};
  vx6_block b;
  long long lo, hi, centre;
  if (!PyArg_ParseTuple(args, "y*iiiiLLLiy*y*y*y*w*|w*", &vox, &b.d, &b.h, &b.w, &b.itemsize, &lo, &hi, &centre,
                        &b.shift, &raw, &kinds, &starts, &values, &ends, &ws))
    return NULL;
  b.lo = lo;
  b.hi = hi;
  b.centre = centre;
  PyObject *result = NULL;
  vx6_params p;
  int err = get_params(&raw, &p);
  size_t voxels = (size_t)b.d * b.h * b.w;
  if (!err && ((size_t)vox.len != voxels * (size_t)b.itemsize || kinds.len != b.d ||
               (size_t)starts.len != (size_t)(b.d + 1) * sizeof(int64_t) ||
               (size_t)ends.len != (size_t)b.d * sizeof(int64_t)))
    err = VX6_ERR_INPUT;
  uint8_t *out = NULL;
  size_t out_len = 0;
  if (!err) { /* the slice table must lie inside its buffers before the engine reads it */
    const int64_t *st = (const int64_t *)starts.buf;
    for (int z = 0; z <= b.d && !err; z++)
      if (st[z] < 0 || (z && st[z] < st[z - 1]) || (size_t)st[z] * sizeof(int64_t) > (size_t)values.len) err = VX6_ERR_INPUT;
  }
  if (!err) {
    vx6_slices sl = {(const uint8_t *)kinds.buf, (const int64_t *)starts.buf, (const int64_t *)values.buf};
    Py_BEGIN_ALLOW_THREADS
    err = vx6_encode_ws(&b, &p, vox.buf, &sl, &out, &out_len, (int64_t *)ends.buf, ws.buf, (size_t)ws.len);
    Py_END_ALLOW_THREADS
  }
  if (err)
    result = PyLong_FromLong(err);
  else
    result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_len);
  free(out);
  PyBuffer_Release(&vox);
  PyBuffer_Release(&raw);
  PyBuffer_Release(&kinds);
  PyBuffer_Release(&starts);
  PyBuffer_Release(&values);
  PyBuffer_Release(&ends);
  if (ws.obj) PyBuffer_Release(&ws);
  return result;
}

/* decode(payload, out, d, h, w, itemsize, lo, hi, centre, shift, params[, workspace]) -> int (0: fine);
 * workspace: a writable buffer of workspace(d, h, w, params, len(payload)) bytes (vx6_decode_ws) */
static PyObject *py_decode(PyObject *self, PyObject *args) {
  Py_buffer payload, out, raw, ws = {0};
  vx6_block b;
  long long lo, hi, centre;
  if (!PyArg_ParseTuple(args, "y*w*iiiiLLLiy*|w*", &payload, &out, &b.d, &b.h, &b.w, &b.itemsize, &lo, &hi, &centre,
                        &b.shift, &raw, &ws))
    return NULL;
  b.lo = lo;
  b.hi = hi;
  b.centre = centre;
  vx6_params p;
  int err = get_params(&raw, &p);
  if (!err && (size_t)out.len != (size_t)b.d * b.h * b.w * (size_t)b.itemsize) err = VX6_ERR_INPUT;
  if (!err) {
    Py_BEGIN_ALLOW_THREADS
    err = vx6_decode_ws(&b, &p, (const uint8_t *)payload.buf, (size_t)payload.len, out.buf, ws.buf, (size_t)ws.len);
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&payload);
  PyBuffer_Release(&out);
  PyBuffer_Release(&raw);
  if (ws.obj) PyBuffer_Release(&ws);
  return PyLong_FromLong(err);
}

/* workspace(d, h, w, params, payload_len) -> the bytes of a block's workspace (vx6_workspace) */
static PyObject *py_workspace(PyObject *self, PyObject *args) {
  Py_buffer raw;
  vx6_block b = {0};
  Py_ssize_t payload_len;
  if (!PyArg_ParseTuple(args, "iiiy*n", &b.d, &b.h, &b.w, &raw, &payload_len)) return NULL;
  vx6_params p;
  const int err = get_params(&raw, &p);
  PyBuffer_Release(&raw);
  if (err || b.h < 1 || b.w < 1 || payload_len < 0) return PyLong_FromLong(0);
  return PyLong_FromSize_t(vx6_workspace(&b, &p, (size_t)payload_len));
}

/* check_params(params) -> int (0: valid) */
static PyObject *py_check_params(PyObject *self, PyObject *args) {
  Py_buffer raw;
  if (!PyArg_ParseTuple(args, "y*", &raw)) return NULL;
  vx6_params p;
  int err = get_params(&raw, &p);
  PyBuffer_Release(&raw);
  return PyLong_FromLong(err);
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, "Encode one format 6 block: bytes, or an error code."},
    {"decode", py_decode, METH_VARARGS, "Decode one format 6 block into a buffer: 0 or an error code."},
    {"check_params", py_check_params, METH_VARARGS, "0 when 16 parameter bytes are valid, else an error code."},
    {"workspace", py_workspace, METH_VARARGS, "Bytes of the workspace a block's coding can borrow (0: none)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "voxcodec's native engine (format 6).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__native(void) {
  vx6_init(); /* here, under the GIL, before any thread codes */
  return PyModule_Create(&module);
}
