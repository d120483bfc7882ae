"""A self-contained HTML report of a folder of runs.

``build_report(runs_root, out_dir)`` writes ``index.html`` and one ``<experiment>.html`` per
experiment. Figures are embedded as base64 PNG data URIs and the style sheet is inline, so the
pages open with no network and can be mailed as they are.

Each experiment page has: the experiment's one-line summary; a **claims** table (each headline
claim of the paper registered by the experiment, with the measured number, the criterion and a
verdict: *holds*, *does not hold*, *not measured* or *not run*), the table of runs (status,
seed, the config fields that vary, summary numbers), failed runs with their reason, and the
figures of the latest DONE runs with their captions (which name any active reference quirk).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runs.index import index_runs
from ..utils import atomic_write_text

__all__ = ["build_report", "evaluate_claims", "VERDICTS"]

VERDICTS = {True: "holds", False: "does not hold", None: "not measured"}
_MAX_RUNS_WITH_FIGURES = 3

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.holds{color:#1e8449;font-weight:600}.does-not-hold{color:#c0392b;font-weight:600}
.not-run,.not-measured{color:#7f8c8d}.failed{color:#c0392b}.done{color:#1e8449}.incomplete{color:#b9770e}
figure{display:inline-block;margin:.5em;max-width:48%;vertical-align:top}figure img{max-width:100%}
figcaption{font-size:.82em;color:#444}nav a{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def evaluate_claims(exp: Any, summaries: list[dict]) -> list[dict]:
    """Evaluate ``exp.claims`` on the summaries of its DONE runs (latest first).

    Each row: text, source, criterion, measured (latest run), verdict (latest run:
    holds / does not hold / not measured; ``not run`` without DONE runs), and ``tally``
    (in how many runs it holds).
    """
    rows = []
    for claim in getattr(exp, "claims", ()) or ():
        if not summaries:
            rows.append({"text": claim.text, "source": claim.source, "criterion": claim.criterion,
                         "measured": "", "verdict": "not run", "tally": ""})
            continue
        results = []
        for s in summaries:
            try:
                results.append(claim.check(s))
            except Exception as e:  # noqa: BLE001 - a summary without the key: not measured
                results.append((f"n/a ({type(e).__name__})", None))
        measured, verdict = results[0]
        held = sum(v is True for _, v in results)
        decided = sum(v is not None for _, v in results)
        rows.append({"text": claim.text, "source": claim.source, "criterion": claim.criterion,
                     "measured": measured, "verdict": VERDICTS[verdict],
                     "tally": f"{held}/{decided} runs" if decided else ""})
    return rows


def _img(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _claims_table(rows: list[dict], with_experiment: bool = False) -> str:
    if not rows:
        return "<p>No claims registered for this experiment.</p>"
    head = ("<th>experiment</th>" if with_experiment else "") + \
        "<th>claim</th><th>source</th><th>criterion</th><th>measured</th><th>verdict</th><th>runs</th>"
    out = [f"<table class=\"claims\"><tr>{head}</tr>"]
    for r in rows:
        exp = f"<td><a href=\"{_slug(r['experiment'])}.html\">{_e(r['experiment'])}</a></td>" if with_experiment else ""
        cls = r["verdict"].replace(" ", "-")
        out.append(f"<tr>{exp}<td>{_e(r['text'])}</td><td>{_e(r['source'])}</td><td>{_e(r['criterion'])}</td>"
                   f"<td>{_e(r['measured'])}</td><td class=\"{cls}\">{_e(r['verdict'])}</td><td>{_e(r['tally'])}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _runs_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>No runs.</p>"
    from ..runs.index import _varying

    cols = ["hash", "status", "seed"] + _varying(rows)
    out = ["<table class=\"runs\"><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"]
    for r in rows:
        cells = "".join(f"<td class=\"{_e(r['status'])}\">{_e(_fmt(r.get(c)))}</td>" if c == "status"
                        else f"<td>{_e(_fmt(r.get(c)))}</td>" for c in cols)
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _started(row: dict) -> str:
    try:
        return RunDir(row["path"]).read_config().get("started", "")
    except (OSError, json.JSONDecodeError):
        return ""


def build_report(runs_root: str | Path = "runs", out_dir: str | Path = "report") -> Path:
    """Write the HTML report of every run under ``runs_root`` into ``out_dir``; return index.html."""
    from ..experiments import all_experiments

    runs_root, out_dir = Path(runs_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = index_runs(runs_root) if runs_root.exists() else []
    exps = all_experiments()
    names = sorted(set(exps) | {r["experiment"] for r in rows})
    index_rows, all_claims = [], []
    for name in names:
        exp = exps.get(name)
        group = sorted((r for r in rows if r["experiment"] == name), key=_started, reverse=True)
        done = [r for r in group if r["status"] == "done"]
        summaries = [RunDir(r["path"]).read_summary() for r in done]
        claims = evaluate_claims(exp, summaries) if exp is not None else []
        for c in claims:
            all_claims.append({"experiment": name, **c})
        body = [f"<nav><a href=\"index.html\">&larr; index</a></nav>", f"<h1>{_e(name)}</h1>"]
        if exp is not None:
            body.append(f"<p>{_e(exp.summary)}</p>")
        body += ["<h2>Claims</h2>", _claims_table(claims), "<h2>Runs</h2>", _runs_table(group)]
        failed = [r for r in group if r["status"] == "failed"]
        if failed:
            body.append("<h2>Failed runs</h2><ul>")
            for r in failed:
                f = RunDir(r["path"]).read_failure()
                body.append(f"<li><code>{_e(r['hash'])}</code> ({_e(f.get('reason'))}): {_e(f.get('message'))}</li>")
            body.append("</ul>")
        unreadable = [r for r in group if r["status"] == "unreadable"]
        if unreadable:
            body.append("<h2>Unreadable run folders</h2><ul>")
            for r in unreadable:
                body.append(f"<li><code>{_e(r['path'])}</code>: {_e(r.get('problem'))}</li>")
            body.append("</ul>")
        for r in done[:_MAX_RUNS_WITH_FIGURES]:
            rd = RunDir(r["path"])
            pngs = [p for p in rd.figure_paths() if p.suffix == ".png"]
            if not pngs:
                continue
            quirks = rd.read_config().get("reference_quirks") or []
            body.append(f"<h2>Figures of run <code>{_e(r['hash'])}</code> (seed {_e(r.get('seed'))})</h2>")
            if quirks:
                body.append(f"<p>Reference quirks active: {_e(', '.join(quirks))}</p>")
            caps = rd.captions()
            for p in pngs:
                data = rd.read_figure(p)
                if data is None:
                    continue
                body.append(f"<figure><img src=\"{_img(data)}\" alt=\"{_e(p.stem)}\">"
                            f"<figcaption><b>{_e(p.stem)}</b>. {_e(caps.get(p.stem, ''))}</figcaption></figure>")
        atomic_write_text(out_dir / f"{_slug(name)}.html", _page(f"featlab: {name}", "\n".join(body)))
        n = {s: sum(r["status"] == s for r in group) for s in ("done", "failed", "incomplete")}
        verdicts = ", ".join(f"{sum(c['verdict'] == v for c in claims)} {v}"
                             for v in ("holds", "does not hold", "not measured", "not run")
                             if any(c["verdict"] == v for c in claims))
        index_rows.append(f"<tr><td><a href=\"{_slug(name)}.html\">{_e(name)}</a></td>"
                          f"<td>{_e(exp.summary if exp else '')}</td><td>{n['done']}</td><td>{n['failed']}</td>"
                          f"<td>{n['incomplete']}</td><td>{_e(verdicts)}</td></tr>")
    body = ["<h1>featlab report</h1>",
            f"<p>Runs scanned under <code>{_e(runs_root.resolve())}</code>: {len(rows)}.</p>",
            "<h2>Experiments</h2><table><tr><th>experiment</th><th>what</th><th>done</th><th>failed</th>"
            "<th>incomplete</th><th>claims</th></tr>", *index_rows, "</table>",
            "<h2>Claims of the papers</h2>", _claims_table(all_claims, with_experiment=True)]
    index = out_dir / "index.html"
    atomic_write_text(index, _page("featlab report", "\n".join(body)))
    return index
