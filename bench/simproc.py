"""The simulator in a process of its own, so that its CPU and memory are not the client's:
`SimProcess` starts it from a SimConfig's fields, gives its base URL, counters, CPU seconds
and peak RSS (read from /proc), resets and stops it. `python -m bench.simproc JSON` is the
child's side.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from bench.procstat import process_cpu_s, process_peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent


class SimProcess:
    """`with SimProcess({"rpm": 600, "latency_s": 1}) as sim:` then `sim.base_url` etc."""

    def __init__(self, config: dict):
        self.config = dict(config)
        self.base_url = ""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> SimProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", json.dumps(self.config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._proc.stdout.readline().strip() if self._proc.stdout else ""
        if not line.startswith("http://"):
            self.__exit__()
            raise RuntimeError(
                f"the simulator did not start (config {self.config}); its stderr is above"
            )
        self.base_url = line
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the simulator is not running")
        return self._proc.pid

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.root}/_sim/stats", timeout=30) as response:
            return json.load(response)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.root}/_sim/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def peak_rss_mb(self) -> float:
        return process_peak_rss_mb(self.pid)


async def _serve(config: dict) -> None:
    from pipeline.simulator import SimConfig, running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(SimConfig(**config)) as url:
        print(url, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
