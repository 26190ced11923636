"""Benchmark 1: events published and fully dispatched per second (five handlers per event).

Every event is one transaction that records the event and its five deliveries; every delivery is
one counter update committed with its delivery record. Measured, in one run:

* the platform's relay path: publishers record events with dispatch on commit off, K relays
  (`manage.py run_outbox_relay`) run every handler; from the first publish to the last delivery done;
* the platform's fast path: publishers run the handlers in-process right after each commit
  (OUTBOX_RUN_ON_COMMIT=true, the setting that turns it on);
* the Celery path (comparison): five celery-mode handlers, one task per (event, handler), a
  `celery -A config worker`;
* the raw-SQL ceilings: the same inserts, claims and updates hand-written with psycopg 3,
  measured before and after the platform runs so that drift on a shared machine shows.
"""

from __future__ import annotations

import time

from bench.fanout.names import CELERY_HANDLERS, HANDLERS_PER_EVENT, ON_COMMIT_HANDLERS
from bench.harness import (
    Bench,
    ServicesCpu,
    cpu_per_unit,
    cpu_total,
    fmt_cpu,
    fmt_rate,
    fmt_ratio,
    mean,
    span,
    table,
)
from bench.procs import PYTHON, BenchError, Service, start_line
from testsupport.processes import celery_worker_argv


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """(account base, count) for each of `parts` processes sharing `total` events."""
    size, extra = divmod(total, parts)
    out, base = [], 0
    for i in range(parts):
        count = size + (1 if i < extra else 0)
        out.append((base, count))
        base += count
    return out


class FanoutBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config
        self.results: dict[str, object] = {"ceilings": []}
        self.relays: list[Service] = []

    # --- state ----------------------------------------------------------------------------

    def reset(self, events: int, handlers: tuple[str, ...]) -> None:
        """Empty outbox; one zeroed counter per (handler, account) for `events` accounts."""
        self.bench.reset_outbox("fanout_counter")
        self.bench.db.execute(
            "INSERT INTO fanout_counter (handler, account, value)"
            " SELECT h, a, 0 FROM unnest(%s::text[]) h, generate_series(0, %s - 1) a",
            (list(handlers), events),
        )
        self.bench.db.execute("VACUUM ANALYZE fanout_counter")

    def verify(self, events: int, handlers: tuple[str, ...]) -> None:
        """Every delivery succeeded and every counter was bumped exactly once."""
        expected = events * len(handlers)
        succeeded = self.bench.scalar(
            "SELECT count(*) FROM domain_events_delivery WHERE status = 'succeeded' AND handler = ANY(%s)",
            (list(handlers),),
        )
        once = self.bench.scalar(
            "SELECT count(*) FROM fanout_counter WHERE value = 1 AND handler = ANY(%s)", (list(handlers),)
        )
        total = self.bench.scalar(
            "SELECT coalesce(sum(value), 0) FROM fanout_counter WHERE handler = ANY(%s)", (list(handlers),)
        )
        if not (succeeded == once == total == expected):
            raise BenchError(
                f"wrong outcome: {succeeded} deliveries succeeded, {once} counters at 1, sum {total};"
                f" expected {expected}"
            )

    # --- the platform -------------------------------------------------------------------------

    def publishers(self, count: int, events: int, *extra: str, **env: str) -> list:
        return [
            self.bench.worker(f"publisher-{i}", "bench.publish", "--count", n, "--account-base", base, *extra, **env)
            for i, (base, n) in enumerate(split(events, count))
        ]

    def running_relays(self, count: int) -> list[Service]:
        """`count` relays running, the others paused (`Bench.pause`: no lock held, no CPU, as if
        not running). The relays start once, side by side, for every relay-path run and the fast
        path; the publishers, already spawned, start meanwhile and wait at their start line."""
        wanted = max([*self.config.relays, 1 if self.config.fast_path_relay else 0])
        while len(self.relays) < wanted:
            self.relays.append(self.bench.relay(f"relay-{len(self.relays)}", wait=False))
        for relay in self.relays:
            relay.wait_for("running")
        self.bench.resume(*self.relays[:count])
        self.bench.pause(*self.relays[count:])
        return self.relays[:count]

    def stop_relays(self) -> None:
        while self.relays:
            self.relays.pop().stop()

    def relay_path(self, relays: int) -> dict:
        events = self.config.events
        self.reset(events, ON_COMMIT_HANDLERS)
        workers = self.publishers(self.config.publishers, events, OUTBOX_DISPATCH_ON_COMMIT="false")
        running = self.running_relays(relays)
        for w in workers:
            w.wait_ready()
        meter = ServicesCpu(self.bench, running)
        meter.start()
        started = start_line(workers)
        reports = [w.result() for w in workers]
        published = max(r["end"] for r in reports)
        done = self.bench.wait_for_no_open_deliveries(timeout=max(120, events / 10))
        reports.append(meter.stop())
        self.verify(events, ON_COMMIT_HANDLERS)
        elapsed = done - started
        return {
            "path": "relay",
            "relays": relays,
            "publishers": self.config.publishers,
            "events": events,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "published_per_s": events / (published - started),
            "cpu": cpu_per_unit(reports, events),
        }

    def fast_path(self) -> dict:
        events = self.config.events
        self.reset(events, ON_COMMIT_HANDLERS)
        workers = self.publishers(self.config.fast_publishers, events, OUTBOX_RUN_ON_COMMIT="true")
        running = self.running_relays(1 if self.config.fast_path_relay else 0)
        for w in workers:
            w.wait_ready()
        meter = ServicesCpu(self.bench, running)
        meter.start()
        started = start_line(workers)
        reports = [w.result() for w in workers]
        done = self.bench.wait_for_no_open_deliveries(timeout=60)
        reports.append(meter.stop())
        self.verify(events, ON_COMMIT_HANDLERS)
        elapsed = done - started
        return {
            "path": "fast",
            "publishers": self.config.fast_publishers,
            "relays": len(running),
            "events": events,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "cpu": cpu_per_unit(reports, events),
        }

    def celery_path(self) -> dict:
        import redis

        events = self.config.celery_events
        self.reset(events, CELERY_HANDLERS)
        redis.Redis.from_url(self.config.broker_url).flushdb()
        argv = celery_worker_argv("bench", python=PYTHON)
        worker = self.bench.service("celery-worker", argv, LOG_LEVEL="INFO")
        try:
            workers = self.publishers(self.config.publishers, events, "--celery")
            worker.wait_for(" ready.", timeout=60)
            for w in workers:
                w.wait_ready()
            meter = ServicesCpu(self.bench, [worker])
            meter.start()
            started = start_line(workers)
            reports = [w.result() for w in workers]
            published = max(r["end"] for r in reports)
            done = self.bench.wait_for_no_open_deliveries(timeout=max(120, events / 5), interval=0.05)
            reports.append(meter.stop())
        finally:
            worker.stop()
        self.verify(events, CELERY_HANDLERS)
        elapsed = done - started
        return {
            "path": "celery",
            "publishers": self.config.publishers,
            "worker_concurrency": 2,
            "events": events,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "published_per_s": events / (published - started),
            "cpu": cpu_per_unit(reports, events),
        }

    def plain_celery(self) -> dict:
        """The reference for the Celery path: the same five handlers as one plain Celery task each
        (idempotent inbox insert + counter update in one transaction), on the same worker."""
        import redis

        events = self.config.celery_events
        self.reset(events, CELERY_HANDLERS)
        self.bench.db.execute("TRUNCATE fanout_inbox")
        redis.Redis.from_url(self.config.broker_url).flushdb()
        argv = celery_worker_argv("bench-plain", python=PYTHON)
        worker = self.bench.service("celery-worker-plain", argv, LOG_LEVEL="INFO")
        try:
            workers = [
                self.bench.worker(f"plain-celery-{i}", "bench.plain_celery", "--count", n, "--account-base", base)
                for i, (base, n) in enumerate(split(events, self.config.publishers))
            ]
            worker.wait_for(" ready.", timeout=60)
            for w in workers:
                w.wait_ready()
            meter = ServicesCpu(self.bench, [worker])
            meter.start()
            started = start_line(workers)
            reports = [w.result() for w in workers]
            expected = events * len(CELERY_HANDLERS)
            deadline = time.monotonic() + max(120, events / 5)
            while self.bench.scalar("SELECT count(*) FROM fanout_inbox") < expected:
                if time.monotonic() > deadline:
                    raise BenchError(f"plain Celery: not every task ran; see {self.bench.log_dir}")
                time.sleep(0.05)
            done = time.time()
            reports.append(meter.stop())
        finally:
            worker.stop()
        once = self.bench.scalar(
            "SELECT count(*) FROM fanout_counter WHERE value = 1 AND handler = ANY(%s)", (list(CELERY_HANDLERS),)
        )
        if once != expected:
            raise BenchError(f"plain Celery: {once} counters at 1, expected {expected}")
        return {
            "path": "plain_celery",
            "events": events,
            "seconds": done - started,
            "events_per_s": events / (done - started),
            "cpu": cpu_per_unit(reports, events),
        }

    def pgqueuer_peer(self) -> dict | None:
        """The fastest queue peer, pgqueuer 1.6 (asyncpg), doing the same fan-out: five jobs per
        event, two worker processes (as two relays), the same publishers. None if not installed."""
        try:
            import pgqueuer  # noqa: F401
        except ImportError:
            self.bench.say("  pgqueuer peer skipped: not installed (pip install -r bench/requirements.txt)")
            return None
        from bench.peers.pgqueuer_peer import HANDLERS as PEER_HANDLERS

        events = self.config.events
        self.reset(events, PEER_HANDLERS)
        installer = self.bench.worker("pgqueuer-install", "bench.peers.pgqueuer_peer", "install")
        installer.popen.wait(timeout=120)
        if installer.popen.returncode:
            raise BenchError(f"pgqueuer install failed:\n{installer.output()[-2000:]}")
        expected = events * len(PEER_HANDLERS)
        workers = [
            self.bench.worker(f"pgqueuer-worker-{i}", "bench.peers.pgqueuer_peer", "worker", "--expect", expected)
            for i in range(2)
        ]
        publishers = [
            self.bench.worker(
                f"pgqueuer-publish-{i}", "bench.peers.pgqueuer_peer", "publish", "--count", n, "--account-base", base
            )
            for i, (base, n) in enumerate(split(events, self.config.publishers))
        ]
        start_line(workers + publishers)
        reports = [w.result(timeout=max(300, events)) for w in workers + publishers]
        once = self.bench.scalar(
            "SELECT count(*) FROM fanout_counter WHERE value = 1 AND handler = ANY(%s)", (list(PEER_HANDLERS),)
        )
        if once != expected:
            raise BenchError(f"pgqueuer: {once} counters at 1, expected {expected}")
        elapsed = span(reports)
        return {"path": "pgqueuer", "events": events, "seconds": elapsed, "events_per_s": events / elapsed}

    # --- the ceilings ---------------------------------------------------------------------

    def ceilings(self) -> dict:
        events, procs = self.config.events, self.config.ceiling_procs
        self.reset(events, ON_COMMIT_HANDLERS)
        workers = [
            self.bench.worker(f"ceiling-publish-{i}", "bench.ceiling", "publish", "--count", n, "--account-base", base)
            for i, (base, n) in enumerate(split(events, procs))
        ]
        start_line(workers)
        publish_reports = [w.result() for w in workers]
        publish = events / span(publish_reports)

        workers = [
            self.bench.worker(f"ceiling-fanout-{i}", "bench.ceiling", "fanout", "--batch", self.config.batch)
            for i in range(procs)
        ]
        start_line(workers)
        fanout_reports = [w.result() for w in workers]
        fanout = events / span(fanout_reports)
        self.verify(events, ON_COMMIT_HANDLERS)

        self.reset(events, ON_COMMIT_HANDLERS)
        workers = [
            self.bench.worker(
                f"ceiling-fastpath-{i}", "bench.ceiling", "fastpath", "--count", n, "--account-base", base
            )
            for i, (base, n) in enumerate(split(events, procs))
        ]
        start_line(workers)
        fastpath_reports = [w.result() for w in workers]
        fastpath = events / span(fastpath_reports)
        self.verify(events, ON_COMMIT_HANDLERS)
        return {
            "publish_per_s": publish,
            "fanout_per_s": fanout,
            # Publishing and fanning out share the same cores and database: their capacities add as rates do in series.
            "pipeline_per_s": 1 / (1 / publish + 1 / fanout),
            "fast_path_per_s": fastpath,
            "pipeline_cpu": cpu_per_unit(publish_reports + fanout_reports, events),
            "fast_path_cpu": cpu_per_unit(fastpath_reports, events),
        }

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> dict:
        say = self.bench.say
        say(f"Benchmark 1: fan-out, {self.config.events} events x {HANDLERS_PER_EVENT} handlers")
        ceilings: list[dict] = self.results["ceilings"]  # type: ignore[assignment]
        ceilings.append(self.ceilings())
        say(f"  raw-SQL ceilings (before): {self._describe_ceiling(ceilings[-1])}")
        runs: list[dict] = []
        try:
            for relays in self.config.relays:
                runs.append(self.relay_path(relays))
                say(f"  relay path, {relays} relays: {runs[-1]['events_per_s']:,.0f} events/s")
            if self.config.fast_publishers:
                runs.append(self.fast_path())
                say(f"  fast path, {self.config.fast_publishers} publishers: {runs[-1]['events_per_s']:,.0f} events/s")
        finally:
            # No relay runs beside the Celery path and the peers.
            self.stop_relays()
        if self.config.celery_events:
            runs.append(self.celery_path())
            say(f"  celery path: {runs[-1]['events_per_s']:,.0f} events/s")
            self.results["plain_celery"] = self.plain_celery()
            say(f"  plain Celery, 5 tasks per event: {self.results['plain_celery']['events_per_s']:,.0f} events/s")
        peer = self.pgqueuer_peer()
        if peer is not None:
            self.results["pgqueuer"] = peer
            say(f"  pgqueuer 1.6 peer, 5 jobs per event, 2 workers: {peer['events_per_s']:,.0f} events/s")
        ceilings.append(self.ceilings())
        say(f"  raw-SQL ceilings (after): {self._describe_ceiling(ceilings[-1])}")
        self.results["runs"] = runs
        # Other load on a shared machine only ever slows a phase down: the better of the two is the ceiling.
        self.results["ceiling"] = {k: max(c[k] for c in ceilings) for k in ceilings[0] if k.endswith("_per_s")}
        for key in ("pipeline_cpu", "fast_path_cpu"):
            self.results["ceiling"][key] = {
                part: mean([c[key][part] for c in ceilings]) for part in ("client_ms", "server_ms")
            }
        return self.results

    @staticmethod
    def _describe_ceiling(c: dict) -> str:
        return (
            f"publish {c['publish_per_s']:,.0f}/s, fan-out {c['fanout_per_s']:,.0f}/s, "
            f"pipeline {c['pipeline_per_s']:,.0f}/s, in-process {c['fast_path_per_s']:,.0f}/s"
        )

    def rows(self) -> list[dict]:
        """The figures with their ceilings and ratios, one dict per line of the table."""
        ceiling = self.results["ceiling"]
        out = []
        for run in self.results["runs"]:
            if run["path"] == "relay":
                label = f"relay path: {run['publishers']} publishers, {run['relays']} relays"
                ceil, ceil_label, ceil_cpu = ceiling["pipeline_per_s"], "publish + fan-out", ceiling["pipeline_cpu"]
            elif run["path"] == "fast":
                relay_note = f", {run['relays']} idle relay" if run["relays"] else ""
                label = f"fast path: {run['publishers']} publishers{relay_note}"
                ceil, ceil_label = ceiling["fast_path_per_s"], "publish, then dispatch in-process"
                ceil_cpu = ceiling["fast_path_cpu"]
            else:
                label = f"celery path: {run['publishers']} publishers, 1 worker (prefork 2)"
                plain = self.results["plain_celery"]
                ceil, ceil_label, ceil_cpu = plain["events_per_s"], "plain Celery, 5 tasks per event", plain["cpu"]
            out.append(
                {
                    "label": label,
                    "events_per_s": run["events_per_s"],
                    "ceiling_label": ceil_label,
                    "ceiling_per_s": ceil,
                    "ratio": run["events_per_s"] / ceil,
                    "cpu": run["cpu"],
                    "ceiling_cpu": ceil_cpu,
                    "cpu_ratio": cpu_total(ceil_cpu) / cpu_total(run["cpu"]),
                }
            )
        return out

    def report(self) -> str:
        ceilings = self.results["ceilings"]
        rows = [
            [
                r["label"],
                fmt_rate(r["events_per_s"]),
                r["ceiling_label"],
                fmt_rate(r["ceiling_per_s"]),
                fmt_ratio(r["ratio"]),
                fmt_cpu(r["cpu"]),
                fmt_cpu(r["ceiling_cpu"]),
                fmt_ratio(r["cpu_ratio"]),
            ]
            for r in self.rows()
        ]
        main = table(
            [
                "events published and fully dispatched",
                "events/s",
                "raw-SQL ceiling",
                "ceiling/s",
                "ratio",
                "CPU ms/event py+pg",
                "ceiling CPU",
                "CPU ratio",
            ],
            rows,
            notes=[
                f"{self.config.events} events (celery: {self.config.celery_events}), 5 handlers each; a handler is one"
                " counter UPDATE; its delivery record in domain_events is the idempotent inbox, committed with it.",
                "Figures run from the first publish to the last delivery done;"
                " every counter is checked to be exactly 1.",
                "CPU ms/event: Python processes (publishers, relays, worker) + their PostgreSQL backends. CPU ratio ="
                " ceiling CPU / platform CPU: what the ratio of rates would be on a machine doing nothing else;"
                " unlike events/s it does not move with other load.",
                "Ceilings: the better of two measurements, before and after the platform runs (below).",
            ],
        )
        ceiling_rows = [
            [name, *(fmt_rate(c[key]) for c in ceilings), fmt_rate(self.results["ceiling"][key])]
            for name, key in [
                ("publish tx (1 event + 5 delivery rows)", "publish_per_s"),
                (f"fan-out (SKIP LOCKED claim of {self.config.batch}, 1 commit/batch)", "fanout_per_s"),
                ("pipeline: publish + fan-out in series", "pipeline_per_s"),
                ("publish, then dispatch in-process (2 tx)", "fast_path_per_s"),
            ]
        ]
        detail = table(
            [f"raw-SQL ceiling, psycopg 3, {self.config.ceiling_procs} processes", "before", "after", "best (used)"],
            ceiling_rows,
        )
        peers = self.peers()
        if not peers:
            return main + "\n\n" + detail
        best = max((r for r in self.results["runs"] if r["path"] == "relay"), key=lambda r: r["events_per_s"])
        peer_table = table(
            ["the same fan-out (5 handlers per event)", "events/s", "ShelfWise relay path / this"],
            [
                [f"ShelfWise relay path, best of {self.config.relays} relays", fmt_rate(best["events_per_s"]), "1.00"],
                *[[label, fmt_rate(rate), fmt_ratio(best["events_per_s"] / rate)] for label, rate in peers],
            ],
            notes=["Peers run in this same run, on the same database and cores, with the same publishers."],
        )
        return main + "\n\n" + detail + "\n\n" + peer_table

    def peers(self) -> list[tuple[str, float]]:
        out = []
        if "pgqueuer" in self.results:
            out.append(
                ("pgqueuer 1.6 (asyncpg), 5 jobs per event, 2 workers", self.results["pgqueuer"]["events_per_s"])
            )
        if "plain_celery" in self.results:
            out.append(
                ("plain Celery 5.7 (Redis), 5 tasks per event, prefork 2", self.results["plain_celery"]["events_per_s"])
            )
        return out

    def peer_summary(self) -> list[dict]:
        peers = self.peers()
        if not peers:
            return []
        best = max((r for r in self.results["runs"] if r["path"] == "relay"), key=lambda r: r["events_per_s"])
        label, rate = max(peers, key=lambda p: p[1])
        return [
            {
                "what": "relay path (best) vs the fastest queue peer",
                "figure": f"{fmt_rate(best['events_per_s'])} events/s",
                "ceiling": f"{label.split(',')[0]} {fmt_rate(rate)} events/s",
                "ratio": fmt_ratio(best["events_per_s"] / rate),
                "cpu_ratio": "—",
            }
        ]
