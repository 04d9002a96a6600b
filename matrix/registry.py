"""A name -> plug-in registry, one per plug-in kind, and the registries of the kinds the core consults.

The core (spec checks, grid, graph keys) looks plug-ins up by name here and never imports a plug-in
module: each registry names the package its plug-ins live in, as a string, and imports that package
on the first lookup (as Hydra discovers plug-ins by scanning a namespace). A plug-in registers itself
into the core's registry with `@METHODS.register("id")` when its module is imported. Plug-in kinds
only plug-ins consult (augmentations) keep their registry in their own package.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownPlugin(KeyError):
    """Raised when a name is not registered; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry(Generic[T]):
    """Plug-ins register themselves by name with a decorator; the registry imports its package lazily."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove a plug-in (a test's toy plug-in, so the tests after it see the shipped ones only)."""
        self._items.pop(name, None)

    def _load(self) -> None:
        if not self._loaded:
            import importlib
            import pkgutil

            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise UnknownPlugin(self.kind, name, self.names())
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# The plug-in kinds the core looks up. Their base classes (the contracts) live with the plug-ins:
# `matrix.methods.base.Method`, `matrix.methods.objectives.base.Objective`, `matrix.benchmarks.base.Benchmark`,
# `matrix.models.family.ModelFamily`, `matrix.runner.stage.StageKind`; each of those modules re-exports its
# registry under the same name.
# The synthetic world's benchmark writers (`matrix.world.benchmarks`, re-exported there) are looked up
# too: spec validation refuses `synthetic:` for a benchmark the world cannot write.
METHODS: Registry[Any] = Registry("method", "matrix.methods")
OBJECTIVES: Registry[Any] = Registry("objective", "matrix.methods.objectives")
BENCHMARKS: Registry[Any] = Registry("benchmark", "matrix.benchmarks")
FAMILIES: Registry[Any] = Registry("model family", "matrix.models.families")
KINDS: Registry[Any] = Registry("stage kind", "matrix.runner.kinds")
SYNTHETIC_BENCHMARKS: Registry[Any] = Registry("synthetic benchmark", "matrix.world.benchmarks")
