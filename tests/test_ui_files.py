"""The UI's files as shipped: vendored libraries as VENDORED.md records them, every file the page
loads present, and the whole UI within its weight budget (issue 9, G9: 150 KB gzipped)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import ml_dash.ui

UI = Path(ml_dash.ui.__file__).parent
STATIC = UI / "static"


def test_every_vendored_file_matches_the_sha256_vendored_md_records() -> None:
    recorded = dict(re.findall(r"\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|", (UI / "VENDORED.md").read_text()))
    present = {p.name for p in (STATIC / "vendor").iterdir()}
    assert set(recorded) == present  # every vendored file is recorded, and nothing recorded is missing
    for name, sha in recorded.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == sha, name


def test_the_page_loads_only_files_that_exist_and_holds_no_inline_script_or_style() -> None:
    page = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page):
        assert (STATIC / ref[len("/ui/"):]).is_file(), ref
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None  # every script has a src
    assert " style=" not in page and "<style" not in page and " on" not in page.replace(" one", "")
    for module in STATIC.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert (STATIC / imported).is_file(), f"{module.name} imports {imported}"


def test_the_ui_weighs_at_most_150_kb_gzipped() -> None:
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in STATIC.rglob("*") if p.is_file())
    assert total <= 150 * 1024, total


def test_no_ui_code_turns_strings_into_html() -> None:
    """Every user string is rendered as text: the UI never assigns HTML or evaluates strings."""
    for module in STATIC.glob("*.js"):
        code = module.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "dangerouslySetInnerHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in code, f"{module.name} uses {sink}"
