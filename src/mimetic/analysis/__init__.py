"""Run collection, paired-seed statistics, tables that know their metric, paper numbers, figures.

``scripts/make_tables.py`` is the command line over this package. Modules, in reading order:
``runs`` (finished run directories, read through ``mimetic.train.rundir``), ``metrics``
(what a number means: direction, digits, unit), ``tables`` (comparisons and table specs),
``paper`` (results/paper_numbers.yaml), ``report`` (markdown sections merged per experiment),
``outputs`` (fingerprints and the never-overwrite-other-results guard), ``figures``.
"""

from mimetic.errors import MimeticError


class AnalysisError(MimeticError):
    """Runs or result files that cannot give the table asked for (conflicts, corrupt files, overwrites)."""
