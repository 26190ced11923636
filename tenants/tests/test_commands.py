"""create_tenant and create_user, including their exit codes."""

import io
import subprocess
import sys
import uuid

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiToken, Tenant, User, token_key_hash
from testsupport.processes import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )


def test_create_tenant_prints_its_id_and_exits_1_when_the_slug_is_taken():
    first = run("create_tenant", "chapter-one", "--name", "Chapter One", "--currency", "eur")
    assert first.returncode == 0, first.stderr
    tenant = Tenant.objects.get(slug="chapter-one")
    assert first.stdout.strip() == str(tenant.id)
    assert uuid.UUID(first.stdout.strip())
    assert (tenant.name, tenant.currency) == ("Chapter One", "EUR")

    again = run("create_tenant", "chapter-one")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert Tenant.objects.filter(slug="chapter-one").count() == 1


def test_create_tenant_rejects_a_bad_currency(capsys):
    with pytest.raises(CommandError, match="currency"):
        call_command("create_tenant", "odd-shop", "--currency", "dollars")
    assert not Tenant.objects.filter(slug="odd-shop").exists()


def test_create_user_prints_a_working_token(tenant, client):
    result = run("create_user", tenant.slug, "dana", "--staff", "--password", "quiet-river-dana-42")
    assert result.returncode == 0, result.stderr
    user = User.objects.get(username="dana")
    assert user.tenant == tenant
    assert user.is_staff
    assert ApiToken.objects.get(user=user).key_hash == token_key_hash(result.stdout.strip())
    assert user.check_password("quiet-river-dana-42")


def test_create_user_refuses_a_weak_password_and_creates_nobody(tenant):
    result = run("create_user", tenant.slug, "gina", "--password", "12345678")
    assert result.returncode == 1
    assert "too common" in result.stderr
    assert "entirely numeric" in result.stderr
    assert not User.objects.filter(username="gina").exists()


def test_create_user_exits_1_for_an_unknown_tenant_or_a_taken_name(tenant):
    assert run("create_user", "no-such-shop", "eve").returncode == 1
    assert run("create_user", tenant.slug, "frank").returncode == 0
    taken = run("create_user", tenant.slug, "frank")
    assert taken.returncode == 1
    assert "already exists" in taken.stderr


@pytest.mark.parametrize("username", ["bad name", "semi;colon", "<script>", "x" * 151])
def test_create_user_validates_the_username_as_django_does_and_creates_nobody(tenant, username):
    with pytest.raises(CommandError):
        call_command("create_user", tenant.slug, username)
    assert not User.objects.filter(username=username).exists()


def test_create_user_accepts_what_djangos_username_validator_accepts(tenant):
    call_command("create_user", tenant.slug, "jo.ann+shop@x_y-1", stdout=io.StringIO())
    assert User.objects.filter(username="jo.ann+shop@x_y-1", tenant=tenant).exists()
