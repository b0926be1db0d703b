"""The book's API reference covers the package: every module has a page, every public name a row.

The pages themselves are checked by the book's build (``-W -n``: a broken cross-reference
fails it); this test catches the omission the build cannot see, a module or a public name
that no page mentions.
"""

import pathlib
import re

import ttamer

REPO = pathlib.Path(__file__).resolve().parents[1]
API = REPO / "book" / "api"
PACKAGE = REPO / "ttamer"
# ttamer.__main__ runs the command line at import (documented by ttamer.cli instead).
UNDOCUMENTED = {"ttamer.__main__"}


def _modules() -> set[str]:
    out = set()
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(REPO).with_suffix("").parts
        out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out - UNDOCUMENTED


def _directives(kind: str) -> set[str]:
    text = "\n".join(p.read_text() for p in API.glob("*.md"))
    return set(re.findall(rf"^\.\. {kind}:: (\S+)$", text, flags=re.M))


def test_every_module_has_an_api_page():
    missing = _modules() - _directives("automodule")
    assert not missing, f"modules without an automodule directive in book/api: {sorted(missing)}"


def test_no_api_page_names_a_missing_module():
    stale = _directives("automodule") - _modules()
    assert not stale, f"book/api documents modules that do not exist: {sorted(stale)}"


def test_every_public_name_is_listed():
    rows = set(re.findall(r"^   ~(\S+)$", (API / "index.md").read_text(), flags=re.M))
    expected = {f"{getattr(ttamer, name).__module__}.{name}" for name in ttamer.__all__}
    assert not expected - rows, f"public names missing from book/api/index.md: {sorted(expected - rows)}"
    assert not rows - expected, f"book/api/index.md lists names not in ttamer.__all__: {sorted(rows - expected)}"


def test_api_part_is_in_the_table_of_contents():
    toc = (REPO / "_toc.yml").read_text()
    for page in API.glob("*.md"):
        assert f"file: api/{page.stem}\n" in toc, f"book/api/{page.name} is not in _toc.yml"
