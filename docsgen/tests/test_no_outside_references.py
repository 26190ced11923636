"""No file of the repository cites a document a user who clones it does not have: the API, settings
and guarantees are documented in docs/, and that is what code and docs point to."""

import subprocess

from docsgen import ROOT

# Written in pieces so that this file does not cite them itself.
OUTSIDE = ["CONTRACT" + " §", "../" + "shared", "PERFORMANCE" + ".md"]


def test_no_file_cites_a_document_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    citing = []
    for name in filter(None, files):
        path = ROOT / name
        if name.startswith(".ci/") or not path.is_file() or path.suffix in {".png", ".sqlite3"}:
            continue
        text = path.read_text(errors="ignore")
        citing += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert citing == []
