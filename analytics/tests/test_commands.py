"""`rebuild_projections` and `check_projections`: names, output and exit codes."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from analytics.models import Generation, TenantMonth
from analytics.projections import SALES
from analytics.tests.helpers import OrderStory, line, project

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("command", ["rebuild_projections", "check_projections"])
def test_an_unknown_projection_name_is_refused_and_nothing_changes(tenant, command):
    OrderStory(tenant).placed(at=AT)
    project()
    before = list(Generation.objects.values_list("id", "target"))
    with pytest.raises(CommandError, match=r"unknown projection 'nope'.*known: analytics\.sales"):
        run(command, SALES, "nope")
    assert list(Generation.objects.values_list("id", "target")) == before


def test_rebuild_prints_one_summary_line_off_a_terminal(tenant):
    OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed(at=AT).confirmed()
    project()
    out = run("rebuild_projections", "--batch-size", "1")
    assert out.count("\n") == 1
    assert out.startswith(f"{SALES}: rebuilt from 2 events in ")
    assert "events/s" in out


def test_rebuild_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="batch-size"):
        run("rebuild_projections", "--batch-size", "0")


def test_check_exits_0_when_equal_and_says_how_far_behind_the_head(tenant):
    OrderStory(tenant).placed(at=AT)
    project()
    out = run("check_projections")
    assert f"{SALES}: live at position" in out
    assert "0 positions" in out
    assert f"{SALES}: equal at position" in out


def test_check_prints_each_difference_and_exits_1_on_drift(tenant):
    OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed(at=AT).confirmed()
    project()
    TenantMonth.objects.update(revenue=Decimal("12.00"))
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("check_projections", stdout=out)
    assert exit_.value.code == 1
    assert (
        f"analytics_tenantmonth [tenant_id={tenant.id}, month=2026-03-01] revenue: "
        "live Decimal('12.00'), rebuilt Decimal('10.00')"
    ) in out.getvalue()
    assert "1 differences" in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rebuild_shows_a_progress_bar_on_a_terminal(tenant, monkeypatch):
    for _ in range(3):
        OrderStory(tenant).placed(at=AT)
    project()
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    run("rebuild_projections", "--batch-size", "1")
    bar = terminal.getvalue()
    assert f"{SALES}: 100%" in bar
    assert "3/3" in bar
    assert "events/s" in bar
