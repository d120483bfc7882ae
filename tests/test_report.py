"""The HTML report: provenance, grouping by preset and overrides, verdicts over seeds, and the
pages as a real browser lays them out (headless Chromium)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from featlab.cli import main
from featlab.config import ExperimentConfig, F, apply_overrides
from featlab.experiments import Claim, Experiment, register
from featlab.report import build_report
from featlab.report.groups import evaluate_claims, group_runs, median_summary, scan, seed_views
from featlab.runs import execute

# ------------------------------------------------------------------ a toy experiment with three figure shapes


@dataclass(frozen=True)
class ReportToyConfig(ExperimentConfig):
    offset: float = F(1.0, "x = offset + 0.1 seed")
    n_seeds: int = F(1, "seeds batched in one run (per-seed list y)", ge=1)
    root: str | None = F(None, "a data folder (unused): a recipe-neutral override")


def _tiny():
    return replace(ReportToyConfig(), offset=0.5)


def _run(cfg, ctx):
    import numpy as np

    from featlab.plotting import colorbar, figure, image, log_axis

    y = [cfg.offset - 1 + 0.05 * i for i in range(cfg.n_seeds)]
    summary = {"x": cfg.offset + 0.1 * cfg.seed, "y": y, "y_median": float(np.median(y)),
               "y_spread": [min(y), max(y)], "note": "text"}
    if cfg.seed not in (0, 4):  # figures cost ~1 s per run: only the runs whose pages are looked at
        return summary
    fig, ax = figure()
    ax[0, 0].plot([1, 10, 100], [0.2, 0.3, 0.5])
    log_axis(ax[0, 0], "both")
    ctx.save_figure(fig, "one_panel", "a line, seed 0 of the batch")
    fig, ax = figure(1, 8, width=1.1, height=1.3)
    ims = [image(a, np.outer(np.arange(5) - k, np.arange(5)), symmetric=True, title=f"unit {k}")
           for k, a in enumerate(ax[0])]
    colorbar(fig, ims[0], ax[0], "w")
    ctx.save_figure(fig, "eight_panels", "eight image panels sharing a colour bar")
    fig, ax = figure(4, 2, width=1.4, height=1.4)
    for a in ax.ravel():
        image(a, np.eye(4))
    ctx.save_figure(fig, "tall_grid", "a tall grid of images")
    return summary


TOY = register(Experiment(
    name="report-toy", summary="toy experiment for the report tests", config=ReportToyConfig,
    presets={"tiny": _tiny, "paper": ReportToyConfig}, run=_run,
    claims=(Claim("x exceeds one", "tests", "x > 1", lambda s: (f"x={s['x']:.3g}", s["x"] > 1),
                  reference="x ≈ 1.5 (toy paper, Fig. 0)", value=lambda s: s["x"]),
            Claim("y is not negative", "tests", "y_median >= 0",
                  lambda s: (f"y={s['y_median']:.3g}", s["y_median"] >= 0), value=lambda s: s["y_median"])),
))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "runs"
    for seed in (0, 1, 2):
        execute(TOY, apply_overrides(ReportToyConfig(), [f"seed={seed}"]), out, quiet=True, preset="paper")
    execute(TOY, _tiny(), out, quiet=True, preset="tiny")
    execute(TOY, apply_overrides(ReportToyConfig(), ["offset=3", "seed=4"]), out, quiet=True, preset="paper")
    execute(TOY, apply_overrides(ReportToyConfig(), ["n_seeds=3", "root=/x", "seed=9"]), out, quiet=True,
            preset="paper")
    bad = out / "report-toy" / "badconfig0000"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text("{not json")
    half = out / "report-toy" / "badsummary00"
    shutil.copytree(next((out / "report-toy").glob("*/DONE")).parent, half)
    (half / "summary.json").write_text("[1, 2")
    rep = tmp / "report"
    build_report(out, rep)
    return out, rep


def _meta(out, **want):
    for p in (out / "report-toy").glob("*/config.json"):
        try:
            m = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if all(m["config"].get(k) == v for k, v in want.items()):
            return m, p.parent
    raise AssertionError(f"no run with {want}")


def test_config_json_records_preset_scale_and_overrides(report):
    out, _ = report
    m, _ = _meta(out, seed=0, offset=1.0, n_seeds=1)
    assert (m["preset"], m["scale"], m["overrides"]) == ("paper", "paper", {})
    m, rd = _meta(out, seed=4)
    assert m["overrides"] == {"seed": 4, "offset": 3.0}
    caps = json.loads((rd / "figures" / "captions.json").read_text())
    assert caps["one_panel"].endswith("Run: preset paper (paper scale), seed 4, overrides: offset=3.0.")
    m, rd = _meta(out, offset=0.5)
    assert (m["preset"], m["scale"], m["overrides"]) == ("tiny", "smoke", {})
    assert "preset tiny (smoke scale), seed 0, no overrides." in json.loads(
        (rd / "figures" / "captions.json").read_text())["one_panel"]


def test_groups_by_preset_and_overrides_seed_excluded(report):
    out, _ = report
    runs = [r for r in scan(out) if r.experiment == "report-toy"]
    bad = {r.path.name: r.error for r in runs if r.status == "unreadable"}
    assert set(bad) == {"badconfig0000", "badsummary00"}
    assert "config.json" in bad["badconfig0000"] and "summary.json" in bad["badsummary00"]
    groups = group_runs(runs, TOY)
    got = [(g.scale, g.preset, g.overrides, len(g.runs)) for g in groups]
    assert got == [("paper", "paper", {}, 3),                                   # seeds 0, 1, 2 together
                   ("paper", "paper", {"n_seeds": 3, "root": "/x"}, 1),    # neutral overrides: still paper
                   ("paper, modified", "paper", {"offset": 3.0}, 1),
                   ("smoke", "tiny", {}, 1)]


def test_convention_group_verdict_is_the_check_on_the_seed_median_summary(report):
    out, _ = report
    paper = group_runs([r for r in scan(out) if r.experiment == "report-toy"], TOY)[0]
    rows = evaluate_claims(TOY, [r.summary for r in paper.done])
    x = rows[0]  # x = 1.0, 1.1, 1.2 over seeds: the median holds, seed 0 alone does not
    assert x["median"] == pytest.approx(1.1) and x["spread"] == pytest.approx([1.0, 1.2])
    assert (x["n_seeds"], x["n_values"], x["verdict"], x["seeds_holding"]) == (3, 3, "holds", "2 of 3 seeds")
    assert x["reference"].startswith("x ≈ 1.5")
    # the verdict is not a majority vote: 1 of 3 seeds above the threshold, median below it
    s = [{"x": 0.9}, {"x": 0.95}, {"x": 2.0}]
    assert evaluate_claims(TOY, s)[0]["verdict"] == "does not hold"
    assert evaluate_claims(TOY, [])[0]["verdict"] == "not run"
    # a check that cannot decide (here: the number is missing) is "undecided", never a pass
    assert evaluate_claims(TOY, [{"y": 1.0}])[0]["verdict"] == "undecided"


def test_convention_batched_seeds_become_seed_views():
    s = {"y": [-0.2, 0.1, 0.3], "y_median": 0.1, "y_spread": [-0.2, 0.3], "x": 2.0, "other": [1, 2]}
    views = seed_views(s)
    assert [v["y_median"] for v in views] == [-0.2, 0.1, 0.3] and all(v["x"] == 2.0 for v in views)
    assert views[0]["y_spread"] == [-0.2, -0.2] and views[0]["other"] == [1, 2]
    med = median_summary(views)
    assert med["y_median"] == pytest.approx(0.1) and med["y_spread"] == [-0.2, 0.3]
    rows = evaluate_claims(TOY, [s])
    assert rows[1]["n_seeds"] == 3 and rows[1]["spread"] == [-0.2, 0.3] and rows[1]["seeds_holding"] == "2 of 3 seeds"
    assert median_summary([{"a": float("nan"), "b": True}, {"a": 1.0, "b": False}, {"a": 3.0, "b": True}]) == \
        {"a": 2.0, "b": True}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.rows, self._row, self._cell = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a.get("href", ""))
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text())
    return p


def test_report_pages_tally_paper_scale_only_and_link_everything(report):
    out, rep = report
    pages = {p.name: p for p in rep.glob("*.html")}
    parsed = {n: _parse(p) for n, p in pages.items()}
    for name, page in parsed.items():
        assert not [h for h in page.hrefs if h.startswith(("http:", "https:", "//"))]
        for h in page.hrefs:
            assert (rep / h.split("#")[0]).is_file(), f"{name} links a missing page {h}"
    row = next(r for r in parsed["index.html"].rows if r and r[0] == "report-toy")
    # done, failed, incomplete, unreadable; the paper-scale tally; the smoke/modified tally
    assert row[3:7] == ["6", "0", "0", "2"]
    assert row[7] == "4 holds"                    # the two paper-scale groups, two claims each
    assert row[8] == "2 holds, 2 does not hold"   # modified paper (offset=3): hold; tiny: do not
    idx = pages["index.html"].read_text()
    assert "badconfig0000" in idx and "badsummary00" in idx and "not run" in idx
    exp_page = pages["report-toy.html"].read_text()
    assert "smoke scale" in exp_page and "paper preset, modified" in exp_page and "x ≈ 1.5" in exp_page
    assert "1.1 [1, 1.2] (3 seeds)" in exp_page and "2 of 3 seeds" in exp_page
    run_pages = [n for n in pages if n.startswith("report-toy--")]
    assert len(run_pages) == 8  # 6 readable runs + the two unreadable folders
    m, rd = _meta(out, seed=4)
    run = parsed[f"report-toy--{m['hash']}.html"]
    cells = {r[0]: r[1] for r in run.rows if len(r) == 2}
    assert cells["preset"] == "paper" and cells["scale"] == "paper preset, modified"
    assert cells["overrides"] == "seed=4, offset=3" and cells["x"] == "3.4" and cells["note"] == "text"
    assert len(run.imgs) == 3 and all(s.startswith("data:image/png;base64,") for s in run.imgs)


# ------------------------------------------------------------------ headless Chromium

_CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
          "--disable-dev-shm-usage"]

_PROBE = """<script>
function featlabProbe(){
  var W = document.documentElement.clientWidth, out = {width: W,
      scrollWidth: document.documentElement.scrollWidth, images: []};
  document.querySelectorAll('figure img').forEach(function(img){
    var r = img.getBoundingClientRect();
    out.images.push({alt: img.alt, nw: img.naturalWidth, nh: img.naturalHeight, w: r.width, h: r.height,
                     left: r.left, right: r.right});
  });
  var first = document.querySelector('figure img');
  if (first) { first.click(); var lb = document.getElementById('lightbox'), big = lb.querySelector('img');
    out.lightbox = {display: getComputedStyle(lb).display, w: big.getBoundingClientRect().width,
                    nw: first.naturalWidth}; lb.click(); out.closed = getComputedStyle(lb).display; }
  var pre = document.createElement('pre'); pre.id = 'featlab-probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}
if (document.readyState === 'complete') featlabProbe(); else window.addEventListener('load', featlabProbe);
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; missing: a failure under .ci/run (FEATLAB_REQUIRE_CHROMIUM), else a skip."""
    for name in _CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("FEATLAB_REQUIRE_CHROMIUM"):
        pytest.fail("headless Chromium is required here (FEATLAB_REQUIRE_CHROMIUM is set by .ci/run) "
                    "but none of " + ", ".join(_CHROMIUM) + " is on PATH")
    pytest.skip("no Chromium on PATH (CI installs it: .ci/run)")


def _browse(binary: str, page: Path, tmp: Path, width: int, *extra: str) -> str:
    r = subprocess.run([binary, *_FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--window-size={width},900",
                        *extra, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.parametrize("width", [1280, 760])
def test_report_pages_in_headless_chromium(chromium, report, tmp_path, width):
    """No figure is wider than the page or shown below half its natural size; click enlarges."""
    binary = chromium
    out, rep = report
    m, _ = _meta(out, seed=0, offset=1.0, n_seeds=1)
    for name in ("index.html", "report-toy.html", f"report-toy--{m['hash']}.html"):
        probed = tmp_path / name
        probed.write_text((rep / name).read_text().replace("</body>", _PROBE + "</body>"))
        dom = _browse(binary, probed, tmp_path, width, "--virtual-time-budget=5000", "--dump-dom")
        found = re.search(r'<pre id="featlab-probe">(.*?)</pre>', dom, re.S)
        assert found, f"{name}: the probe did not run"
        res = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        assert res["scrollWidth"] <= res["width"], f"{name}: the page scrolls sideways"
        if name == "index.html":
            continue
        assert len(res["images"]) >= 3 and len(res["images"]) % 3 == 0, name  # 3 figures per group shown
        for im in res["images"]:
            assert im["nw"] > 0, f"{name}: {im['alt']} did not decode"
            assert im["left"] >= 0 and im["right"] <= res["width"] + 0.5 and im["w"] <= res["width"], \
                f"{name}: {im['alt']} is wider than the page ({im['w']} > {res['width']})"
            assert im["w"] >= 0.5 * im["nw"] and im["w"] >= 200, \
                f"{name}: {im['alt']} is shown at {im['w']:.0f} px of {im['nw']} (unreadably small)"
        wide = next(im for im in res["images"] if im["alt"] == "eight_panels")
        narrow = next(im for im in res["images"] if im["alt"] == "one_panel")
        # laid out by shape: the 8-panel figure spans the page (or shows at full size), one panel is natural size
        assert wide["w"] >= min(wide["nw"], 0.9 * res["width"]) and abs(narrow["w"] - narrow["nw"]) <= 2
        lb = res["lightbox"]
        assert lb["display"] == "block" and lb["w"] >= lb["nw"] and res["closed"] == "none"
    shot = tmp_path / "shot.png"
    _browse(binary, rep / "report-toy.html", tmp_path, width, f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", data[16:20])[0] == width
    assert len(data) > 20_000  # text, tables and figures were painted (a blank page is ~5 kB)


def test_cli_report_and_show(report, tmp_path):
    out, _ = report
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "index.html").is_file()
    _, rd = _meta(out, seed=4)
    r = CliRunner().invoke(main, ["show", str(rd)])
    assert r.exit_code == 0, r.output
    assert "preset: paper (paper scale)   overrides: seed=4, offset=3.0" in r.output


def test_convention_provenance_of_a_config():
    from featlab.config import ConfigError
    from featlab.runs.runner import provenance

    assert provenance(TOY, ReportToyConfig(), None) == {"preset": "paper", "scale": "paper", "overrides": {}}
    assert provenance(TOY, _tiny(), None)["preset"] == "tiny"  # a config equal to a preset is that preset
    assert provenance(TOY, replace(_tiny(), seed=2, threads=1), None) == \
        {"preset": "tiny", "scale": "smoke", "overrides": {"seed": 2, "threads": 1}}  # ... wherever it runs
    assert provenance(TOY, replace(ReportToyConfig(), offset=2.0), None) == \
        {"preset": None, "scale": "smoke", "overrides": None}  # not a preset: nothing is guessed
    assert provenance(TOY, replace(_tiny(), seed=3), "tiny")["overrides"] == {"seed": 3}
    with pytest.raises(ConfigError, match="preset"):
        provenance(TOY, ReportToyConfig(), "papr")
