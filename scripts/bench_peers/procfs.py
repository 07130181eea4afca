"""A server's processes and their CPU time, from /proc (Linux, like wrk's Debian package).

A server is its process and every descendant: MLServer's inference worker, LitServe's API server and
inference worker, BentoML's worker (which starts a session of its own, so sessions and process groups
would miss it).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    start_ticks: int
    """When it started (ticks since boot): with the pid, names one process even if the pid is reused."""
    cpu_ticks: int
    """utime + stime, plus cutime + cstime: a child it reaped moves its time here, so totals never drop."""


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line (proc(5)); the command name may hold spaces and parentheses."""
    pid, _, rest = text.partition(" (")
    fields = rest[rest.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5), `state`
    return ProcStat(
        pid=int(pid),
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
        cpu_ticks=sum(int(f) for f in fields[11:15]),
    )


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for path in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # exited while we looked
            stat = parse_stat(path.read_text())
            stats[stat.pid] = stat
    return stats


def family(root: int, stats: dict[int, ProcStat] | None = None) -> list[ProcStat]:
    """`root` and its descendants, as running now."""
    stats = all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    members, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            members.append(stats[pid])
            todo.extend(children.get(pid, []))
    return members


def cpu_seconds(root: int) -> float:
    """CPU time used so far by `root` and its descendants."""
    return sum(stat.cpu_ticks for stat in family(root)) / CLOCK_TICKS


def kill_leftovers(members: list[ProcStat]) -> None:
    """SIGKILL those of `members` still running (same pid, same start time): LitServe's API server and
    inference worker outlive a SIGTERM to its main process, still holding the port."""
    stats = all_stats()
    for member in members:
        running = stats.get(member.pid)
        if running is not None and running.start_ticks == member.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGKILL)
