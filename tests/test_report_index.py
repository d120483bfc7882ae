"""Run index, HTML report and demo."""
from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import sweep_toy  # noqa: E402  (registers "sweep-toy")

from featlab.cli import main  # noqa: E402
from featlab.config import ConfigError, apply_overrides  # noqa: E402
from featlab.report import build_report  # noqa: E402
from featlab.runs import execute, filter_rows, format_rows, index_runs  # noqa: E402


def _runs(tmp_path):
    out = tmp_path / "runs"
    for gain in (1.0, 3.0):
        for seed in (0, 1):
            execute("sweep-toy", apply_overrides(sweep_toy.SweepToyConfig(), [f"gain={gain}", f"seed={seed}"]),
                    out, quiet=True)
    return out


def test_index_where_and_formats(tmp_path):
    out = _runs(tmp_path)
    rows = index_runs(out)
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    sel = filter_rows(rows, ["gain=3", "seed=1"])
    assert len(sel) == 1 and sel[0]["double"] == 6.0
    assert len(filter_rows(rows, ["double=2.0"])) == 2
    with pytest.raises(ConfigError, match="gainz"):
        filter_rows(rows, ["gainz=3"])
    table = format_rows(rows, "table")
    assert "gain" in table.splitlines()[0] and "sleep" not in table.splitlines()[0]  # only varying columns
    assert len(json.loads(format_rows(rows, "json"))) == 4
    assert format_rows(rows, "csv").splitlines()[0].startswith("experiment,hash,status")
    r = CliRunner().invoke(main, ["runs", str(out), "--where", "gain=1", "--format", "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 2
    r = CliRunner().invoke(main, ["runs", str(out), "--where", "nope=1"])
    assert r.exit_code == 2 and "nope" in r.output


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):  # the lightbox's <img> has no src until a figure is clicked
            self.imgs.append(a["src"])
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http:", "https:", "//")):
                self.external.append(a[k])


def test_report_parses_embeds_every_figure_and_links_every_page(tmp_path):
    from featlab.experiments import Claim, Experiment, register

    register(Experiment(name="never-run-toy", summary="registered, never run", config=sweep_toy.SweepToyConfig,
                        presets={"tiny": sweep_toy.SweepToyConfig}, run=lambda c, x: {},
                        claims=(Claim("an unrun claim", "tests", "n/a", lambda s: ("", None)),)))
    out = _runs(tmp_path)
    # a failed run shows up too
    from featlab.runs import RunFailed

    marker = tmp_path / "m"
    marker.mkdir()
    with pytest.raises(RunFailed):
        execute("sweep-toy", apply_overrides(sweep_toy.SweepToyConfig(),
                                             ["fail_first=1", f"marker_dir={marker}", "gain=9"]), out, quiet=True)
    index = build_report(out, tmp_path / "report")
    pages = {p.name: p for p in (tmp_path / "report").glob("*.html")}
    assert "index.html" in pages and "sweep-toy.html" in pages
    parsed = {}
    for name, p in pages.items():
        h = _Links()
        h.feed(p.read_text())
        parsed[name] = h
        assert not h.external
        for href in h.hrefs:
            assert (p.parent / href.split("#")[0]).is_file(), f"{name} links a missing page {href}"
    seen, todo = {"index.html"}, ["index.html"]
    while todo:  # every page is reachable from the index (experiment pages link their run pages)
        for href in parsed[todo.pop()].hrefs:
            target = href.split("#")[0]
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert set(pages) <= seen
    toy = parsed["sweep-toy.html"]
    # no preset given to execute(): gain 1 equals the tiny preset (seeds 0, 1), gain 3 is a config of
    # its own (scale unknown), gain 9 only failed: two groups with a DONE run, one figure each
    assert len(toy.imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in toy.imgs)
    text = pages["sweep-toy.html"].read_text()
    assert "holds" in text and "planned failure" in text and "scale unknown" in text
    assert text.count("2 seeds") >= 2  # gains 1 and 3, seeds 0 and 1 each
    assert "3 [3, 3] (2 seeds)" not in text  # no Claim.value registered: no value column
    idx = index.read_text()
    assert "doubling doubles" in idx and "never-run-toy</a> (1 claim)" in idx and "not run" in idx
    unrun = pages["never-run-toy.html"].read_text()  # experiments without runs: their claims, not run
    assert "an unrun claim" in unrun and "not run" in unrun
    assert "No paper-scale run yet" in idx


def test_demo_runs_presets_then_report(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--only", "sweep-toy", "--out", str(tmp_path / "runs"),
                                  "--report-dir", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "report:" in r.output and (tmp_path / "rep" / "index.html").is_file()
    assert len(index_runs(tmp_path / "runs")) == 1
    r = CliRunner().invoke(main, ["demo", "--only", "nope", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "--only" in r.output
