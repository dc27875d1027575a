"""CPU time and peak memory of a process by its pid, read from /proc (Linux), so that the
benchmark measures the simulator and each client separately.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is stat's field 3 (the state): utime and stime are its fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MB.

    Not ru_maxrss: a child's ru_maxrss starts at its parent's peak (vfork + exec carries it
    over), so a client started by the benchmark would report the benchmark's memory.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
