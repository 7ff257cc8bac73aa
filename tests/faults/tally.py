"""What the fault-injection runs found, per fault and in total, and how it is printed.

Every fault run (clean scan, faulted scan, clean scan) adds one Row; the directory's conftest
prints the table at the end of the pytest session (also without -s), and each test asserts its
own row is all zeros.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["TALLY", "Counts", "Row", "Tally"]


@dataclass
class Counts:
    """The four numbers the issue asks for, with what was seen for a reader of the report."""

    wrongly_resolved: int = 0  # open in the baseline, resolved by the faulted scan
    lost: int = 0  # open in the baseline, not open after the next clean scan
    duplicated: int = 0  # a NEW/REOPENED flip of an open finding, or a stale open-index row
    crashes: int = 0  # an exception out of the job, or a traceback / undocumented exit
    symptoms: list[str] = field(default_factory=list)  # what exactly, for the report
    outcome: str = ""  # how the faulted run ended (run status, probe status, exit code)

    @property
    def bad(self) -> int:
        return self.wrongly_resolved + self.lost + self.duplicated + self.crashes

    def explain(self) -> str:
        head = (
            f"wrongly resolved {self.wrongly_resolved}, lost {self.lost}, "
            f"duplicated {self.duplicated}, crashes {self.crashes}"
        )
        return "; ".join([head, *self.symptoms])


@dataclass(frozen=True, slots=True)
class Row:
    group: str  # arm, random, storage, cli, probe
    name: str
    counts: Counts
    seconds: float


class Tally:
    def __init__(self) -> None:
        self._rows: list[Row] = []
        self._lock = threading.Lock()

    def add(self, row: Row) -> None:
        with self._lock:
            self._rows.append(row)

    @property
    def rows(self) -> list[Row]:
        with self._lock:
            return list(self._rows)

    def lines(self) -> list[str]:
        groups: dict[str, int] = {}
        for r in self.rows:
            groups.setdefault(r.group, len(groups))
        rows = sorted(self.rows, key=lambda r: (groups[r.group], r.name))  # parallel runs
        if not rows:
            return []
        out = [
            f"{'group':<8} {'fault':<58} {'wrong':>5} {'lost':>4} {'dup':>3} {'crash':>5} "
            f"{'s':>5}  faulted run ended",
        ]
        total = Counts()
        for r in rows:
            c = r.counts
            out.append(
                f"{r.group:<8} {r.name[:58]:<58} {c.wrongly_resolved:>5} {c.lost:>4} "
                f"{c.duplicated:>3} {c.crashes:>5} {r.seconds:>5.1f}  {c.outcome[:60]}"
            )
            total.wrongly_resolved += c.wrongly_resolved
            total.lost += c.lost
            total.duplicated += c.duplicated
            total.crashes += c.crashes
        out.append(
            f"{'TOTAL':<8} {f'{len(rows)} fault runs':<58} {total.wrongly_resolved:>5} "
            f"{total.lost:>4} {total.duplicated:>3} {total.crashes:>5} "
            f"{sum(r.seconds for r in rows):>5.1f}"
        )
        bad = [r for r in rows if r.counts.bad]
        if bad:
            out.append("runs that went wrong:")
            out += [f"  {r.group}/{r.name}: {r.counts.explain()}"[:400] for r in bad]
        return out


TALLY = Tally()
