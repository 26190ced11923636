"""`python -m docsgen [--check]`: write the generated pages of docs/, or only check they are current."""

from __future__ import annotations

import argparse
import sys

from docsgen import events, settings

PAGES = {"docs/events.md": events, "docs/settings.md": settings}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m docsgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 if a page is not current.")
    check = parser.parse_args().check
    stale = []
    for name, module in PAGES.items():
        if check:
            if not module.PAGE.exists() or module.PAGE.read_text() != module.render():
                stale.append(name)
        elif module.write():
            print(f"wrote {name}")
    if stale:
        print(f"not current (run `python -m docsgen`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
