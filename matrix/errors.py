"""User-facing errors: each names where the problem is and what was expected; the CLI prints them, exit 2."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class UserError(Exception):
    """An error caused by the user's input (spec, files, arguments): reported without a traceback."""

    def __init__(self, message: str | None = None, problems: list[Problem] | None = None):
        self.problems = problems or []
        text = message or "\n".join(str(p) for p in self.problems)
        super().__init__(text)


class SpecError(UserError):
    """The spec is invalid; `problems` lists every problem found, each with file, line and key path."""


class RunError(Exception):
    """The machinery could not do its part (Ray did not start, a cluster is unreachable): not the user's
    input, but nothing a traceback would explain better. The CLI prints it and exits 1."""
class DamagedStore(UserError):
    """A run's database cannot be read (truncated, overwritten, ...): named, never used, repairable."""

    def __init__(self, db_path, detail: str):
        self.db_path = db_path
        run_dir = db_path.parent
        super().__init__(
            f"{db_path}: the run's store is damaged ({detail}); nothing was read from it or written to it. "
            f"`matrix repair {run_dir}` rebuilds it from the finished artifacts' result.json files, "
            f"recomputing nothing (the damaged file is kept beside it as matrix.db.damaged-<time>)")
