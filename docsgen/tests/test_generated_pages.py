"""The generated pages of docs/ are current, and every setting read is documented."""

import ast

from docsgen import events, settings


def test_the_event_catalogue_is_current():
    assert events.PAGE.read_text() == events.render(), "run `python -m docsgen` and commit docs/events.md"


def test_the_catalogue_has_every_committed_type_and_version():
    page = events.PAGE.read_text()
    for type_name, versions in events.contracts().items():
        assert f"## `{type_name}`" in page
        for version in versions:
            assert f"### v{version}" in page


def test_the_settings_page_is_current():
    assert settings.PAGE.read_text() == settings.render(), "run `python -m docsgen` and commit docs/settings.md"


def test_every_setting_read_is_documented():
    assert settings.undocumented() == [], "add a meaning to docsgen/settings.py MEANINGS"


def test_no_meaning_is_left_for_a_setting_no_longer_read():
    read = {s.name for s in settings.read_settings()}
    assert set(settings.MEANINGS) - read == set()


def test_a_new_setting_without_a_meaning_is_caught(tmp_path):
    source = settings.SETTINGS.read_text() + '\nNEW_THING = env.int("SHELFWISE_NEW_THING", default=3)\n'
    ast.parse(source)
    path = tmp_path / "settings.py"
    path.write_text(source)
    found = settings.read_settings(path)
    assert [s.default for s in found if s.name == "SHELFWISE_NEW_THING"] == ["3"]
    assert settings.undocumented(found) == ["SHELFWISE_NEW_THING"]
