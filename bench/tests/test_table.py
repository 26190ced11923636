"""`python -m bench.table`: the README shows the latest full run, between its markers, and nothing else."""

from __future__ import annotations

import json

from bench import table

SUMMARY = [
    {
        "what": "the whole saga: CPU per confirmed order, every process",
        "figure": "98.1 ms",
        "ceiling": "plain saga 101.0 ms",
        "ratio": "1.03",
        "cpu_ratio": "1.03",
    },
    {
        "what": "webhook deliveries to a loopback receiver (5 endpoints)",
        "figure": "700 deliveries/s",
        "ceiling": "direct POSTs 1,100/s",
        "ratio": "0.64",
        "cpu_ratio": "",
    },
]


def results(**config: object) -> dict:
    return {
        "machine": {
            "date": "2026-12-07T03:00:00+00:00",
            "commit": "abc1234",
            "cores": 2,
            "load_average_at_start": [0.4],
        },
        "config": {"quick": False, "seconds": 10.0, "only": list(table.SECTIONS), **config},
        "summary": SUMMARY,
        "seconds": 840.0,
    }


def readme(tmp_path, block: str = "old table") -> object:
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nbefore\n\n{table.BEGIN}\n{block}\n{table.END}\n\nafter\n")
    return path


def test_writes_the_summary_between_the_markers_only(tmp_path):
    latest = tmp_path / "latest.json"
    latest.write_text(json.dumps(results()))
    path = readme(tmp_path)

    assert table.main(["--results", str(latest), "--readme", str(path)]) == 0

    text = path.read_text()
    assert text.startswith("# Title\n\nbefore\n\n")
    assert text.endswith("\n\nafter\n")
    assert "old table" not in text
    assert "2026-12-07, commit abc1234, 2 cores, load average 0.4 at the start, 14 minutes" in text
    assert (
        "| the whole saga: CPU per confirmed order, every process | 98.1 ms | plain saga 101.0 ms | 1.03 | 1.03 |"
        in text
    )
    assert "| 700 deliveries/s | direct POSTs 1,100/s | 0.64 | — |" in text
    assert "How to read it" in text
    assert table.main(["--check", "--results", str(latest), "--readme", str(path)]) == 0


def test_check_fails_when_the_readme_shows_another_run(tmp_path):
    latest = tmp_path / "latest.json"
    latest.write_text(json.dumps(results()))

    assert table.main(["--check", "--results", str(latest), "--readme", str(readme(tmp_path))]) == 1


def test_quick_and_partial_runs_are_refused(tmp_path):
    path = readme(tmp_path)
    for config in ({"quick": True}, {"only": ["publish", "fanout"]}):
        latest = tmp_path / "latest.json"
        latest.write_text(json.dumps(results(**config)))

        assert table.main(["--results", str(latest), "--readme", str(path)]) == 1
        assert "old table" in path.read_text()
