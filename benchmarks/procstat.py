"""What /proc says about a process and the machine: CPU seconds, peak and current memory."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat`` utime and stime); 0 if it
    is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3, utime field 14 and stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``, of its children that have ended (cutime, cstime) and of those still
    running: a PostgreSQL server's postmaster and its backends, say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / TICKS
    return own + sum(cpu_seconds(child) for child in children_of(pid))


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory (``VmHWM``), in MiB."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def rss_mib(pid: int) -> float | None:
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def children_of(ppid: int) -> list[int]:
    """Direct children of ``ppid`` (PostgreSQL's backends are the postmaster's)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == ppid:
            out.append(int(entry.name))
    return out


@dataclass(frozen=True)
class MachineCpu:
    """Jiffies from the first line of /proc/stat."""

    busy: int
    total: int

    @classmethod
    def now(cls) -> MachineCpu:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])
        return cls(total - idle, total)

    def busy_share_since(self, before: MachineCpu) -> float:
        """The share of all cores' time spent busy between ``before`` and this sample."""
        total = self.total - before.total
        return (self.busy - before.busy) / total if total else 0.0


def machine() -> dict[str, str]:
    """The machine the figures were measured on: cores, memory, load."""
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    free = ""
    if shutil.which("free"):
        lines = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()
        mem = next((ln for ln in lines if ln.startswith("Mem:")), "")
        if mem:
            parts = mem.split()
            free = f"{parts[1]} total, {parts[-1]} available"
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"nproc": nproc, "memory": free, "load average (1, 5, 15 min)": " ".join(load)}
