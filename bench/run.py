"""The benchmark's one command: `python -m bench.run [--quick] [--only 1,3]` runs the scenarios of
issue 5, prints the table, and writes bench/results.md (a --quick run writes
bench/work/results-quick.md instead: its sizes are not the targets' scale).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.batchjob import batch_job
from bench.bigjob import big_job
from bench.cpu import cpu_per_item
from bench.figures import Result, Row, machine, markdown, text_table
from bench.memory import peak_memory
from bench.pacing import fast_short, heavy_tail, limit_changes
from bench.scenarios import faults, rate_known, rate_unknown
from bench.workload import work_dir

HERE = Path(__file__).resolve().parent
# Sizes per mode. The default run takes about six minutes on two cores (plus about a minute
# the first time, to make the 100,000 files of scenario 5); --quick about one.
SIZES = {
    "default": {
        "rate": {"n": 200},
        "unknown": {"n": 200, "starved": (100, 8, 2.0)},
        "cpu": {},
        "big": {"count": 100_000},
        "memory": {"n": 384, "concurrency": 256},
        "batch": {"n": 2000},
        "changes": {"n": 300},
        "fast": {"n": 600},
        "tail": {"n": 300},
    },
    "quick": {
        "rate": {"n": 40},
        "unknown": {"n": 40, "starved": None},
        "cpu": {"scale": 0.2, "repeats": 1},
        "big": {"count": 10_000},
        "memory": {"n": 24, "concurrency": 16, "latency": 2.0, "distinct": 4, "repeats": 1},
        "batch": {"n": 200, "distinct": 50, "batch_seconds": 2.0},
        "changes": {"n": 90},
        "fast": {"n": 150},
        "tail": {"n": 60},
    },
}


def scenarios(sizes: dict) -> dict[str, Callable[[dict], Result]]:
    """Scenario number -> a call that runs it; `shared` carries scenario 1's wall to 3."""

    def first(shared: dict) -> Result:
        result = rate_known(**sizes["rate"])
        shared["fault_free_wall"] = result.raw["editbatch"]["wall_s"]
        return result

    return {
        "1": first,
        "2": lambda shared: rate_unknown(**sizes["unknown"]),
        "3": lambda shared: faults(**sizes["rate"], fault_free_wall=shared.get("fault_free_wall")),
        "4": lambda shared: cpu_per_item(**sizes["cpu"]),
        "5": lambda shared: big_job(**sizes["big"]),
        "6": lambda shared: peak_memory(**sizes["memory"]),
        "7": lambda shared: batch_job(**sizes["batch"]),
        "8": lambda shared: limit_changes(**sizes["changes"]),
        "9": lambda shared: fast_short(**sizes["fast"]),
        "10": lambda shared: heavy_tail(**sizes["tail"]),
    }


def run_all(chosen: list[str], sizes: dict, log=print) -> list[Result]:
    """Run the chosen scenarios in order; one that breaks is reported as a row, not a crash."""
    results, shared = [], {}
    table = scenarios(sizes)
    for number in chosen:
        started = time.perf_counter()
        log(f"scenario {number} ...")
        try:
            results.append(table[number](shared))
        except Exception as exc:  # a broken scenario must not hide the figures of the others
            log(traceback.format_exc())
            row = Row(f"{number} (broken)", "did not complete", "", verdict=f"ERROR: {exc}")
            results.append(Result(f"{number} (broken)", rows=[row], notes=[str(exc)]))
        log(f"scenario {number}: {time.perf_counter() - started:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10", help="scenarios to run, e.g. 1,3")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "default"
    chosen = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [number for number in chosen if number not in scenarios(SIZES[mode])]
    if unknown:
        parser.error(f"--only: no scenario {', '.join(unknown)}; they are numbered 1 to 10")
    started = time.perf_counter()
    results = run_all(chosen, SIZES[mode], log=lambda text: print(text, file=sys.stderr))
    took = time.perf_counter() - started
    print(text_table(results), flush=True)
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    if args.only != parser.get_default("only"):
        command += f" --only {args.only}"
    info = machine()
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    target = HERE / "results.md" if mode == "default" else work / "results-quick.md"
    target.write_text(markdown(results, info, command, took))
    raw = {"machine": info, "mode": mode, "results": {r.title: r.raw for r in results}}
    (work / f"results-{mode}.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"\nwritten: {target} ({took:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
