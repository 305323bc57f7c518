"""Name -> (typed schema, function) registries for models, datasets, inits and the like.

Every config group that *selects* something (``model=``, ``dataset=``, ``init=`` ...) is
backed by a :class:`Registry`. The allowed names are what has been registered, never a
hand-kept list, and each option's typed schema lives next to the function that uses it:

    @dataclass
    class MyModel(Option):
        width: int = 64

        def problems(self, group: str) -> list[str]:
            return [] if self.width > 0 else [f"{group}.width must be > 0, got {self.width}"]

    MODELS.register("my_model", MyModel)(build_my_model)

Nothing here imports the training harness, so the init library can use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mimetic.errors import ConfigError


@dataclass
class Option:
    """Base schema of a registered option: ``name`` selects the entry, subclasses add keys.

    ``problems`` returns one message per impossible value (values that type-check but
    cannot work), each naming the full key (``group`` is the config group's name, e.g.
    ``"model"``) and, where there is one, the fix.
    """

    name: str = ""

    def problems(self, group: str) -> list[str]:
        return []


@dataclass(frozen=True)
class Entry:
    name: str
    schema: type[Option]
    fn: Callable[..., Any]
    help: str = ""


class Registry:
    """Registered options of one kind (``"model"``, ``"dataset"``, ``"init"`` ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, schema: type[Option], *, help: str = "") -> Callable[[Callable], Callable]:
        """Decorator: register ``fn`` under ``name`` with its config ``schema``."""

        def add(fn: Callable) -> Callable:
            self.add(name, schema, fn, help=help)
            return fn

        return add

    def add(self, name: str, schema: type[Option], fn: Callable, *, help: str = "") -> None:
        if name in self._entries and self._entries[name].fn is not fn:
            raise ValueError(f"{self.kind} '{name}' is already registered (by {self._entries[name].fn.__module__})")
        self._entries[name] = Entry(name, schema, fn, help)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; a ``ConfigError`` listing the registered names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"{self.kind}.name={name!r} is not a registered {self.kind}; choose one of: {', '.join(self.names())}"
            ) from None

    def default_options(self, name: str) -> Option:
        """The schema of ``name`` filled with its defaults."""
        return self.get(name).schema(name=name)
