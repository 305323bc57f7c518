"""One table engine: run collection, declarative table specs, paired-seed statistics, sections, the report.

``scripts/make_tables.py`` is the command line over this package (``scripts/make_figures.py`` draws the
figures made from models). Modules, in reading order: ``runs`` (finished run directories, read through
``mimetic.runtime.rundir``), ``metrics`` (what a number means: direction, digits, unit), ``tables``
(rows paired by seed, means, gaps, t-intervals, conflicts), ``specs`` (results/tables.yaml: which runs,
rows, baseline, recipe and commands make a table), ``sections`` (a table's markdown, merged into a
results file), ``claims`` (results/claims.yaml: the reproduction report's statuses, on the same tables),
``paper`` (results/paper_numbers.yaml), ``outputs`` (stamps, evidence and the write guard), ``figures``
and the figure modules drawn from models (``products``, ``product_figures``, ``attention_figures``,
``conv_figures``, ``run_models``).
"""

from mimetic.errors import MimeticError


class AnalysisError(MimeticError):
    """Runs or result files that cannot give the table asked for (conflicts, corrupt files, overwrites)."""


def run_script(make, args) -> int:
    """The analysis scripts' error boundary: print what ``make(args)`` says, or one ``error:`` line and 2."""
    import sys

    try:
        lines = make(args)
    except MimeticError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
