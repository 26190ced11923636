"""`make chaos` (`python -m chaos`): the whole platform under faults, then the proof.

Starts a private PostgreSQL and Redis, gunicorn, two Celery workers, two relays, the webhook
sweep and the inbound consumer as an operator would, a webhook receiver and a mail server on
loopback, and a queue of its own on RabbitMQ; places orders over HTTP, and sends the distributor's
shipment notices about some of them (signed webhooks and RabbitMQ messages), while it SIGKILLs
processes, stops Redis and restarts PostgreSQL; waits for everything to drain and checks the
guarantees of docs/architecture.md. Prints a table, writes it as JSON, exits 1 on any
failed check. Everything it started is stopped on every way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from chaos.distributor import MAX_FAILURES, Distributor, NoticeQueue
from chaos.faults import FAULT_KINDS, KILL_KINDS, FaultInjector
from chaos.lag import LagSampler, held_warnings
from chaos.load import SCARCE_SKU, SCARCE_STOCK, Load
from chaos.receivers import MailServer, WebhookReceiver
from chaos.services import (
    BIN,
    PYTHON,
    ROOT,
    ChaosError,
    PrivateRedis,
    Supervised,
    Supervisor,
    free_port,
    wait_until,
)
from testsupport.postgres import PostgresCluster

CATALOG_SKUS = [f"CHAOS-{n:02d}" for n in range(1, 9)]
CATALOG_STOCK = 1_000_000
# Short retry schedules, so that the receiver's own failures (500, 429, slow answers) are retried
# within seconds rather than the production minutes; every one is an ordinary setting
# (docs/testing.md, Chaos run). The leases that decide how soon a fault is recovered from
# (OUTBOX_LEASE, OUTBOX_CELERY_*, OUTBOX_DISPATCH_GRACE, WEBHOOK_SWEEP_*) keep their production
# values: the 60 s settle bound is checked for them.
TIMINGS = {
    "HANDLER_RETRY_SCHEDULE": "1,2,3,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5",
    "WEBHOOK_RETRY_SCHEDULE": "1,2,3,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5",
    "WEBHOOK_RETRY_JITTER": "0.2",
    "WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": "8",
    "IDEMPOTENCY_STALE_AFTER": "8",
    # Orders wait (503, Retry-After) while the handlers are this far behind: the run measures how
    # fast the platform recovers from faults, not how long a backlog of more orders than it carries
    # takes to work off.
    "OUTBOX_ADMISSION_MAX_BACKLOG": "15",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=int(os.environ.get("CHAOS_ORDERS", "3000")))
    parser.add_argument("--clients", type=int, default=int(os.environ.get("CHAOS_CLIENTS", "12")))
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (on average)")
    parser.add_argument("--redis-outage", type=float, default=15.0, help="seconds Redis stays down")
    parser.add_argument("--min-kills", type=int, default=2, help="kills of each kind at the least")
    parser.add_argument(
        "--webhook-resend-after",
        type=float,
        default=600.0,
        help="WEBHOOK_SWEEP_RESEND_AFTER: the sweep resends a message proved lost at once, any other after this",
    )
    parser.add_argument("--drain-timeout", type=float, default=1800.0, help="seconds to wait for everything to settle")
    parser.add_argument(
        "--rabbitmq",
        default=os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        help="the RabbitMQ that carries the distributor's notices (a queue of the run's own, deleted after it)",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "7")))
    parser.add_argument("--results", type=Path, default=ROOT / "chaos" / "results" / "latest.json")
    parser.add_argument(
        "--logs", type=Path, default=ROOT / "chaos" / "results" / "logs", help="the processes' logs (emptied first)"
    )
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {line}", flush=True)


def process_env(
    pg: PostgresCluster, redis: PrivateRedis, smtp_port: int, metrics_dir: Path, resend_after: float
) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": pg.url,
        "CELERY_BROKER_URL": redis.url(0),
        "CACHE_URL": redis.url(1),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DEBUG": "false",
        "SECRET_KEY": "chaos-run-secret-key-not-for-production-0123456789abcdefghijklmnop",
        "FIELD_ENCRYPTION_KEYS": "chaos-run-field-key-not-for-production-0123456789abcdef",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "INTEGRATION_BROKER_URL": "",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
        **TIMINGS,
        "WEBHOOK_SWEEP_RESEND_AFTER": str(resend_after),
    }


def start_platform(
    supervisor: Supervisor,
    env: dict[str, str],
    logs: Path,
    web_port: int,
    web_workers: int,
    notice_queue: NoticeQueue,
) -> None:
    """The Procfile's processes: web, a worker per pair of queues, two relays, the webhook sweep,
    and the consumer of the distributor's notices on the run's RabbitMQ queue."""

    def log_says(text: str):
        return lambda process: text in process.new_output()

    def answers(process: Supervised) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{web_port}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    celery = [
        str(BIN / "celery"),
        "-A",
        "config",
        "worker",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    started = [
        supervisor.add(
            Supervised(
                "web",
                "web",
                [
                    str(BIN / "gunicorn"),
                    "config.wsgi",
                    "-c",
                    "config/gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{web_port}",
                    "--workers",
                    str(web_workers),
                    "--timeout",
                    "30",
                ],
                env,
                logs,
                answers,
            )
        ),
        supervisor.add(
            Supervised(
                "worker-payments-email",
                "worker",
                [*celery, "-Q", "payments,email", "--hostname", "payments-email@%h", "--concurrency", "3"],
                env,
                logs,
                log_says(" ready."),
            )
        ),
        supervisor.add(
            Supervised(
                "worker-webhooks-default",
                "worker",
                [*celery, "-Q", "webhooks,celery", "--hostname", "webhooks-default@%h", "--concurrency", "8"],
                env,
                logs,
                log_says(" ready."),
            )
        ),
        supervisor.add(
            Supervised("relay-1", "relay", [PYTHON, "manage.py", "run_outbox_relay"], env, logs, log_says("running"))
        ),
        supervisor.add(
            Supervised("relay-2", "relay", [PYTHON, "manage.py", "run_outbox_relay"], env, logs, log_says("running"))
        ),
        supervisor.add(
            Supervised(
                "webhook-sweep",
                "sweep",
                [PYTHON, "manage.py", "send_due_webhooks"],
                env,
                logs,
                lambda p: p.popen is not None and p.popen.poll() is None,
            )
        ),
        supervisor.add(
            Supervised(
                "consume-inbound",
                "consumer",
                [PYTHON, "manage.py", "consume_inbound"],
                {
                    **env,
                    "INTEGRATION_BROKER_URL": notice_queue.url,
                    "INBOUND_BROKER_QUEUE": notice_queue.name,
                    "INBOUND_BROKER_MAX_FAILURES": str(MAX_FAILURES),
                },
                logs,
                log_says(f"consuming {notice_queue.name}"),
            )
        ),
    ]
    for process in started:
        process.wait_ready()


SETTLE_DEFINITION = (
    "seconds from the end of a fault (the kill; Redis or PostgreSQL back) to the settling of each order"
    " in flight during it (placed before the fault was over, settled after it began); an order is"
    " settled when it is final and every handler delivery, webhook delivery and e-mail of its events is done"
)


def print_settle_table(table: list[dict]) -> None:
    print("  settle time by fault kind (s): " + SETTLE_DEFINITION)
    print(f"  {'fault':<22} {'faults':>6} {'orders':>7} {'p50':>7} {'p99':>7} {'max':>7}  slowest")
    for row in table:
        print(
            f"  {row['kind']:<22} {row['faults']:>6} {row['orders_touched']:>7} {row['p50']:>7.1f}"
            f" {row['p99']:>7.1f} {row['max']:>7.1f}  {row['slowest']}"
        )


def _api(method: str, url: str, token: str, **kwargs) -> dict:
    response = requests.request(method, url, headers={"Authorization": f"Token {token}"}, timeout=30, **kwargs)
    if response.status_code >= 300:
        raise ChaosError(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return response.json()


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, detail in rows:
        print(f"  {name:<{width}}  {value:<{value_width}}  {detail}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = time.time()
    base = Path(tempfile.mkdtemp(prefix="shelfwise-chaos-"))
    os.chmod(base, 0o755)  # noqa: S103  (the postgres user must reach its folders; nothing secret in it)
    shutil.rmtree(args.logs, ignore_errors=True)
    args.logs.mkdir(parents=True)
    pg, redis = PostgresCluster(base), PrivateRedis(args.logs)
    supervisor = Supervisor()
    receiver = WebhookReceiver(port=free_port(), seed=args.seed)
    mail = MailServer(port=free_port())
    notice_queue = NoticeQueue(args.rabbitmq)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        say(f"private PostgreSQL on :{pg.port}, Redis on :{redis.port}; logs in {args.logs}")
        pg.init()
        redis.start()
        (base / "metrics").mkdir()
        env = process_env(pg, redis, mail.port, base / "metrics", args.webhook_resend_after)
        os.environ.update({k: v for k, v in env.items() if k not in ("PYTHONUNBUFFERED",)})
        subprocess_run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
        return _run(args, started_at, pg, redis, supervisor, receiver, mail, notice_queue, env)
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        supervisor.stop_all()
        for stop in (receiver.stop, mail.stop, notice_queue.delete, redis.stop, pg.stop):
            try:
                stop()
            except Exception as exc:  # stopping goes on with the next one
                say(f"while stopping: {exc!r}")
        if pg.log.exists():
            shutil.copy(pg.log, args.logs / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


def subprocess_run(argv: list[str], env: dict[str, str]) -> None:
    import subprocess

    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise ChaosError(f"{' '.join(argv[1:3])} failed:\n{result.stdout}{result.stderr}")


@dataclass
class Shop:
    """The chaos bookstore as the run set it up."""

    tenant: object
    staff_token: str
    customers: list[str]
    base_url: str = ""
    endpoint: dict = field(default_factory=dict)
    distributor_secret: str = ""
    initial_stock: dict[str, int] = field(default_factory=dict)


def _run(args, started_at, pg, redis, supervisor, receiver, mail, notice_queue, env) -> int:
    """The whole run: the shop, the load under faults, the drain, then the checks and the report."""
    import django

    django.setup()
    try:
        notice_queue.declare()
    except Exception as exc:
        raise ChaosError(f"RabbitMQ at {args.rabbitmq} is required (--rabbitmq): {exc!r}") from exc
    say(f"the distributor's notices go through RabbitMQ queue {notice_queue.name}")
    # aiosmtpd logs every SMTP command at INFO; the run's own lines are what matter here.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    shop = _open_shop(args)
    receiver.start()
    mail.start()
    _start_platform_and_catalog(args, shop, supervisor, receiver, notice_queue, env)
    distributor = Distributor(
        base_url=shop.base_url,
        tenant_slug=shop.tenant.slug,
        staff_token=shop.staff_token,
        secret=shop.distributor_secret,
        broker_url=notice_queue.url,
        broker_queue=notice_queue.name,
        seed=args.seed,
    )
    load, faults, sampler, load_seconds = _place_orders_under_faults(args, shop, supervisor, pg, redis, distributor)
    drain_ok, drain_seconds = _drain(args, shop, distributor, notice_queue)
    sampler.stop()
    return _check_and_report(
        args,
        started_at,
        shop,
        load,
        faults,
        sampler,
        receiver,
        mail,
        env,
        load_seconds,
        drain_ok,
        drain_seconds,
        distributor,
        notice_queue,
    )


def _open_shop(args) -> Shop:
    """The chaos bookstore, its staff member and its customers (their API tokens)."""
    from django.core.management import call_command
    from django.db import connections

    from tenants.models import Tenant

    def command(*argv: str) -> str:
        out = io.StringIO()
        call_command(*argv, stdout=out)
        return out.getvalue().strip()

    command("create_tenant", "chaos", "--name", "Chaos Books")
    staff_token = command("create_user", "chaos", "staff", "--staff")
    customers = [
        command("create_user", "chaos", f"customer{n}", "--email", f"customer{n}@example.com")
        for n in range(max(4, args.clients))
    ]
    shop = Shop(Tenant.objects.get(slug="chaos"), staff_token, customers)
    connections.close_all()
    return shop


def _start_platform_and_catalog(args, shop: Shop, supervisor, receiver, notice_queue: NoticeQueue, env) -> None:
    """gunicorn, workers, relays, the sweep and the inbound consumer; then the webhook endpoint, the
    distributor's secret and the catalog, through the API."""
    web_port = free_port()
    shop.base_url = f"http://127.0.0.1:{web_port}"
    say("starting gunicorn, 2 Celery workers, 2 relays, the webhook sweep and consume_inbound")
    supervisor_started = time.time()
    start_platform(supervisor, env, args.logs, web_port, args.web_workers, notice_queue)
    say(f"platform up in {time.time() - supervisor_started:.1f} s")
    shop.endpoint = _api(
        "POST",
        f"{shop.base_url}/api/v1/webhook-endpoints/",
        shop.staff_token,
        json={"url": f"http://127.0.0.1:{receiver.port}/hooks", "event_types": [], "description": "chaos receiver"},
    )
    receiver.secret = shop.endpoint["secret"]
    shop.distributor_secret = _api("POST", f"{shop.base_url}/api/v1/inbound/distributor/secret", shop.staff_token)[
        "secret"
    ]
    shop.initial_stock = {SCARCE_SKU: SCARCE_STOCK}
    _api(
        "POST",
        f"{shop.base_url}/api/v1/products/",
        shop.staff_token,
        json={"sku": SCARCE_SKU, "title": "A rare first edition", "price": "250.00", "stock": SCARCE_STOCK},
    )
    for n, sku in enumerate(CATALOG_SKUS):
        _api(
            "POST",
            f"{shop.base_url}/api/v1/products/",
            shop.staff_token,
            json={"sku": sku, "title": f"Chaos volume {n + 1}", "price": f"{7 + 3 * n}.99", "stock": CATALOG_STOCK},
        )
        shop.initial_stock[sku] = CATALOG_STOCK


def _place_orders_under_faults(args, shop: Shop, supervisor, pg, redis, distributor: Distributor):
    """The clients place every order, and the distributor sends its notices, while the faults are
    injected; returns (load, faults, the readers' lag sampler, seconds the placing took)."""
    load = Load(
        base_url=shop.base_url,
        customer_tokens=shop.customers,
        staff_token=shop.staff_token,
        skus=CATALOG_SKUS,
        count=args.orders,
        clients=args.clients,
        seed=args.seed,
        hand_over=distributor.take,
    )
    faults = FaultInjector(
        supervisor=supervisor,
        postgres=pg,
        redis=redis,
        progress=load.progress,
        load_finished=lambda: load.placing_done.is_set(),
        kill_every=args.kill_every,
        redis_outage=args.redis_outage,
        min_kills=args.min_kills,
        seed=args.seed,
        log=say,
    )
    say(f"placing {args.orders} orders from {args.clients} clients, with faults")
    load_started = time.time()
    sampler = LagSampler()
    sampler.start()
    load.start()
    distributor.start()
    faults.start()
    next_report = time.time() + 30
    while not load.placing_finished():
        time.sleep(0.5)
        if time.time() >= next_report:
            say(f"{len(load.placed)} of {args.orders} orders placed")
            next_report += 30
    load.wait()
    distributor.close()
    distributor.wait()
    load_seconds = time.time() - load_started
    say(f"{len(load.placed)} orders placed in {load_seconds:.1f} s; waiting for the last faults")
    faults.join()
    if faults.error is not None:
        raise ChaosError(f"fault injection failed: {faults.error!r}")
    faults.watch()
    return load, faults, sampler, load_seconds


def _drain(args, shop: Shop, distributor: Distributor, notice_queue: NoticeQueue) -> tuple[bool, float]:
    """Wait until every order is final, every notice recorded (or dead-lettered) and every effect
    done; returns (drained, seconds)."""
    from django.db import connections

    from chaos.checks import notices_unrecorded, settled

    say("draining")
    drain_started = time.time()
    connections.close_all()
    state = {"what": "start"}

    def drained() -> bool:
        unrecorded = notices_unrecorded(shop.tenant, distributor.sent)
        if unrecorded and unrecorded > notice_queue.dead_lettered():
            state["what"] = f"{unrecorded} notices not yet recorded"
            return False
        state["what"] = settled(shop.tenant)
        return state["what"] is None

    drain_ok = True
    try:
        wait_until(drained, timeout=args.drain_timeout, what="everything to settle", interval=1.0)
    except ChaosError:
        drain_ok = False
        say(f"not drained after {args.drain_timeout:.0f} s: {state['what']}")
    return drain_ok, time.time() - drain_started


def _check_and_report(
    args,
    started_at,
    shop: Shop,
    load,
    faults,
    sampler,
    receiver,
    mail,
    env,
    load_seconds,
    drain_ok,
    drain_seconds,
    distributor: Distributor,
    notice_queue: NoticeQueue,
) -> int:
    """Every check, the figures and the settle table: written to `args.results` and printed."""
    from chaos.checks import (
        SETTLE_BOUND,
        notice_figures,
        order_settle_times,
        order_timeline,
        run_checks,
        settle_table,
        slowest_settle,
    )
    from domain_events.models import StoredEvent

    recovery, last_effect = slowest_settle(faults.last_fault_end)
    settles = order_settle_times(shop.tenant)
    table = settle_table(faults.faults, settles, FAULT_KINDS)
    last_settle = max((settled_at for _, settled_at in settles.values()), default=faults.last_fault_end)
    order_recovery = max(0.0, last_settle - faults.last_fault_end)
    late = sum(1 for _, settled_at in settles.values() if settled_at - faults.last_fault_end > SETTLE_BOUND)
    readers = {
        "slowest": sampler.slowest,
        "oldest_writer": sampler.oldest_writer,
        "samples": sampler.samples,
        "failed_samples": sampler.errors,
        "last_failure": sampler.last_error,
        "held_warnings": held_warnings(args.logs),
    }
    slowest_orders = sorted(settles, key=lambda o: settles[o][1], reverse=True)[:3]
    timelines = {o: order_timeline(o, faults.last_fault_end) for o in slowest_orders}
    checks = run_checks(
        tenant=shop.tenant,
        load=load,
        receiver=receiver,
        mail=mail,
        base_url=shop.base_url,
        staff_token=shop.staff_token,
        initial_stock=shop.initial_stock,
        endpoint_id=shop.endpoint["id"],
        env=env,
        distributor=distributor,
    )
    fault_counts = {
        kind: faults.counts[kind] for kind in [*(f"kill_{k}" for k in KILL_KINDS), "redis_outage", "postgres_restart"]
    }
    checks[:0] = _run_checks(args, fault_counts, drain_ok, drain_seconds, late, order_recovery)
    events = StoredEvent.objects.count()
    figures = {
        "orders": len(load.placed),
        "clients": args.clients,
        "faults": fault_counts,
        "faults_not_injected": faults.failed_faults,
        "unplanned_exits": dict(faults.unplanned_exits),
        "events_stored": events,
        "client_retries": dict(load.retries),
        "shipment_notices": {
            **notice_figures(distributor.sent, shop.tenant),
            "dead_lettered": notice_queue.dead_lettered(),
            "client_retries": dict(distributor.retries),
        },
        "receiver_answers": dict(receiver.answers),
        "webhook_repeats_after_2xx": sum(n - 1 for n in receiver.accepted.values()),
        "email_repeats_same_message_id": sum(n - 1 for n in mail.message_ids.values()),
        "load_seconds": round(load_seconds, 1),
        "drain_seconds": round(drain_seconds, 1),
        "slowest_settle_after_last_fault_seconds": round(recovery, 1),
        "slowest_order_settle_after_last_fault_seconds": round(order_recovery, 1),
        "settle_by_fault_kind": table,
        "settle_definition": SETTLE_DEFINITION,
        "position_readers": readers,
        "slowest_orders_after_last_fault": timelines,
        "last_effect_to_settle": last_effect,
        "wall_seconds": round(time.time() - started_at, 1),
    }
    failed = [c for c in checks if not c.ok]
    result = {
        "ok": not failed,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "figures": figures,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    rows = _summary_rows(args, figures, checks, load, faults, sampler)
    print()
    print_table(rows)
    print()
    print_settle_table(table)
    print()
    say(f"{'every check passed' if not failed else f'{len(failed)} check(s) FAILED'}; results in {args.results}")
    return 0 if not failed else 1


def _run_checks(args, fault_counts: dict, drain_ok: bool, drain_seconds: float, late: int, order_recovery: float):
    """The run's own checks: the faults it meant to inject, the drain, and the settle bound."""
    from chaos.checks import SETTLE_BOUND

    enough_faults = (
        all(fault_counts[f"kill_{k}"] >= args.min_kills for k in KILL_KINDS)
        and fault_counts["redis_outage"] >= 1
        and fault_counts["postgres_restart"] >= 1
    )
    return [
        _check("faults injected as planned", enough_faults, json.dumps(fault_counts)),
        _check("drained", drain_ok, f"in {drain_seconds:.1f} s"),
        _check(
            f"every order settled within {SETTLE_BOUND:.0f} s of the last fault",
            drain_ok and not late,
            f"the last {order_recovery:.1f} s after it; {late} later than {SETTLE_BOUND:.0f} s",
        ),
    ]


def _summary_rows(args, figures: dict, checks, load, faults, sampler) -> list[tuple[str, str, str]]:
    """The printed summary: what ran, what it came to, and every check."""
    readers = figures["position_readers"]
    return [
        ("orders placed", str(figures["orders"]), f"{args.clients} clients, retries {dict(load.retries)}"),
        *((f"faults: {k}", str(v), "") for k, v in figures["faults"].items()),
        ("events stored", str(figures["events_stored"]), ""),
        _notices_row(figures["shipment_notices"]),
        (
            "processes that exited on their own",
            str(sum(faults.unplanned_exits.values())),
            f"{dict(faults.unplanned_exits)} (restarted, as a supervisor would)",
        ),
        (
            "slowest settle after last fault",
            f"{figures['slowest_settle_after_last_fault_seconds']:.1f} s",
            f"drain {figures['drain_seconds']:.1f} s; last: {figures['last_effect_to_settle']}",
        ),
        (
            "readers' slowest lag",
            f"{sampler.slowest['seconds']:.1f} s",
            f"{sampler.slowest['reader']}; oldest writer then {sampler.slowest['writer_age']:.0f} s:"
            f" {sampler.slowest['writer'][:120]}; relay warnings {readers['held_warnings']['warnings']}",
        ),
        ("wall time", f"{figures['wall_seconds']:.0f} s", f"load {figures['load_seconds']:.1f} s"),
        *((c.name, "ok" if c.ok else "FAILED", c.detail) for c in checks),
    ]


def _notices_row(notices: dict) -> tuple[str, str, str]:
    ways = ", ".join(f"{way} {n}" for way, n in sorted(notices["by_way"].items()))
    return (
        "shipment notices sent",
        str(notices["sent"]),
        f"{ways}; sent twice on purpose {notices['sent_twice_on_purpose']}; applied {notices['applied']},"
        f" nothing to do (overtaken) {notices['nothing_to_do']}, parked {notices['parked']}, not recorded"
        f" {notices['not_recorded']}, dead-lettered {notices['dead_lettered']}; client retries"
        f" {notices['client_retries']}",
    )


def _check(name: str, ok: bool, detail: str):
    from chaos.checks import Check

    return Check(name, ok, detail)


if __name__ == "__main__":
    sys.exit(main())
