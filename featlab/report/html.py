"""A self-contained HTML report of a folder of runs.

``build_report(runs_root, out_dir)`` writes ``index.html``, one ``<experiment>.html`` per
experiment and one ``<experiment>--<hash>.html`` per run. Figures are embedded as base64 PNG
data URIs, the style sheet and the few lines of script are inline, so the pages open with no
network and can be mailed as they are.

- **index**: per experiment the number of runs by status and the claim tally **of the
  paper-scale groups only**; the claims judged at paper scale; then, under a separate heading
  and marked *smoke* / *modified*, the claims judged on smoke-scale presets and on modified
  paper presets; the run folders that could not be read, with the reason.
- **experiment page**: one section per group of runs (experiment, preset, overridden fields;
  seed excluded; see :mod:`featlab.report.groups`), labelled with its scale. Each section has
  the claims table (the paper's reference value, our value as median and [min, max] over the
  seeds with their number, the criterion, the verdict and how many seeds hold), the runs
  (linked to their pages), failed runs with their reason, and the figures of the group's
  latest DONE run.
- **run page**: provenance (preset, scale, overrides, seed, versions, quirks), every summary
  number, the failure record if any, and every figure.

Convention (verdicts over seeds):
    A group's verdict is the claim's check on the seed-median summary (median of every
    number over the group's seed views, seeds batched inside one run included); the value
    column is ``Claim.value`` per seed: median [min, max] (n seeds). Details in
    :mod:`featlab.report.groups`.

Figures are laid out by shape: each is shown at its natural size (130 px per inch of the
saved figure) capped at the page width, so single panels sit side by side and multi-panel
figures span the page; a click shows the figure full size (Esc or a click closes it).
"""
from __future__ import annotations

import base64
import html
import json
import struct
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text
from .groups import VERDICTS, Group, RunInfo, evaluate_claims, figures, group_runs, scan

__all__ = ["build_report", "evaluate_claims", "VERDICTS"]

_MAX_GROUPS_WITH_FIGURES = 4

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1240px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin-top:1.3em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.holds{color:#1e8449;font-weight:600}.does-not-hold{color:#c0392b;font-weight:600}
.not-run,.undecided{color:#7f8c8d}.failed,.unreadable{color:#c0392b}.done{color:#1e8449}.incomplete{color:#b9770e}
.badge{display:inline-block;padding:0 .45em;border-radius:.3em;font-size:.78em;font-weight:600;vertical-align:middle;
letter-spacing:.02em;white-space:nowrap}
.scale-paper{background:#d4efdf;color:#145a32}.scale-smoke{background:#fdebd0;color:#7e5109;border:1px dashed #b9770e}
.scale-paper-modified{background:#fcf3cf;color:#7d6608;border:1px solid #b7950b}.scale-unknown{background:#eaecee;color:#333}
tr.smoke td{background:#fffaf2}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure.fig{margin:0;max-width:100%;box-sizing:border-box}figure.fig.wide{flex-basis:100%}
figure.fig img{display:block;max-width:100%;height:auto;cursor:zoom-in;border:1px solid #eee}
figcaption{font-size:.82em;color:#444;margin-top:.2em}nav a{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}
.note{color:#555;font-size:.9em}
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.86);overflow:auto;z-index:10;cursor:zoom-out}
#lightbox img{display:block;margin:1.5em auto;background:#fff;max-width:none}
"""

_JS = """
(function(){var lb=document.getElementById('lightbox'),big=lb.querySelector('img');
function close(){lb.style.display='none';big.removeAttribute('src');}
document.querySelectorAll('figure.fig img').forEach(function(img){img.addEventListener('click',function(){
var s=Math.min(2,0.96*window.innerWidth/img.naturalWidth,0.94*window.innerHeight/img.naturalHeight);
big.src=img.src;big.style.width=Math.round(img.naturalWidth*Math.max(1,s))+'px';lb.style.display='block';});});
lb.addEventListener('click',close);document.addEventListener('keydown',function(e){if(e.key==='Escape')close();});
})();
"""

_SCALE_TEXT = {
    "paper": "paper scale",
    "paper, modified": "paper preset, modified",
    "smoke": "smoke scale",
    "unknown": "scale unknown",
}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any, n: int = 4) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.{n}g}"
    if isinstance(v, list):
        head = ", ".join(_fmt(x, n) for x in v[:8])
        return f"[{head}{', …' if len(v) > 8 else ''}]" + (f" ({len(v)} values)" if len(v) > 8 else "")
    if isinstance(v, dict):
        text = json.dumps(v, default=str)
        return text if len(text) <= 160 else text[:157] + "…"
    return "—" if v is None else str(v)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))


def _badge(scale: str) -> str:
    cls = "scale-" + scale.replace(", ", "-").replace(" ", "-")
    return f"<span class=\"badge {cls}\">{_e(_SCALE_TEXT.get(scale, scale))}</span>"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n{body}\n"
            f"<div id=\"lightbox\" title=\"click or Esc to close\"><img alt=\"\"></div>"
            f"<script>{_JS}</script>\n</body></html>\n")


def _table(head: list[str] | None, rows: list[str], cls: str = "") -> str:
    h = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in head) + "</tr>" if head else ""
    return f"<div class=\"scroll\"><table class=\"{cls}\">{h}\n" + "\n".join(rows) + "</table></div>"


# ---------------------------------------------------------------------------- figures

def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _figure(path: Path, caption: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<p class=\"note\">figure {_e(path.name)} could not be read ({_e(type(e).__name__)})</p>"
    size = _png_size(data)
    if size is None:
        return f"<p class=\"note\">figure {_e(path.name)} is not a PNG file</p>"
    w, h = size
    wide = " wide" if w > 600 else ""
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    return (f"<figure class=\"fig{wide}\" style=\"width:{w}px\"><img src=\"{src}\" width=\"{w}\" height=\"{h}\" "
            f"alt=\"{_e(path.stem)}\"><figcaption><b>{_e(path.stem)}</b>. {_e(caption)}"
            f"</figcaption></figure>")


def _figures(run: RunInfo) -> str:
    figs = figures(run)
    if not figs:
        return ""
    return "<div class=\"figs\">" + "\n".join(_figure(p, c) for p, c in figs) + "</div>"


# ---------------------------------------------------------------------------- claims and runs

def _value_cell(c: dict) -> str:
    if c["median"] is None:
        return "—"
    lo, hi = c["spread"]
    n = c["n_values"]
    spread = f" [{_fmt(lo, 3)}, {_fmt(hi, 3)}]" if n > 1 else ""
    return f"{_fmt(c['median'])}{spread} ({n} seed{'s' if n != 1 else ''})"


def _claim_rows(claims: list[dict], with_group: bool) -> list[str]:
    rows = []
    for c in claims:
        first = ""
        if with_group:
            g: Group = c["group"]
            first = (f"<td><a href=\"{_slug(g.experiment)}.html#g-{g.slug}\">{_e(g.experiment)}</a></td>"
                     f"<td>{_badge(g.scale)}<br>{_e(g.label)}</td>")
        cls = c["verdict"].replace(" ", "-")
        smoke = " class=\"smoke\"" if with_group and c["group"].scale != "paper" else ""
        rows.append(f"<tr{smoke}>{first}<td>{_e(c['text'])}</td><td>{_e(c['source'])}</td>"
                    f"<td>{_e(c['reference'] or '—')}</td><td>{_e(c['criterion'])}</td>"
                    f"<td class=\"num\">{_e(_value_cell(c))}</td><td>{_e(c['measured'])}</td>"
                    f"<td class=\"{cls}\">{_e(c['verdict'])}</td><td>{_e(c['seeds_holding'])}</td></tr>")
    return rows


_CLAIM_HEAD = ["claim", "source", "paper's value", "criterion", "ours: median [min, max] (seeds)",
               "measured (seed median)", "verdict", "seeds holding"]


def _claims_table(claims: list[dict], with_group: bool = False) -> str:
    if not claims:
        return "<p class=\"note\">No claims registered for this experiment.</p>"
    head = (["experiment", "group"] if with_group else []) + _CLAIM_HEAD
    return _table(head, _claim_rows(claims, with_group), "claims")


def _runs_table(runs: list[RunInfo]) -> str:
    rows = []
    for r in runs:
        link = f"<a href=\"{_e(r.page)}\"><code>{_e(r.hash)}</code></a>"
        el = r.summary.get("elapsed_s") if r.status == "done" else r.failure.get("elapsed_s")
        why = ""
        if r.status == "failed":
            why = f"{r.failure.get('reason', '')}: {r.failure.get('message', '')}"
        rows.append(f"<tr><td>{link}</td><td class=\"{_e(r.status)}\">{_e(r.status)}</td><td>{_e(_fmt(r.seed))}</td>"
                    f"<td>{_e(r.meta.get('device', ''))}</td><td>{_e(r.started)}</td>"
                    f"<td class=\"num\">{_e(_fmt(el, 3))}</td><td>{_e(why[:300])}</td></tr>")
    return _table(["run", "status", "seed", "device", "started", "elapsed s", "failure"], rows, "runs")


def _unreadable_list(bad: list[RunInfo]) -> str:
    if not bad:
        return ""
    items = "".join(f"<li><a href=\"{_e(r.page)}\"><code>{_e(r.path)}</code></a>: {_e(r.error)}</li>" for r in bad)
    return f"<h2>Unreadable run folders ({len(bad)})</h2><ul>{items}</ul>"


# ---------------------------------------------------------------------------- pages

def _run_page(run: RunInfo, group: Group | None) -> str:
    m = run.meta
    ov = run.overrides
    prov = [("experiment", f"<a href=\"{_slug(run.experiment)}.html\">{_e(run.experiment)}</a>"),
            ("status", f"<span class=\"{_e(run.status)}\">{_e(run.status)}</span>"),
            ("preset", _e(run.preset or "not recorded")),
            ("scale", _badge(group.scale) if group else "—"),
            ("overrides", _e(", ".join(f"{k}={_fmt(v)}" for k, v in ov.items()) or "none") if ov is not None
             else "not recorded"),
            ("seed", _e(_fmt(run.seed))), ("device", _e(m.get("device", ""))),
            ("reference quirks", _e(", ".join(m.get("reference_quirks") or []) or "none")),
            ("featlab / torch / python", _e(f"{m.get('featlab_version')} / {m.get('torch_version')} / "
                                            f"{m.get('python_version')}")),
            ("git commit", _e(m.get("git_commit") or "n/a")), ("started", _e(run.started)),
            ("folder", f"<code>{_e(run.path)}</code>")]
    if run.error:
        prov.insert(2, ("unreadable", _e(run.error)))
    body = [f"<nav><a href=\"index.html\">&larr; index</a><a href=\"{_slug(run.experiment)}.html\">"
            f"&larr; {_e(run.experiment)}</a></nav>",
            f"<h1>{_e(run.experiment)} <code>{_e(run.hash)}</code></h1>",
            _table(None, [f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in prov], "prov")]
    if run.summary:
        rows = [f"<tr><td><code>{_e(k)}</code></td><td class=\"num\">{_e(_fmt(v))}</td></tr>"
                for k, v in run.summary.items() if k != "experiment"]
        body += ["<h2>Summary</h2>", _table(["key", "value"], rows, "summary")]
    if run.status == "failed":
        f = run.failure
        body += ["<h2>Failure</h2>", f"<p>{_e(f.get('reason', ''))}: {_e(f.get('message', ''))}</p>",
                 f"<pre class=\"scroll\">{_e(f.get('traceback', ''))}</pre>"]
    cfg = run.config
    if cfg:
        body += ["<h2>Config</h2>",
                 _table(["field", "value"], [f"<tr><td><code>{_e(k)}</code></td><td>{_e(_fmt(v))}</td></tr>"
                                             for k, v in cfg.items()], "config")]
    figs = _figures(run)
    if figs:
        body += ["<h2>Figures</h2>", figs]
    return _page(f"featlab: {run.experiment} {run.hash}", "\n".join(body))


def _experiment_page(name: str, exp: Any, groups: list[Group], bad: list[RunInfo], claims_by_group: dict) -> str:
    body = [f"<nav><a href=\"index.html\">&larr; index</a></nav>", f"<h1>{_e(name)}</h1>"]
    if exp is not None:
        papers = ", ".join(p for p in exp.presets if exp.scale(p) == "paper") or "none"
        body.append(f"<p>{_e(exp.summary)}</p><p class=\"note\">Presets: {_e(', '.join(exp.presets))}; "
                    f"paper scale: {_e(papers)}. Other presets are smoke-scale checks of the code path.</p>")
    if not groups:
        body.append("<p>No runs.</p>")
        if exp is not None:
            body += ["<h2>Claims</h2>", _claims_table(evaluate_claims(exp, []))]
    for i, g in enumerate(groups):
        n = {s: sum(r.status == s for r in g.runs) for s in ("done", "failed", "incomplete")}
        body.append(f"<h2 id=\"g-{g.slug}\">{_badge(g.scale)} {_e(g.label)}</h2>")
        body.append(f"<p class=\"note\">{n['done']} done, {n['failed']} failed, {n['incomplete']} incomplete"
                    + (" — smoke scale: a verdict here checks the code path, not the paper's claim."
                       if g.scale == "smoke" else
                       " — a paper preset with recipe fields changed: not counted at paper scale."
                       if g.scale == "paper, modified" else "") + "</p>")
        if exp is not None:
            body += ["<h3>Claims</h3>", _claims_table(claims_by_group[id(g)])]
        body += ["<h3>Runs</h3>", _runs_table(g.runs)]
        if g.done:
            latest = g.done[0]
            if i < _MAX_GROUPS_WITH_FIGURES:
                figs = _figures(latest)
                if figs:
                    body += [f"<h3>Figures of the latest run, <a href=\"{_e(latest.page)}\"><code>"
                             f"{_e(latest.hash)}</code></a> (seed {_e(_fmt(latest.seed))})</h3>", figs]
            else:
                body.append(f"<p class=\"note\">Figures: see the run pages.</p>")
    body.append(_unreadable_list(bad))
    return _page(f"featlab: {name}", "\n".join(body))


def _tally(claims: list[dict]) -> str:
    return ", ".join(f"{sum(c['verdict'] == v for c in claims)} {v}"
                     for v in ("holds", "does not hold", "undecided", "not run")
                     if any(c["verdict"] == v for c in claims))


def build_report(runs_root: str | Path = "runs", out_dir: str | Path = "report") -> Path:
    """Write the HTML report of every run under ``runs_root`` into ``out_dir``; return index.html.

    One unreadable run folder never breaks the report: it is listed with its reason.
    """
    from ..experiments import all_experiments

    runs_root, out_dir = Path(runs_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = scan(runs_root)
    exps = all_experiments()
    names = sorted(set(exps) | {r.experiment for r in runs})
    index_rows, paper_claims, other_claims = [], [], []
    all_bad: list[RunInfo] = []
    for name in names:
        exp = exps.get(name)
        mine = [r for r in runs if r.experiment == name]
        bad = [r for r in mine if r.status == "unreadable"]
        all_bad += bad
        groups = group_runs(mine, exp)
        claims_by_group: dict[int, list[dict]] = {}
        for g in groups:
            rows = evaluate_claims(exp, [r.summary for r in g.done]) if exp is not None else []
            claims_by_group[id(g)] = rows
            for c in rows:
                (paper_claims if g.scale == "paper" else other_claims).append({"group": g, **c})
        unrun: list[dict] = []
        if exp is not None and not any(g.done for g in groups if g.scale == "paper"):
            unrun = evaluate_claims(exp, [])  # no paper-scale run yet: its claims are "not run" at paper scale
        atomic_write_text(out_dir / f"{_slug(name)}.html", _experiment_page(name, exp, groups, bad, claims_by_group))
        for g in groups:
            for r in g.runs:
                atomic_write_text(out_dir / r.page, _run_page(r, g))
        for r in bad:
            atomic_write_text(out_dir / r.page, _run_page(r, None))
        n = {s: sum(r.status == s for r in mine) for s in ("done", "failed", "incomplete", "unreadable")}
        paper = [c for g in groups if g.scale == "paper" for c in claims_by_group[id(g)]] or unrun
        smoke = [c for g in groups if g.scale != "paper" for c in claims_by_group[id(g)]]
        n_groups = {s: sum(g.scale == s for g in groups) for s in ("paper", "paper, modified", "smoke", "unknown")}
        groups_text = ", ".join(f"{k} {_SCALE_TEXT[s]}" for s, k in n_groups.items() if k)
        index_rows.append(
            f"<tr><td><a href=\"{_slug(name)}.html\">{_e(name)}</a></td><td>{_e(exp.summary if exp else '')}</td>"
            f"<td>{_e(groups_text or '—')}</td>"
            + "".join(f"<td class=\"num\">{n[s]}</td>" for s in n)
            + f"<td>{_e(_tally(paper) or '—')}</td><td class=\"note\">{_e(_tally(smoke) or '—')}</td></tr>")
        for c in unrun:
            paper_claims.append({"group": Group(name, None, {}, "paper"), **c, "unrun": True})
    body = ["<h1>featlab report</h1>",
            f"<p>Runs scanned under <code>{_e(runs_root.resolve())}</code>: {len(runs)}"
            + (f" ({len(all_bad)} unreadable, listed at the end)" if all_bad else "") + ".</p>",
            "<p class=\"note\">Runs are grouped by experiment, preset and overridden fields (seed excluded). "
            f"{_badge('paper')} groups run a paper preset as it is; only they enter the paper-scale tally. "
            f"{_badge('smoke')} groups (tiny presets) check the code path in seconds; {_badge('paper, modified')} "
            "groups changed a recipe field. A group's verdict is the criterion checked on the seed-median "
            "summary; the value column gives the median and [min, max] over seeds.</p>",
            "<h2>Experiments</h2>",
            _table(["experiment", "what", "groups", "done", "failed", "incomplete", "unreadable",
                    "claims at paper scale", "claims at smoke scale / modified"], index_rows),
            "<h2>Claims of the papers, at paper scale</h2>"]
    shown = [c for c in paper_claims if not c.get("unrun")]
    unrun_by_exp: dict[str, int] = {}
    for c in paper_claims:
        if c.get("unrun"):
            unrun_by_exp[c["group"].experiment] = unrun_by_exp.get(c["group"].experiment, 0) + 1
    if not shown:
        body.append("<p><b>No paper-scale run yet.</b> Every verdict in this report comes from a smoke-scale "
                    "or modified preset (next section).</p>")
    else:
        body.append(_claims_table(shown, with_group=True))
    if unrun_by_exp:
        items = ", ".join(f"<a href=\"{_slug(n)}.html\">{_e(n)}</a> ({k} claim{'s' if k != 1 else ''})"
                          for n, k in unrun_by_exp.items())
        body.append(f"<p>Claims <span class=\"not-run\">not run</span> at paper scale: {items}.</p>")
    body += [f"<h2>{_badge('smoke')} {_badge('paper, modified')} Checks at other scales</h2>",
             "<p class=\"note\">Not results about the papers: smoke-scale presets run for seconds.</p>",
             _claims_table(other_claims, with_group=True) if other_claims else "<p>None.</p>",
             _unreadable_list(all_bad)]
    index = out_dir / "index.html"
    atomic_write_text(index, _page("featlab report", "\n".join(body)))
    return index
