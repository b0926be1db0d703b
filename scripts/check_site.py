#!/usr/bin/env python
"""Check the built book as a reader sees it (run after `jupyter-book build book`).

    python scripts/check_site.py [--html book/_build/html] [--notebooks notebooks]

Fails (exit status 1, one line per problem) when

* a notebook page shows fewer figures (``<img>`` in its cell outputs) than its notebook draws:
  the larger of (a) a count from the notebook's source -- per code cell, the number of
  ``plt.subplots(`` / ``plt.figure(`` / ``plt.subplot_mosaic(`` calls, or 1 if the cell calls
  another plotting function (``plt.show()``, ``.plot(``, ``plot_*(``, ``.hist(``, ``.imshow(``)
  without creating a figure itself -- and (b) the images in the executed copy that the build
  keeps in ``_build/jupyter_execute`` (a non-inline backend, e.g. ``MPLBACKEND=Agg`` in the
  kernel, makes ``plt.show()`` draw nothing: both counts catch it);
* a cell output is a stderr stream (myst-nb gives it the class ``stderr``), or the text of a
  cell output contains a warning, a traceback, a progress bar or a machine path;
* the text of any page names something a reader cannot open: the specification, an issue
  number, the CI machine, a file in the trace cache.

No test framework, no network; needs beautifulsoup4 (installed with jupyter-book).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- expected figures
NEW_FIGURE = re.compile(r"\bplt\.(subplots|figure|subplot_mosaic)\(")
IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")


def _code_lines(source: str) -> str:
    """The source without comments and without imports (``from ttamer.plots import plot_x``)."""
    out = []
    for line in source.splitlines():
        line = line.split("#", 1)[0]
        if re.match(r"\s*(from\s+\S+\s+)?import\s", line):
            continue
        out.append(line)
    return "\n".join(out)


def figures_in_source(nb: dict) -> int:
    """A lower bound on the figures a notebook draws, from its code cells (module docstring)."""
    total = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = _code_lines("".join(cell.get("source", "")))
        if "remove-output" in cell.get("metadata", {}).get("tags", []):
            continue
        made = len(NEW_FIGURE.findall(src))
        total += made if made else (1 if re.search(r"\bplt\.show\(|\.plot\(|\bplot_\w+\(|\.hist\(|\.imshow\(",
                                                   src) else 0)
    return total


def figures_in_outputs(nb: dict) -> int:
    """Images among the outputs of an executed notebook."""
    return sum(1 for cell in nb.get("cells", []) for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in IMAGE_MIMES))


# --------------------------------------------------------------------------- text checks
OUTPUT_PATTERNS = [
    (re.compile(r"Warning"), "a warning"),
    (re.compile(r"warnings\.warn"), "a warnings.warn line"),
    (re.compile(r"Traceback"), "a traceback"),
    (re.compile(r"(it/s|s/it)\]"), "a tqdm progress bar"),
    (re.compile(r"\d+%\|[^|]*\|"), "a progress bar"),
    (re.compile(r"[█▏▎▍▌▋▊▉]{2,}"), "a progress bar"),
    (re.compile(r"/usr/"), "a machine path (/usr/)"),
    (re.compile(r"/root/"), "a machine path (/root/)"),
    (re.compile(r"site-packages"), "a machine path (site-packages)"),
    (re.compile(r"/home/\w+"), "a machine path (/home/...)"),
]
PAGE_PATTERNS = [
    (re.compile(r"\bSPEC\b"), "the specification (SPEC)"),
    (re.compile(r"\b[Ii]ssues? #?\d+"), "an issue number"),
    (re.compile(r"performance issue"), "an issue"),
    # a file in the trace cache (the folder itself is documented: where traces are kept)
    (re.compile(r"\.cache/\S*\.npz|-offline-seed\d+-\S*\.npz"), "a trace-cache file"),
    (re.compile(r"CI machine"), "the CI machine"),
    (re.compile(r"2 shared cores"), "the CI machine (2 shared cores)"),
    (re.compile(r"tried on the way"), "the history of the code"),
]


def _article(soup: BeautifulSoup):
    """The page's content (not the sidebar, scripts or search index)."""
    return soup.find("article") or soup.find("main") or soup.body or soup


def _context(text: str, m: re.Match, width: int = 50) -> str:
    a, b = max(0, m.start() - width), min(len(text), m.end() + width)
    return " ".join(text[a:b].split())


def check_notebook_page(page: Path, nb_path: Path, executed: Path | None) -> tuple[list[str], int, int]:
    """Problems of one notebook page, its ``<img>`` figures and the figures expected."""
    problems = []
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    expected = figures_in_source(nb)
    if executed is not None and executed.exists():
        expected = max(expected, figures_in_outputs(json.loads(executed.read_text(encoding="utf-8"))))
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    outputs = soup.select("div.cell_output")
    shown = sum(len(o.find_all("img")) for o in outputs)
    if shown < expected:
        problems.append(f"{page.name}: {shown} figure(s) shown but the notebook draws at least {expected} "
                        "(does its set-up cell run `%matplotlib inline`?)")
    for o in outputs:
        for el in o.find_all(class_=True):
            if "stderr" in el.get("class", []):
                problems.append(f"{page.name}: a cell output is a stderr stream: "
                                f"{' '.join(el.get_text(' ').split())[:120]!r}")
        text = o.get_text("\n")
        for pat, what in OUTPUT_PATTERNS:
            for m in pat.finditer(text):
                problems.append(f"{page.name}: a cell output shows {what}: ...{_context(text, m)}...")
                break
    return problems, shown, expected


def check_page_text(page: Path, rel: str) -> list[str]:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    text = _article(soup).get_text(" ")
    problems = []
    for pat, what in PAGE_PATTERNS:
        for m in pat.finditer(text):
            problems.append(f"{rel}: names {what}, which a reader cannot open: ...{_context(text, m)}...")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=ROOT / "book" / "_build" / "html")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--executed", type=Path, default=None,
                    help="folder of executed notebooks (default: <html>/../jupyter_execute/notebooks)")
    args = ap.parse_args(argv)
    html = args.html
    if not (html / "index.html").exists():
        print(f"check_site: no {html / 'index.html'}: build the book first", file=sys.stderr)
        return 2
    executed_dir = args.executed or html.parent / "jupyter_execute" / "notebooks"
    problems: list[str] = []
    rows = []
    for nb_path in sorted(args.notebooks.glob("*.ipynb")):
        page = html / "notebooks" / f"{nb_path.stem}.html"
        if not page.exists():
            continue  # not in the table of contents
        p, shown, expected = check_notebook_page(page, nb_path, executed_dir / nb_path.name)
        problems += p
        rows.append((nb_path.stem, shown, expected))
    if not rows:
        problems.append(f"no notebook page found under {html / 'notebooks'}")
    for page in sorted(html.rglob("*.html")):
        rel = str(page.relative_to(html))
        if rel.startswith(("_static", "_sources", "_images")) or rel in ("genindex.html", "search.html"):
            continue
        problems += check_page_text(page, rel)

    print(f"{'notebook page':<28} {'figures shown':>13} {'expected (at least)':>20}")
    for name, shown, expected in rows:
        print(f"{name:<28} {shown:>13} {expected:>20}")
    print(f"{'total':<28} {sum(r[1] for r in rows):>13} {sum(r[2] for r in rows):>20}")
    if problems:
        print(f"\ncheck_site: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print("check_site: ok -- every figure shown, no stderr / warning / progress-bar output, "
          "no reference a reader cannot open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
