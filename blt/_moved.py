"""Old module paths (blt 0.1's flat layout) that still import, for one release, with a `DeprecationWarning`.

`import blt.tokenizers` (or `from blt import tokenizers`) finds the module at its new path and binds it under the old
name as the very same module object, so its names, private ones included, are the same objects and monkeypatching
the old path patches the new one. An old module whose contents now live in two modules (`blt.corpus`) imports as a
read-only view of both. Paths that became packages of the same name (`blt.compare`, `blt.llm`, `blt.report`,
`blt.patching`, `blt.cli`) re-export their old names from the package instead.

Imports nothing from blt at import time (the finder imports the new module by name when an old path is imported).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Sequence

REMOVED_IN = "0.3"

# old path -> new path(s); several new paths: the old module's names were split between them (first match wins)
MOVED: dict[str, tuple[str, ...]] = {
    "blt.model": ("blt.bytelm.model",),
    "blt.sources": ("blt.bytelm.sources",),
    "blt.data": ("blt.bytelm.data",),
    "blt.checkpoint": ("blt.bytelm.checkpoint",),
    "blt.entropy": ("blt.bytelm.entropy",),
    "blt.train": ("blt.bytelm.train",),
    "blt.corpus": ("blt.bytelm.corpus", "blt.segment.corpus", "blt.bytelm.score_cache"),
    "blt.segmenters": ("blt.segment.patcher",),
    "blt.tokenizers": ("blt.segment.tokenizers",),
    "blt.pretrained": ("blt.segment.pretrained",),
    "blt.baselines": ("blt.compare.baselines",),
    "blt.compare_rates": ("blt.compare.rates",),
    "blt.compare_plots": ("blt.compare.plots",),
    "blt.experiment": ("blt.experiments.config",),
    "blt.experiment_run": ("blt.experiments.run",),
    "blt.experiment_dir": ("blt.experiments.outdir",),
    "blt.experiment_report": ("blt.experiments.report",),
    "blt.logprobs": ("blt.llm.logprobs",),
    "blt.llm_report": ("blt.llm.report",),
    "blt.cli_shared": ("blt.cli.shared",),
    "blt.cli_llm": ("blt.cli.llm",),
    "blt.cli_experiment": ("blt.cli.experiment",),
}


def moved_message(old: str, new: Sequence[str]) -> str:
    return f"{old} moved to {' and '.join(new)}; the old path will be removed in {REMOVED_IN}"


def moved_names(module: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module-level `__getattr__` for `module` whose names in `table` (name -> new module) moved away: reading one
    warns (at the caller's line) and returns the new module's object; any other name is an AttributeError."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(moved_message(f"{module}.{name}", [f"{table[name]}.{name}"]), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(table[name]), name)

    return __getattr__


class _View(types.ModuleType):
    """An old module split in two: attribute reads look in each new module in turn."""

    def __init__(self, name: str, parts: list[types.ModuleType]) -> None:
        super().__init__(name, f"moved: {', '.join(p.__name__ for p in parts)}")
        self._parts = parts

    def __getattr__(self, name: str) -> object:
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for p in self._parts for n in dir(p)})


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: tuple[str, ...]) -> None:
        self.old, self.new = old, new
        self.saved_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        # stacklevel 2 skips importlib's own frames: the warning names the user's import line
        warnings.warn(moved_message(self.old, self.new), DeprecationWarning, stacklevel=2)
        parts = [importlib.import_module(n) for n in self.new]
        if len(parts) > 1:
            return _View(self.old, parts)
        self.saved_spec = parts[0].__spec__
        return parts[0]

    def exec_module(self, module: types.ModuleType) -> None:
        if self.saved_spec is not None:  # the import system set the old name's spec on the real module: put it back
            module.__spec__ = self.saved_spec


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(fullname, new))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before any editable-install finder that maps blt.* by name
