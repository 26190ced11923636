"""`deploy/systemd/`: a unit for every process of the `Procfile`, each running the same command as
the `Procfile` (but for the sizes: bind address, workers, concurrency), restarted always, with
limits and an `EnvironmentFile=`, part of `shelfwise.target`; the per-queue workers together
consume every queue the project routes work to."""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands

from config.celery import app
from domain_events.bus import event_bus
from domain_events.subscriptions import DEFAULT_QUEUE, Mode

ROOT = Path(settings.BASE_DIR)
UNITS = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/opt/shelfwise"
# Options whose values are the machine's to size: compared by name only.
SIZES = {"--bind", "--workers", "--concurrency"}
# What `make run` gives its one worker so that Ctrl-C stops it in a second (no banner, threads, none
# of the cluster chatter); a supervised worker keeps Celery's defaults (a prefork pool, with its
# hard time limits).
DEV_ONLY = {"--quiet", "--without-heartbeat", "--without-gossip", "--without-mingle"}
DEV_ONLY_WITH_VALUE = {"--pool"}


def procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = shlex.split(command)
    return processes


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def exec_start(unit: configparser.ConfigParser) -> list[str]:
    """ExecStart's argv as the process gets it: systemd turns `%%` into `%`."""
    return [arg.replace("%%", "%") for arg in shlex.split(unit["Service"]["ExecStart"])]


def without_sizes(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SIZES or arg in DEV_ONLY_WITH_VALUE:
            skip = True
        elif arg not in DEV_ONLY:
            kept.append(arg)
    return kept


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def routed_queues() -> set[str]:
    """Every queue the project sends work to: handlers' queues, task routes, the default."""
    handlers = {
        s.celery_queue
        for s in event_bus.subscriptions()
        if s.mode is Mode.CELERY and not s.name.startswith("probe.")  # the tests' own probe handlers
    }
    routes = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return {q for q in handlers | routes if q} | {DEFAULT_QUEUE}


PROCESSES = procfile()


def test_the_procfile_is_read():
    assert {"web", "worker", "relay", "webhooks"} <= set(PROCESSES)
    assert len(PROCESSES) == len({*PROCESSES})


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_procfile_process_has_a_unit_running_its_command(name):
    path = UNITS / f"shelfwise-{name}.service"
    assert path.is_file(), f"no unit for the Procfile's {name!r}: {path}"
    unit = read_unit(path)
    service = unit["Service"]
    argv = exec_start(unit)
    program = argv[0]

    # The project's own program, from its virtualenv, in the directory it runs from.
    assert service["WorkingDirectory"] == INSTALL_DIR
    assert program.startswith(f"{INSTALL_DIR}/"), program
    relative = program.removeprefix(f"{INSTALL_DIR}/")
    assert relative == PROCESSES[name][0]
    assert (Path(sys.executable).parent / Path(relative).name).exists(), f"{relative} is not installed"
    assert without_sizes([relative, *argv[1:]]) == without_sizes(PROCESSES[name])

    # ... and a real command of the project.
    tool = Path(relative).name
    if tool.startswith("python"):
        assert argv[1] == "manage.py"
        assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
    elif tool == "gunicorn":
        assert importlib.util.find_spec(argv[1]) is not None, argv[1]
        assert (ROOT / option(argv, "-c")).is_file()
    elif tool == "celery":
        # `-A config` is the app of config/celery.py.
        assert option(argv, "-A") == "config"
        assert importlib.import_module("config.celery").app is app
        assert "worker" in argv
        queues = option(argv, "-Q")
        assert queues is None or set(queues.split(",")) <= routed_queues(), queues
    else:
        pytest.fail(f"unexpected program {tool!r} in {path.name}")


@pytest.mark.parametrize("path", sorted(UNITS.glob("*.service")), ids=lambda p: p.name)
def test_every_unit_is_supervised_with_limits(path):
    unit = read_unit(path)
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0", "systemd would stop restarting after 5 quick failures"
    assert service["EnvironmentFile"].startswith("/etc/shelfwise/")
    assert int(service["LimitNOFILE"]) >= 4096
    assert 0 < int(service["TimeoutStopSec"]) <= 600
    assert unit["Unit"]["PartOf"] == "shelfwise.target"
    assert unit["Install"]["WantedBy"] == "shelfwise.target"
    if Path(exec_start(unit)[0]).name == "celery":
        # SIGTERM to the main process only (warm shutdown); the pool is killed after the timeout.
        assert service["KillMode"] == "mixed"
        # The options celery reads after `worker` (unknown ones would fail it at start).
        assert "--hostname" not in exec_start(unit) or "%h" in option(exec_start(unit), "--hostname")
    # Every unit file is a process of the Procfile.
    assert path.name.removeprefix("shelfwise-").removesuffix(".service") in PROCESSES


def test_the_per_queue_workers_consume_every_queue_and_the_target_exists():
    consumed = set()
    for path in UNITS.glob("shelfwise-worker-*.service"):
        consumed |= set(option(exec_start(read_unit(path)), "-Q").split(","))
    assert consumed == routed_queues()
    target = read_unit(UNITS / "shelfwise.target")
    assert target["Install"]["WantedBy"] == "multi-user.target"
