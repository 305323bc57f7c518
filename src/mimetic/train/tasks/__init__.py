"""The tasks a run can train (``base.py`` holds the registry); each family registers itself on import."""

from mimetic.train.tasks import classification, language_modeling  # noqa: F401  (the families)
from mimetic.train.tasks.base import TASKS, Sums, Task, build_task
from mimetic.train.tasks.classification import Classification
from mimetic.train.tasks.language_modeling import LanguageModeling

__all__ = ["TASKS", "Classification", "LanguageModeling", "Sums", "Task", "build_task"]
