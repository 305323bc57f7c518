"""Run a model's factorisations: draw every target in order, factorise on every core (or in batches), write.

A mimetic init is a list of independent jobs -- one per head for QK, one per layer for VO -- each "draw a
target from the generator, factorise it, copy the factors into the weights". The draws must happen in the
documented order (that is what makes a seed reproducible); the factorisations need not. So:

* on the CPU, with a parallel solver (``eigh``, ``mixed``, ``randomized``), the calling thread draws target after target
  while a pool of one-thread workers (one per thread torch may use) factorises them, costliest first. Every call
  runs on one thread, so the weights are the same on a laptop and on a 64-core node. At most
  :data:`WINDOW_BYTES` of targets are held at once, so a d = 4096 model does not hold all its heads;
* otherwise (the ``svd`` reference, or an accelerator) consecutive jobs of one shape are drawn and stacked into
  a batch of at most :data:`CHUNK_BYTES` and factorised together on the device.

Either way each target's factors depend only on that target (no solver looks at its batch-mates), so the
weights do not depend on the number of cores, the batch size or the device layout of the work.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mimetic.init.factorize import spare_count
from mimetic.init.solvers import lapack
from mimetic.init.solvers.base import factor_batch

#: Bytes of drawn targets the CPU pool may hold ahead of the workers (at least one per worker is always drawn).
WINDOW_BYTES = 1 << 30
#: Bytes of float64 targets factorised at once in the batched path (heads are processed in chunks that fit).
CHUNK_BYTES = 256 * 2**20

#: Solvers whose CPU factorisations run one target per core (``svd`` is the reference: kept on one thread,
#: exactly as it always ran, so its weights stay bit-for-bit).
PARALLEL_ON_CPU = ("eigh", "mixed", "randomized")


@dataclass(frozen=True)
class FactorJob:
    """One target: ``draw()`` returns it (float64, rows x cols, on ``device``) and its spare rows (or None);
    ``solver`` (a concrete name: not ``"auto"``) factorises it into ``left`` (rows x inner) and ``right``
    (inner x cols); ``write`` stores them."""

    rows: int
    cols: int
    inner: int
    solver: str
    device: torch.device
    draw: Callable[[], tuple[torch.Tensor, torch.Tensor | None]]
    write: Callable[[torch.Tensor, torch.Tensor], None]

    @property
    def batch_key(self) -> tuple:
        return (self.rows, self.cols, self.inner, self.solver, self.device)


def draw_targets(
    count: int,
    rows: int,
    cols: int,
    inner: int,
    *,
    alpha: float,
    beta: float,
    noise_dim: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``count`` targets ``alpha Z + beta I`` stacked (count x rows x cols, float64 on ``device``), and their spares.

    The numbers :func:`mimetic.init.factorize.identity_plus_noise` and
    :func:`~mimetic.init.factorize.balanced_factors` draw, in their order: per target its Z, then its spare rows
    (``spare_count`` x cols, raw N(0, 1)) if it has any. ``device`` (CPU if None; CPU for MPS, which has no float64)
    is where the stack lives, so the scaling runs where the factorisation will; the draws themselves happen on the
    generator's device.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "mps":  # no float64 there: the factorisation runs on the CPU, the weights stay where they are
        device = torch.device("cpu")
    noise_dim = rows if noise_dim is None else noise_dim
    n_spare = spare_count(rows, cols, inner)
    source = generator.device if generator is not None else torch.device("cpu")
    # Drawn into one preallocated block and scaled in place: the same numbers and the same rounding as
    # ``alpha * (z / sqrt(noise_dim)) + beta * I`` on fresh tensors, at a fraction of the memory traffic.
    z = torch.empty(count, rows, cols, dtype=torch.float64, device=source)
    spares = torch.empty(count, n_spare, cols, dtype=torch.float64, device=source) if n_spare else None
    for i in range(count):
        torch.randn(rows, cols, generator=generator, dtype=torch.float64, device=source, out=z[i])
        if n_spare:
            torch.randn(n_spare, cols, generator=generator, dtype=torch.float64, device=source, out=spares[i])
    targets = z.to(device).div_(math.sqrt(noise_dim)).mul_(alpha)
    targets.diagonal(dim1=-2, dim2=-1).add_(beta)
    return targets, (spares.to(device) if n_spare else None)


def head_chunks(count: int, rows: int, cols: int, budget: int | None = None) -> list[range]:
    """Split ``count`` heads into consecutive ranges whose float64 targets fit in ``budget`` bytes (at least one)."""
    budget = CHUNK_BYTES if budget is None else budget
    size = max(1, budget // max(rows * cols * 8, 1))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def run_jobs(jobs: Iterable[FactorJob]) -> None:
    """Draw every job in order, factorise it and write its factors (the module docstring says where each runs)."""
    for on_cores, run in itertools.groupby(jobs, key=lambda job: job.device.type == "cpu"
                                           and job.solver in PARALLEL_ON_CPU):
        if on_cores:
            _run_on_cores(run)  # one pool for the whole run: a layer's VO overlaps the next layer's heads
        else:
            for _, group in itertools.groupby(run, key=lambda job: job.batch_key):
                _run_batched(list(group))


def _run_batched(jobs: list[FactorJob]) -> None:
    first = jobs[0]
    for chunk in head_chunks(len(jobs), first.rows, first.cols):
        batch = jobs[chunk.start:chunk.stop]
        drawn = [job.draw() for job in batch]
        spares = None if drawn[0][1] is None else torch.stack([s for _, s in drawn])
        left, right = factor_batch(torch.stack([t for t, _ in drawn]), first.inner, solver=first.solver,
                                   spares=spares)
        for i, job in enumerate(batch):
            job.write(left[i], right[i])


def _factor_one(job: FactorJob, target: torch.Tensor, spares: torch.Tensor | None):
    left, right = factor_batch(target[None], job.inner, solver=job.solver,
                               spares=None if spares is None else spares[None])
    return left[0], right[0]


def _run_on_cores(jobs: Iterable[FactorJob]) -> None:
    """Draw in order on this thread; factorise on ``workers`` threads, the costliest drawn job first.

    The order of the writes does not matter (each job owns its weights). Starting the costliest waiting job
    first matters: a layer's VO (a full eigendecomposition, ~5 heads' worth) is drawn last, and run in draw
    order it would finish alone on one core while the others idle.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    workers = torch.get_num_threads()  # read before _one_thread_per_call sets it to 1
    upcoming = iter(jobs)
    waiting: list = []  # heap of (-cost, draw number, job, target, spares): drawn, not started
    running: dict = {}  # future -> (job, bytes held)
    held, drawn, exhausted = 0, 0, False

    def finish(futures) -> None:
        nonlocal held
        for future in futures:
            job, size = running.pop(future)
            job.write(*future.result())
            held -= size

    with _one_thread_per_call(), ThreadPoolExecutor(workers) as pool:
        while True:
            while waiting and len(running) < workers:
                _, _, job, target, spares = heapq.heappop(waiting)
                running[pool.submit(_factor_one, job, target, spares)] = (job, target.numel() * target.element_size())
            may_draw = held < WINDOW_BYTES or len(waiting) + len(running) < workers  # always keep the workers fed
            if not exhausted and may_draw:
                job = next(upcoming, None)
                if job is None:
                    exhausted = True
                    continue
                target, spares = job.draw()  # on this thread, in order, while the workers factorise
                held += target.numel() * target.element_size()
                heapq.heappush(waiting, (-_cost(job), drawn, job, target, spares))
                drawn += 1
                finish(wait(running, timeout=0).done)
            elif running:
                finish(wait(running, return_when=FIRST_COMPLETED).done)
            elif exhausted and not waiting:
                return


def _cost(job: FactorJob) -> float:
    """Relative cost of a job: the tridiagonal reduction (side^3) plus the back-transformation (side^2 * kept)."""
    side = min(job.rows, job.cols)
    return side**2 * (side + min(job.inner, side))


@contextlib.contextmanager
def _one_thread_per_call():
    """torch and the BLAS/LAPACK libraries on one thread each while the pool runs (then as before).

    LAPACK's tridiagonal reduction is half BLAS-2 and gains little from threads inside one call; one call per
    core gains ~2x on 2 cores. The number of threads never changes a result here (each call is sequential).
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    # threadpoolctl limits only the libraries already loaded: load scipy's LAPACK (its own OpenBLAS) first,
    # or the workers' first calls would load it unlimited (measured: 2 threads per call, 1.7x slower overall).
    lapack.syevr(np.float32), lapack.syevr(np.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)
