"""Issue 13's figure: a catalog export of 20,000 rows validates and plans in seconds.

Times `load_plan` (with the input files' headers checked, as `editbatch validate` does, and
without, as `editbatch run` does) on a 20,000-row CSV export and, as the baseline in the same
run, on a YAML manifest listing the same 20,000 items one by one. Each load runs in a fresh
process, timed inside it without the imports.

    python -m bench.catalog            # 20,000 rows
    python -m bench.catalog --rows 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

from bench.figures import ratio
from bench.workload import work_dir

_TIMED = """
import json, sys, time
from pipeline.manifest.load import load_plan
started = time.perf_counter()
plan = load_plan(sys.argv[1], check_files=sys.argv[2] == "1")
print(json.dumps({"s": time.perf_counter() - started, "items": len(plan.items)}))
"""


def make_catalog(rows: int) -> tuple[Path, Path]:
    """(CSV manifest, YAML-list manifest) over the same `rows` items, made once and reused."""
    from PIL import Image

    folder = work_dir() / f"catalog-{rows}"
    csv_manifest, yaml_manifest = folder / "from-csv.yaml", folder / "listed.yaml"
    if csv_manifest.exists() and yaml_manifest.exists():
        return csv_manifest, yaml_manifest
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    colours = ["red", "blue", "green", "black", "white"]
    records = []
    for n in range(rows):
        sku = f"sku-{n:05d}"
        Image.new("RGB", (8, 8), (n % 256, n // 256 % 256, 90)).save(images / f"{sku}.png")
        records.append(
            {
                "sku": sku,
                "title": f"Product {n}",
                "colour": colours[n % 5],
                "image": f"images/{sku}.png",
            }
        )
    with open(folder / "products.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    head = {"version": 1, "defaults": {"model": "gpt-image-1", "quality": "low"}}
    prompt = "Put the {title} in {colour} on white marble"
    entry = {"from": "products.csv", "id": "{sku}", "prompt": prompt}
    csv_manifest.write_text(yaml.safe_dump({**head, "items": [entry]}, sort_keys=False))
    listed = [{"id": r["sku"], "image": r["image"], "prompt": prompt.format(**r)} for r in records]
    yaml_manifest.write_text(yaml.safe_dump({**head, "items": listed}, sort_keys=False))
    return csv_manifest, yaml_manifest


def timed_load(manifest: Path, check_files: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _TIMED, str(manifest), "1" if check_files else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def measure(rows: int) -> dict[str, dict]:
    csv_manifest, yaml_manifest = make_catalog(rows)
    figures = {}
    for name, manifest in (("csv", csv_manifest), ("yaml list", yaml_manifest)):
        for check in (True, False):
            best = min(
                (timed_load(manifest, check) for _ in range(3)), key=lambda figure: figure["s"]
            )
            if best["items"] != rows:
                raise RuntimeError(f"{manifest} planned {best['items']} items, not {rows}")
            figures[f"{name}, {'validate' if check else 'plan'}"] = best
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    figures = measure(args.rows)
    print(f"load_plan of {args.rows:,} items, best of 3 fresh processes each:")
    for step in ("validate", "plan"):
        ours, baseline = figures[f"csv, {step}"]["s"], figures[f"yaml list, {step}"]["s"]
        print(
            f"  {step:8} from: CSV {ours:6.2f} s   YAML list {baseline:6.2f} s   "
            f"ratio {ratio(ours, baseline)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
