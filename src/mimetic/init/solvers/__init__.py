"""Speed above the method: faster factorisations than the reference SVD, and the job runner that spreads them.

:mod:`.base` holds the registry (name -> solver) and ``"auto"``; the solver families register themselves there
and are listed here; :mod:`.jobs` draws targets in order and factorises them on every core or in batches.
"""

from mimetic.init.solvers import eigh, randomized  # noqa: F401  (the solver families register with .base)
from mimetic.init.solvers.base import (
    AUTO_REFERENCE_MAX_WIDTH,
    SOLVERS,
    factor_batch,
    register_solver,
    resolve_solver,
    solver_names,
    solver_problem,
)
from mimetic.init.solvers.jobs import FactorJob, draw_targets, head_chunks, run_jobs

__all__ = [
    "AUTO_REFERENCE_MAX_WIDTH",
    "SOLVERS",
    "FactorJob",
    "draw_targets",
    "factor_batch",
    "head_chunks",
    "register_solver",
    "resolve_solver",
    "run_jobs",
    "solver_names",
    "solver_problem",
]
