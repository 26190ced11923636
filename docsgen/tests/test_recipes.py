"""Every file, and every symbol, that the docs name exists: a recipe cannot point at something gone."""

import re

import pytest

from docsgen import DOCS, ROOT

# `path/to/file.py` or `path/to/file.py::Symbol` (or `::Class.method`, or a test function).
REFERENCE = re.compile(r"`((?:[a-z0-9_]+/)+[A-Za-z0-9_.\-]+\.(?:py|md|json|yml|ini|txt|png))(?:::([A-Za-z_][\w.]*))?`")
PAGES = sorted(DOCS.glob("*.md"))


def references(text: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]


def defines(source: str, symbol: str) -> bool:
    name = symbol.rsplit(".", 1)[-1]
    return bool(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b|^{name}\s*[:=]", source, re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_and_symbol_a_page_names_exists(page):
    missing = []
    for path, symbol in references(page.read_text()):
        target = ROOT / path
        if not target.exists():
            missing.append(path)
        elif symbol and not defines(target.read_text(), symbol):
            missing.append(f"{path}::{symbol}")
    assert missing == [], f"{page.name} names what does not exist"


def test_the_recipes_name_an_example_and_a_test_for_each():
    text = (DOCS / "recipes.md").read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert len(sections) == 6
    for section in sections:
        named = references(section)
        title = section.splitlines()[0]
        assert any(symbol and "/tests/" not in path for path, symbol in named), f"{title}: no example in the code"
        assert any(symbol and symbol.startswith("test_") for _, symbol in named), f"{title}: no test"


def test_a_missing_symbol_is_caught():
    assert defines("def reserve_stock_for_order(event):\n", "reserve_stock_for_order")
    assert defines("class EventBus:\n    def publish(self):\n", "EventBus.publish")
    assert not defines("def other():\n", "reserve_stock_for_order")
