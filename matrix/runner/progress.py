"""Progress of a sweep: rich bars per stage kind on a terminal, plain timestamped lines otherwise."""
from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

KIND_ORDER = ("model", "checkpoint", "data", "subset", "generate", "construct", "train", "merge", "evaluate")


class SweepProgress:
    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or Console(stderr=True)
        self.live = sys.stderr.isatty() if live is None else live
        self.bars: Progress | None = None
        self.tasks: dict[str, int] = {}

    def start(self, planned, store) -> None:
        records = store.stages()
        todo = Counter(s.kind for s in planned.graph.stages.values()
                       if not (records.get(s.key) and records[s.key].status == "done"))
        total = sum(todo.values())
        self.console.print(f"{len(planned.cells)} cells, {len(planned.graph.stages)} stages, {total} to run")
        if not self.live:
            return
        self.bars = Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
        for kind in KIND_ORDER:
            if todo.get(kind):
                self.tasks[kind] = self.bars.add_task(kind, total=todo[kind])
        self.bars.start()

    def event(self, event: str, stage, detail: str) -> None:
        if self.bars is not None and event in ("done", "failed", "blocked", "adopted") and stage.kind in self.tasks:
            self.bars.advance(self.tasks[stage.kind])
        if event == "started" and self.bars is not None:
            return
        stamp = time.strftime("%H:%M:%S")
        style = {"failed": "red", "done": "green", "blocked": "yellow", "damaged": "yellow"}.get(event, "")
        text = f"[{stamp}] {event:<8} {stage.label}" + (f"  {detail}" if detail else "")
        self.console.print(text, style=style, markup=False, highlight=False)

    def note(self, text: str) -> None:
        """A line about the sweep itself (setup before the first stage)."""
        self.console.print(f"[{time.strftime('%H:%M:%S')}] {text}", markup=False, highlight=False)

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()
