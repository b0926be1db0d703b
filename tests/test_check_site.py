"""scripts/check_site.py on tiny hand-made sites (no book build)."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("bs4")

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
check_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_site)


def notebook(*sources):
    return {"cells": [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]}


def site(tmp_path, nb, body, extra_pages=None):
    html, nbs = tmp_path / "html", tmp_path / "nbs"
    (html / "notebooks").mkdir(parents=True)
    nbs.mkdir()
    (html / "index.html").write_text("<html><body><article>home</article></body></html>")
    (nbs / "ch.ipynb").write_text(json.dumps(nb))
    (html / "notebooks" / "ch.html").write_text(f"<html><body><article>{body}</article></body></html>")
    for name, text in (extra_pages or {}).items():
        (html / name).write_text(f"<html><body><article>{text}</article></body></html>")
    return ["--html", str(html), "--notebooks", str(nbs), "--executed", str(tmp_path / "none")]


FIG = '<div class="cell_output docutils container"><img alt="_images/a.png" src="../_images/a.png"></div>'
NB = notebook("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()",
              "print(1)")


def test_figures_counted_from_source():
    assert check_site.figures_in_source(NB) == 1
    two = notebook("fig, ax = plt.subplots()\nplt.show()\nfig, ax = plt.subplots()\nplt.show()",
                   "from ttamer.plots import plot_policy  # import only", "ax = plot_frontier(points)")
    assert check_site.figures_in_source(two) == 3


def test_ok_site(tmp_path, capsys):
    assert check_site.main(site(tmp_path, NB, FIG)) == 0
    assert "ch" in capsys.readouterr().out


def test_missing_figure(tmp_path, capsys):
    assert check_site.main(site(tmp_path, NB, '<div class="cell_output"><pre>1</pre></div>')) == 1
    assert "0 figure(s) shown" in capsys.readouterr().err


@pytest.mark.parametrize("output", [
    '<div class="output stderr"><pre>hello</pre></div>',
    "<pre>UserWarning: careful</pre>",
    "<pre>100%|##########| 10/10 [00:01&lt;00:00, 9.9it/s]</pre>",
    "<pre>/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/x.py</pre>",
])
def test_noisy_output(tmp_path, capsys, output):
    body = FIG + f'<div class="cell_output docutils container">{output}</div>'
    assert check_site.main(site(tmp_path, NB, body)) == 1
    assert "ch.html" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["as in SPEC §3.1", "the targets of issue 4", "the CI machine",
                                  "the file ~/.cache/ttamer/x.npz", "on 2 shared cores"])
def test_outside_reference(tmp_path, capsys, text):
    assert check_site.main(site(tmp_path, NB, FIG, {"page.html": f"<p>{text}</p>"})) == 1
    assert "page.html" in capsys.readouterr().err


def test_the_cache_folder_may_be_documented(tmp_path):
    page = "<p>traces are kept in ~/.cache/ttamer/traces or $TTAMER_CACHE</p>"
    assert check_site.main(site(tmp_path, NB, FIG, {"page.html": page})) == 0
