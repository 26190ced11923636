"""Benchmark 0: what numbering events by `position` costs the publish transaction.

The raw publish transaction (1 event + 5 deliveries, psycopg 3, `bench/ceiling.py publish`) in
BENCH_PUBLISH_PROCS concurrent processes (default 8), four ways, in rounds so that drift on a shared
machine touches all three alike:

* (a) no position assignment at all: the transaction alone;
* (b) as the platform does it: after its commit each publisher runs the sequencer
  (`domain_events.sequencer`: `sql.SEQUENCE_RUN`, which takes the lock, runs SEQUENCE and sends the
  position readers' NOTIFY when it numbered any) in a transaction of its own, as the fast path does;
* (b') the same run as it was before migration 0007, for reference: SEQUENCER_PRELUDE, SEQUENCE
  and NOTIFY one by one between BEGIN and COMMIT (five round trips, the lock held across them);
* (c) the design it replaced, for reference: a deferred constraint trigger that takes
  `pg_advisory_xact_lock` and sets the position at commit, so commits queue on the lock (created
  in the bench database for this line only, dropped after).

Every run ends with every event numbered (checked), and the figures are events published per second.
"""

from __future__ import annotations

import statistics

from bench.fanout.names import HANDLERS_PER_EVENT
from bench.fanout_bench import split
from bench.harness import Bench, cpu_per_unit, env_int, fmt_rate, fmt_ratio, span, table
from bench.procs import BenchError, start_line

TRIGGER = "bench_old_assign_position"


def old_trigger_sql() -> tuple[str, str]:
    """The replaced design (migrations 0002-0005) without its relay wake-up: lock, then number, at
    commit. Returns (create, drop)."""
    from domain_events.sql import EVENTS, SEQUENCER_LOCK

    create = f"""
CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({SEQUENCER_LOCK});
    UPDATE {EVENTS} SET position = nextval('domain_events_position_seq') WHERE id = NEW.id;
    RETURN NULL;
END
$$;
ALTER FUNCTION {TRIGGER}() SET enable_seqscan = off;
CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT ON {EVENTS}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}();
"""
    drop = f"DROP TRIGGER IF EXISTS {TRIGGER} ON {EVENTS}; DROP FUNCTION IF EXISTS {TRIGGER}();"
    return create, drop


MODES = {
    "none": "(a) without position assignment",
    "sequencer": "(b) with the sequencer after each commit (the platform)",
    "statements": "(b') the same, the run as separate statements (before 0007)",
    "trigger": "(c) old design: commit-time trigger under the advisory lock",
}


class PublishBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        bench.setup_django()
        self.procs = env_int("BENCH_PUBLISH_PROCS", 8)
        self.events = env_int("BENCH_PUBLISH_EVENTS", 3000)
        self.rounds = env_int("BENCH_PUBLISH_ROUNDS", 2)
        self.results: dict[str, object] = {}

    def once(self, mode: str) -> dict:
        self.bench.reset_outbox()
        extra = {"sequencer": ["--sequence"], "statements": ["--sequence", "--separate-statements"]}.get(mode, [])
        create_trigger, drop_trigger = old_trigger_sql()
        if mode == "trigger":
            self.bench.db.execute(create_trigger)
        try:
            workers = [
                self.bench.worker(
                    f"publish-{mode}-{i}", "bench.ceiling", "publish", "--count", n, "--account-base", base, *extra
                )
                for i, (base, n) in enumerate(split(self.events, self.procs))
            ]
            start_line(workers)
            reports = [w.result() for w in workers]
        finally:
            if mode == "trigger":
                self.bench.db.execute(drop_trigger)
        self.check(mode)
        run = {
            "per_s": self.events / span(reports),
            "cpu": cpu_per_unit(reports, self.events),
        }
        if mode in ("sequencer", "statements"):
            run["sequencer_runs"] = sum(r["sequencer_runs"] for r in reports)
            run["numbering_runs"] = sum(r["numbering_runs"] for r in reports)
        return run

    def check(self, mode: str) -> None:
        """All events recorded; numbered (with distinct positions) unless mode (a)."""
        total, numbered, distinct = self.bench.db.execute(
            "SELECT count(*), count(position), count(DISTINCT position) FROM domain_events_storedevent"
        ).fetchone()
        expected_numbered = 0 if mode == "none" else self.events
        if total != self.events or numbered != expected_numbered or distinct != expected_numbered:
            raise BenchError(
                f"publish ({mode}): {total} events, {numbered} numbered, {distinct} distinct positions;"
                f" expected {self.events} events, {expected_numbered} numbered"
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
                " psycopg 3, one connection per process. Goal: (b)/(a) ≥ 0.90.",
                "(b) runs domain_events.sql's SEQUENCE_RUN (the lock, SEQUENCE, and the readers' NOTIFY when it"
                " numbered any) in its own transaction after each commit, as the fast path does; (b') the same"
                " statements sent one by one, as the sequencer did before migration 0007.",
                "(c) is the replaced design, measured for reference: a deferred constraint trigger taking"
                " pg_advisory_xact_lock and setting the position at commit.",
                "CPU ratio = CPU per event of (a) / CPU per event of the line.",
                "(b): sequencer runs that numbered events (and so wrote and committed under the lock): "
                + " / ".join(
                    f"{r['numbering_runs']} of {r['sequencer_runs']}" for r in self.results["runs"]["sequencer"]
                ),
            ],
        )

    def summary_rows(self) -> list[dict]:
        median = self.results["median_per_s"]
        return [
            {
                "what": f"publish tx with positions (sequencer), {self.procs} publishers",
                "figure": f"{fmt_rate(median['sequencer'])} events/s",
                "ceiling": f"no positions {fmt_rate(median['none'])} events/s",
                "ratio": fmt_ratio(self.ratio("sequencer")),
                "cpu_ratio": fmt_ratio(self.cpu_ratio("sequencer")),
            },
            {
                "what": f"  old commit-time trigger, {self.procs} publishers",
                "figure": f"{fmt_rate(median['trigger'])} events/s",
                "ceiling": f"no positions {fmt_rate(median['none'])} events/s",
                "ratio": fmt_ratio(self.ratio("trigger")),
                "cpu_ratio": fmt_ratio(self.cpu_ratio("trigger")),
            },
        ]
