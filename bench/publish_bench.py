"""Benchmark 0: what positions and per-aggregate streams cost the publish transaction.

The platform's recording statement (1 event + 5 deliveries in one statement,
`domain_events.sql.insert_event_and_deliveries`, sent by `bench/ceiling.py publish --record`) in
BENCH_PUBLISH_PROCS concurrent processes (default 8), two ways, in rounds so that drift on a shared
machine touches both alike:

* (a) no positions: the same statement without the stream row, and the position column's default
  dropped for this line (restored after);
* (b) as the platform records: the position drawn by the insert (the column's default, the
  sequence's next value) and the aggregate's stream row upserted, four events per
  aggregate as an order's life goes (one insert of the row, three updates).

Every run ends with every event recorded, and in (b) numbered with distinct positions and
revisions (checked). The figures are events published per second.
"""

from __future__ import annotations

import json
import statistics

from bench.ceiling import recording_statement
from bench.fanout.names import HANDLERS_PER_EVENT
from bench.fanout_bench import split
from bench.harness import Bench, cpu_per_unit, env_int, fmt_rate, fmt_ratio, span, table
from bench.procs import BenchError, start_line

EVENTS = "domain_events_storedevent"
NO_POSITIONS = (
    f"ALTER TABLE {EVENTS} ALTER COLUMN position DROP DEFAULT, ALTER COLUMN position DROP NOT NULL",
    f"UPDATE {EVENTS} SET position = nextval('domain_events_position_seq') WHERE position IS NULL;"
    f" ALTER TABLE {EVENTS} ALTER COLUMN position SET DEFAULT nextval('domain_events_position_seq'),"
    " ALTER COLUMN position SET NOT NULL",
)

MODES = {
    "none": "(a) no positions: the same inserts, no stream row",
    "platform": "(b) positions drawn at insert, streams upserted (the platform)",
}


class PublishBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        bench.setup_django()
        self.procs = env_int("BENCH_PUBLISH_PROCS", 8)
        self.events = env_int("BENCH_PUBLISH_EVENTS", 3000)
        self.rounds = env_int("BENCH_PUBLISH_ROUNDS", 3)
        self.results: dict[str, object] = {}
        # The recording statements, made once here rather than by a Django set-up in every publisher.
        self.statements = {}
        for record in ("plain", "platform"):
            path = bench.log_dir / f"publish-statement-{record}.json"
            path.write_text(json.dumps(recording_statement(streams=record == "platform")))
            self.statements[record] = str(path)

    def once(self, mode: str) -> dict:
        self.bench.reset_outbox()
        record = "plain" if mode == "none" else "platform"
        drop, restore = NO_POSITIONS
        if mode == "none":
            self.bench.db.execute(drop)
        try:
            workers = [
                self.bench.worker(
                    f"publish-{mode}-{i}",
                    "bench.ceiling",
                    "publish",
                    "--count",
                    n,
                    "--account-base",
                    base,
                    "--record",
                    record,
                    "--statement",
                    self.statements[record],
                )
                for i, (base, n) in enumerate(split(self.events, self.procs))
            ]
            start_line(workers)
            reports = [w.result() for w in workers]
            self.check(mode)
        finally:
            if mode == "none":
                self.bench.db.execute(restore)
        return {"per_s": self.events / span(reports), "cpu": cpu_per_unit(reports, self.events)}

    def check(self, mode: str) -> None:
        """All events recorded; in (b) each with a distinct position and a revision in its stream."""
        total, numbered, distinct, revised = self.bench.db.execute(
            f"SELECT count(*), count(position), count(DISTINCT position), count(revision) FROM {EVENTS}"
        ).fetchone()
        expected = 0 if mode == "none" else self.events
        if total != self.events or numbered != expected or distinct != expected or revised != expected:
            raise BenchError(
                f"publish ({mode}): {total} events, {numbered} numbered, {distinct} distinct positions,"
                f" {revised} with a revision; expected {self.events} events, {expected} of each"
            )

    def run(self) -> dict:
        say = self.bench.say
        say(
            f"Benchmark 0: raw publish transaction (event + {HANDLERS_PER_EVENT} deliveries), {self.procs}"
            f" concurrent publishers, {self.events} events per run, {self.rounds} rounds"
        )
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for i in range(self.rounds):
            for mode in MODES:
                runs[mode].append(self.once(mode))
            say(f"  round {i + 1}: " + ", ".join(f"{mode} {fmt_rate(runs[mode][-1]['per_s'])}/s" for mode in MODES))
        self.results = {
            "procs": self.procs,
            "events": self.events,
            "runs": runs,
            "median_per_s": {mode: statistics.median(r["per_s"] for r in rs) for mode, rs in runs.items()},
            "cpu": {
                mode: {part: statistics.fmean(r["cpu"][part] for r in rs) for part in ("client_ms", "server_ms")}
                for mode, rs in runs.items()
            },
        }
        return self.results

    def ratio(self, mode: str) -> float:
        median = self.results["median_per_s"]
        return median[mode] / median["none"]

    def cpu_ratio(self, mode: str) -> float:
        cpu = self.results["cpu"]
        return sum(cpu["none"].values()) / sum(cpu[mode].values())

    def report(self) -> str:
        median = self.results["median_per_s"]
        rows = []
        for mode, label in MODES.items():
            figures = " / ".join(fmt_rate(r["per_s"]) for r in self.results["runs"][mode])
            cpu = self.results["cpu"][mode]
            rows.append(
                [
                    label,
                    fmt_rate(median[mode]),
                    figures,
                    "1.00" if mode == "none" else fmt_ratio(self.ratio(mode)),
                    f"{cpu['client_ms']:.2f}+{cpu['server_ms']:.2f}",
                    "1.00" if mode == "none" else fmt_ratio(self.cpu_ratio(mode)),
                ]
            )
        return table(
            [
                f"raw publish transaction (event + deliveries), {self.procs} concurrent publishers",
                "events/s (median)",
                "each round",
                "ratio to (a)",
                "CPU ms/event py+pg",
                "CPU ratio",
            ],
            rows,
            notes=[
                f"{self.events} events per run, {HANDLERS_PER_EVENT} delivery rows each, one transaction per event;"
                " psycopg 3, one connection per process. Goal: (b)/(a) ≥ 0.95.",
                "(b) sends domain_events.sql's recording statement: the stream row's upsert, the event (its"
                " position drawn by the column's default) and its deliveries; four events per aggregate.",
                "CPU ratio = CPU per event of (a) / CPU per event of the line.",
            ],
        )

    def summary_rows(self) -> list[dict]:
        median = self.results["median_per_s"]
        return [
            {
                "what": f"publish tx with positions and streams, {self.procs} publishers",
                "figure": f"{fmt_rate(median['platform'])} events/s",
                "ceiling": f"no positions {fmt_rate(median['none'])} events/s",
                "ratio": fmt_ratio(self.ratio("platform")),
                "cpu_ratio": fmt_ratio(self.cpu_ratio("platform")),
            },
        ]
