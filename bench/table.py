"""The README's benchmark table: the summary of the latest full `make bench`, written from
bench/results/latest.json between two markers in README.md (`make bench` does it after a full run).

    python -m bench.table            # write it
    python -m bench.table --check    # exit 1 if README.md does not show bench/results/latest.json

Only a full run is written: every section at the default sizes (not QUICK, no BENCH_ONLY). The
table holds one run and how to read it; earlier runs are in git history.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LATEST = ROOT / "bench" / "results" / "latest.json"
BEGIN = "<!-- bench-table: written by `python -m bench.table` from bench/results/latest.json; do not edit -->"
END = "<!-- bench-table: end -->"
SECTIONS = ("publish", "fanout", "orders", "saga", "admin", "readside", "webhooks")

HOW_TO_READ = """\
How to read it:

- Each line stands beside a reference measured in the same run, on the same cores and database:
  hand-written psycopg 3 SQL, plain DRF, plain Celery, the plain Django + Celery saga
  (`bench/plainsaga/`), direct POSTs, or pgqueuer.
- **ratio** is higher-is-better on every line: ShelfWise's rate over the reference's, or, for CPU,
  latency and memory, the reference's figure over ShelfWise's. Above 1, ShelfWise does better.
- **CPU ratio** is the same for CPU time (the Python processes and their PostgreSQL backends). Other
  load on the machine stretches rates but hardly CPU: when the two ratios disagree, the machine was
  busy during one of the phases.
- Absolute figures move ±30 % between runs on a shared 2-core machine; compare ratios.
  [bench/README.md](bench/README.md) says how each line is measured; earlier runs are in git history."""


def not_full(results: dict) -> str | None:
    """Why `results` is not a full run, or None if it is."""
    config = results.get("config", {})
    # Runs from before the `quick` flag was recorded: QUICK shortened every phase to 2 s.
    if config.get("quick", config.get("seconds") != 10.0):
        return "a QUICK run"
    missing = [s for s in SECTIONS if s not in config.get("only", [])]
    if missing:
        return f"a partial run (without {', '.join(missing)})"
    return None


def render(results: dict) -> str:
    """The Markdown between the markers: which run, its summary table, how to read it."""
    machine = results["machine"]
    load = machine.get("load_average_at_start", [0.0])[0]
    lines = [
        f"The latest full `make bench`: {machine['date'][:10]}, commit {machine.get('commit') or 'unknown'},"
        f" {machine['cores']} cores, load average {load:.1f} at the start, {results['seconds'] / 60:.0f} minutes.",
        "",
        "| ShelfWise | figure | reference, same run | ratio | CPU ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["summary"]:
        cells = [row["what"], row["figure"], row["ceiling"], row["ratio"], row.get("cpu_ratio") or "—"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join([*lines, "", HOW_TO_READ])


def replace_block(text: str, block: str) -> str:
    """`text` with what lies between the markers replaced by `block`."""
    try:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} and {END!r}") from None
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md does not show latest.json")
    parser.add_argument("--results", type=Path, default=LATEST)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    reason = not_full(results)
    if reason:
        print(f"{args.results} holds {reason}: the README shows full runs only", file=sys.stderr)
        return 1
    text = args.readme.read_text()
    updated = replace_block(text, render(results))
    if args.check:
        if updated != text:
            print(f"{args.readme} does not show {args.results}: run python -m bench.table", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
