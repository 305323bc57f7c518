"""Run collection, paired-seed statistics, tables that know their metric, paper numbers, figures.

``scripts/make_tables.py`` is the command line over this package. Modules, in reading order:
``runs`` (finished run directories, read through ``mimetic.runtime.rundir``), ``metrics``
(what a number means: direction, digits, unit), ``tables`` (comparisons and table specs),
``paper`` (results/paper_numbers.yaml), ``report`` (markdown sections merged per experiment),
``outputs`` (fingerprints and the never-overwrite-other-results guard), ``figures``.
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
