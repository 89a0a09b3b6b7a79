"""Reading the fault tier's ledger: the runs of each task and how long two of them were alive at
the same time (``tests/faults/tasks.py`` writes it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tests.faults.tasks import TICK


@dataclass(frozen=True)
class Run:
    """One run (attempt) of a task, as its ledger file tells it."""

    key: str
    pid: int
    started: float
    ticks: tuple[float, ...]
    ended: float | None  # None: killed or interrupted

    @property
    def alive(self) -> tuple[float, ...]:
        return (self.started, *self.ticks, *(() if self.ended is None else (self.ended,)))


def runs(directory: Path) -> dict[str, list[Run]]:
    """key -> its runs, in the order they started."""
    found: dict[str, list[Run]] = defaultdict(list)
    for path in directory.iterdir():
        key, pid, _ = path.name.rsplit(".", 2)
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        starts = [float(t) for kind, t in lines if kind == "start"]
        if not starts:
            continue  # created an instant ago (or killed right then): not alive yet
        started = starts[0]
        ticks = tuple(float(t) for kind, t in lines if kind == "tick")
        ended = next((float(t) for kind, t in lines if kind == "end"), None)
        found[key].append(Run(key=key, pid=int(pid), started=started, ticks=ticks, ended=ended))
    for key_runs in found.values():
        key_runs.sort(key=lambda run: run.started)
    return dict(found)


def overlap(a: Run, b: Run) -> float:
    """Seconds during which both runs were alive: ticks of ``a`` with a tick of ``b`` within one
    tick period, times the period (a run's ticks are the moments it was alive)."""
    other = sorted(b.alive)
    shared = 0
    for moment in a.alive:
        if any(abs(moment - t) <= TICK for t in other):
            shared += 1
    return shared * TICK


@dataclass(frozen=True)
class Overlaps:
    tasks: int
    runs: int
    finished_runs: int
    duplicated_tasks: int  # tasks with more than one run
    overlapping_pairs: int  # pairs of runs of one task alive at the same time
    longest: float  # seconds, the longest such overlap

    def line(self) -> str:
        return (
            f"{self.tasks} tasks, {self.runs} runs ({self.finished_runs} ran to the end), "
            f"{self.duplicated_tasks} task(s) run more than once, {self.overlapping_pairs} "
            f"overlapping pair(s), longest overlap {self.longest:.2f}s"
        )


def overlaps(found: dict[str, list[Run]]) -> Overlaps:
    pairs = 0
    longest = 0.0
    for key_runs in found.values():
        for i, a in enumerate(key_runs):
            for b in key_runs[i + 1 :]:
                shared = overlap(a, b)
                if shared:
                    pairs += 1
                    longest = max(longest, shared)
    all_runs = [run for key_runs in found.values() for run in key_runs]
    return Overlaps(
        tasks=len(found),
        runs=len(all_runs),
        finished_runs=sum(1 for run in all_runs if run.ended is not None),
        duplicated_tasks=sum(1 for key_runs in found.values() if len(key_runs) > 1),
        overlapping_pairs=pairs,
        longest=longest,
    )
