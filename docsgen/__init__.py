"""The generated pages of `docs/`: the event catalogue (from the committed JSON Schemas) and the
settings table (from `config/settings.py`). `python -m docsgen` writes them; `--check` only compares.

Nothing imports this package but its tests: it reads files, not the running project.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
