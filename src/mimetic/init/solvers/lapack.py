"""The top eigenpairs of a symmetric matrix (LAPACK ``?syevr``) with Python's GIL released.

Why this file exists: mimetic init factorises one target per attention head, and heads are independent, so on a
CPU they should run one per core. ``scipy.linalg.eigh`` is the right routine (``?syevr`` computes only the wanted
eigenpairs, which is most of the saving when a head keeps 64 of 768 directions) but its f2py wrapper holds the
GIL for the whole call, so threads run it one at a time (measured: 12 heads at d = 768 take the same 0.5 s on one
thread or two). torch's ``linalg.eigh`` releases the GIL but always computes every eigenpair (2-3x the work here).

So this module calls the very same LAPACK routine that scipy ships -- its function pointer comes from
``scipy.linalg.cython_lapack``, scipy's public Cython interface to its bundled LAPACK -- through ``ctypes``,
which releases the GIL for the duration of a foreign call. If that pointer cannot be had (an unusual scipy
build), :func:`top_eigh` falls back to ``scipy.linalg.eigh``: the same numbers, one head at a time.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

_INT = ctypes.POINTER(ctypes.c_int)
_PTR = ctypes.c_void_p
_CHAR = ctypes.c_char_p
# ?SYEVR(JOBZ, RANGE, UPLO, N, A, LDA, VL, VU, IL, IU, ABSTOL, M, W, Z, LDZ, ISUPPZ, WORK, LWORK, IWORK, LIWORK, INFO)
# (integer arrays ISUPPZ and IWORK are passed as raw addresses, like the float arrays)
_SYEVR_ARGS = (_CHAR, _CHAR, _CHAR, _INT, _PTR, _INT, _PTR, _PTR, _INT, _INT, _PTR, _INT, _PTR, _PTR, _INT, _PTR,
               _PTR, _INT, _PTR, _INT, _INT)


@functools.cache
def syevr(dtype: np.dtype):
    """``ssyevr``/``dsyevr`` as a GIL-releasing ctypes function, or None if scipy does not expose it."""
    try:
        from scipy.linalg import cython_lapack

        capsule = cython_lapack.__pyx_capi__[{np.float32: "ssyevr", np.float64: "dsyevr"}[np.dtype(dtype).type]]
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        address = get_pointer(capsule, get_name(capsule))
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    return ctypes.CFUNCTYPE(None, *_SYEVR_ARGS)(address) if address else None


def top_eigh(gram: np.ndarray, count: int) -> np.ndarray:
    """Orthonormal eigenvectors of the ``count`` largest eigenvalues of symmetric ``gram`` (n x n), largest first.

    Returns an (n x count) array of ``gram``'s dtype (float32 or float64). ``gram`` is overwritten.
    """
    n = gram.shape[0]
    count = min(count, n)
    call_syevr = syevr(gram.dtype)
    if call_syevr is None:
        import scipy.linalg

        _, v = scipy.linalg.eigh(gram, subset_by_index=[n - count, n - 1], driver="evr", check_finite=False,
                                 overwrite_a=True)
        return np.ascontiguousarray(v[:, ::-1])
    # Symmetric: a C-ordered matrix, read in Fortran order, is its own transpose -- no copy needed.
    a = gram.T if gram.flags.c_contiguous and gram.flags.writeable else np.require(gram, requirements=["F", "W"])
    dtype = a.dtype
    scalar = np.zeros(1, dtype=dtype)  # VL, VU (unused with RANGE='I') and ABSTOL (0: LAPACK's default)
    w = np.empty(n, dtype=dtype)
    z = np.empty((count, n), dtype=dtype)  # Fortran (n x count), column j = eigenvector j
    isuppz = np.empty(2 * max(count, 1), dtype=np.intc)
    found, info = ctypes.c_int(0), ctypes.c_int(0)
    size, low, high = ctypes.c_int(n), ctypes.c_int(n - count + 1), ctypes.c_int(n)

    def call(work: np.ndarray, lwork: int, iwork: np.ndarray, liwork: int) -> None:
        call_syevr(b"V", b"I", b"L", ctypes.byref(size), a.ctypes.data, ctypes.byref(size),
                scalar.ctypes.data, scalar.ctypes.data, ctypes.byref(low), ctypes.byref(high), scalar.ctypes.data,
                ctypes.byref(found), w.ctypes.data, z.ctypes.data, ctypes.byref(size), isuppz.ctypes.data,
                work.ctypes.data, ctypes.byref(ctypes.c_int(lwork)), iwork.ctypes.data,
                ctypes.byref(ctypes.c_int(liwork)), ctypes.byref(info))

    work_query, iwork_query = np.zeros(1, dtype=dtype), np.zeros(1, dtype=np.intc)
    call(work_query, -1, iwork_query, -1)
    lwork, liwork = int(work_query[0]), int(iwork_query[0])
    call(np.empty(lwork, dtype=dtype), lwork, np.empty(liwork, dtype=np.intc), liwork)
    if info.value != 0 or found.value != count:
        raise np.linalg.LinAlgError(f"LAPACK ?syevr failed (info={info.value}, {found.value}/{count} eigenpairs)")
    return np.ascontiguousarray(z[::-1].T)  # eigenvalues come ascending: reverse to largest first
