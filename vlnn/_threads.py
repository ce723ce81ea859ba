"""Worker threads shared by the blocks, and BLAS thread control.

numpy releases the GIL in its copies, ufunc loops and BLAS calls, so large
element-wise and reduction work split into chunks runs on several cores
from plain Python threads.  Every block uses the one pool here.

Determinism: :func:`run_chunks` gives thread ``k`` the fixed chunks
``k, k + T, k + 2T, ...`` and hands it its own accumulator; callers sum the
per-thread results in thread order.  Nothing depends on thread timing, so
results are identical from run to run.

BLAS: while chunks run on the pool, the BLAS libraries loaded in the
process are held at one thread each (``threadpoolctl``), so that two
chunks' GEMMs do not oversubscribe the cores; the previous settings are
restored when the last concurrent use ends.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Worker threads (the machines this was tuned on have 2 cores).
THREADS = 2
# elementwise() pieces of at most about this many bytes per operand (and at
# least one piece per worker): small enough to stay in cache between the
# passes of a fused piece, large enough that the Python overhead per piece
# (~5-10 us) stays small.
CHUNK_BYTES = 1024 * 1024
# Arrays below this many bytes are processed in one piece on the calling
# thread: handing work to the pool costs ~20-50 us.
PARALLEL_MIN_BYTES = 256 * 1024

_pool = None
_pool_lock = threading.Lock()
_local = threading.local()


def get_pool():
    """The process-wide :class:`ThreadPoolExecutor` (``THREADS`` workers)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="vlnn")
    return _pool


class blas_threads:
    """Context manager: hold the process's BLAS libraries at ``n`` threads
    (``threadpoolctl``; a no-op when it is not installed or ``n`` is falsy).

    Nested and concurrent uses share one saved state: the first to enter
    sets the limit, the last to leave restores the settings found by the
    first.  The setting is process-wide while held: a matmul that another
    user thread runs meanwhile also gets ``n`` BLAS threads.  The
    ``threadpoolctl`` controller (which lists the loaded libraries, ~3 ms)
    is built once, at first use; a BLAS library loaded after that is not
    limited (numpy's, which the blocks use, is always loaded by then)."""
    _controller = None
    _lock = threading.Lock()
    _depth = 0
    _limiter = None

    def __init__(self, n):
        self.n = n
        self.active = False

    @classmethod
    def controller(cls):
        if cls._controller is None:
            try:
                from threadpoolctl import ThreadpoolController
                cls._controller = ThreadpoolController()
            except ImportError:   # optional at run time: no control then
                cls._controller = False
        return cls._controller

    def __enter__(self):
        ctl = self.controller() if self.n else False
        self.active = bool(ctl)
        if self.active:
            with self._lock:
                if blas_threads._depth == 0:
                    blas_threads._limiter = ctl.limit(limits=self.n, user_api="blas")
                blas_threads._depth += 1
        return self

    def __exit__(self, *exc):
        if self.active:
            with self._lock:
                blas_threads._depth -= 1
                if blas_threads._depth == 0:
                    blas_threads._limiter.restore_original_limits()
                    blas_threads._limiter = None


def set_num_threads(n):
    """Use ``n`` threads for the blocks' parallel work (default 2, the
    cores of the machines this was tuned on); returns the previous count.

    Under MPI with several workers on one machine, the trainers give each
    worker its share of the cores this way (and hold BLAS at that share),
    so that the workers do not oversubscribe the cores.
    """
    global THREADS, _pool
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n}")
    with _pool_lock:
        previous, THREADS = THREADS, n
        if n != previous and _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
    return previous


def get_num_threads():
    """The number of threads the blocks use (:func:`set_num_threads`)."""
    return THREADS


def workers_for(xp, count, nbytes=None):
    """How many threads to use for ``count`` independent pieces of work on
    arrays of module ``xp`` (``nbytes`` in all, when known): 1 for CuPy, for
    a single piece, for small work and inside a worker thread (no nesting),
    else up to ``THREADS``."""
    if xp is not np or count < 2 or getattr(_local, "in_worker", False):
        return 1
    if nbytes is not None and nbytes < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(THREADS, count))


def max_workers(xp, nbytes=None):
    """:func:`workers_for` work that can be split any number of ways."""
    return workers_for(xp, THREADS, nbytes)


def run_chunks(work, chunks, workers, blas=1):
    """Call ``work(k, chunk)`` for every chunk; thread ``k`` (of ``workers``)
    takes the chunks ``k, k + workers, ...`` in order.  With one worker
    everything runs on the calling thread (BLAS untouched).  Otherwise BLAS
    is held at ``blas`` threads meanwhile.  Exceptions propagate."""
    if workers <= 1:
        for chunk in chunks:
            work(0, chunk)
        return

    def own(k):
        previous = getattr(_local, "in_worker", False)
        _local.in_worker = True
        try:
            for chunk in chunks[k::workers]:
                work(k, chunk)
        finally:
            _local.in_worker = previous

    with blas_threads(blas):
        futures = [get_pool().submit(own, k) for k in range(1, workers)]
        try:
            own(0)
        finally:
            errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e


def split(total, piece, minimum=1):
    """``[(start, stop), ...]`` covering ``range(total)`` in pieces of
    ``piece`` (at least ``minimum``) items; the last piece may be shorter."""
    piece = max(int(piece), int(minimum), 1)
    return [(i, min(i + piece, total)) for i in range(0, total, piece)]


def memory_flat(a):
    """A 1-D view of ``a`` in its memory order, or None when ``a`` is not
    contiguous in any order of its axes.  Two arrays with equal shapes and
    strides have matching flat views."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    order = sorted(range(a.ndim), key=lambda ax: (-abs(a.strides[ax]) if a.shape[ax] > 1 else 0))
    t = a.transpose(order)
    return t.reshape(-1) if t.flags.c_contiguous else None


def elementwise(fn, out, *operands, chunk_bytes=CHUNK_BYTES):
    """``fn(out_piece, *operand_pieces)`` over matching consecutive pieces of
    the 1-D arrays ``out`` and ``operands`` (all of one length), on the
    shared threads when large; returns ``out``.

    ``fn`` must write its whole ``out_piece`` from the matching operand
    pieces and touch nothing else, so the result does not depend on how the
    work is split."""
    n = out.size
    workers = max_workers(np if isinstance(out, np.ndarray) else None, out.nbytes)
    if workers == 1:
        pieces = [(0, n)]      # one thread: whole-array passes have the least overhead
    else:
        per = min(max(1, chunk_bytes // max(1, out.itemsize)), -(-n // workers))
        pieces = split(n, per)

    def work(_k, piece):
        s = slice(*piece)
        fn(out[s], *(a[s] for a in operands))

    run_chunks(work, pieces, workers, blas=0)
    return out
