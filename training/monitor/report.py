"""The HTML report of a monitoring run: verdict, every check, and the plots behind them.

Built with :mod:`training.reports` (one self-contained file, figures as embedded PNGs drawn without a display,
every piece of text escaped: captured texts and field names are the clients', not ours).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.monitor.drift import shares
from training.reports import Section, new_figure, render_page

if TYPE_CHECKING:
    from training.monitor.run import MonitorRun

ORDER = {"violation": 0, "ok": 1, "skipped": 2}


def render_report(run: MonitorRun, summary: Mapping[str, Any]) -> str:
    """The report page."""
    model = summary["model"]
    title = f"Model monitor: {model.get('name')} {model.get('version')}"
    window = summary["window"]
    subtitle = (
        f"capture {summary['capture']}, from {window['since'] or 'the start'} until {window['until'] or 'now'}; "
        f"baseline {summary['baseline']}"
    )
    sections = [
        _verdict(run, summary),
        _checks(summary),
        *_text_sections(run),
        *_domain_sections(run),
        _predictions(run),
    ]
    if run.quality is not None:
        sections.append(_quality(run))
    sections.append(_traffic(run, summary))
    return render_page(title, sections, subtitle=subtitle)


def _verdict(run: MonitorRun, summary: Mapping[str, Any]) -> Section:
    read = summary["read"]
    section = Section("verdict", "Verdict")
    count = len(run.violations)
    if count:
        section.warning(
            f"{count} violation(s): " + "; ".join(f"{c.check} on {c.feature}" for c in run.violations)
        )
    else:
        section.text("No violation: every judged check passed.")
    skipped = [c for c in run.checks if c.status == "skipped"]
    if skipped:
        section.text(f"{len(skipped)} check(s) were not judged; the table below says why.")
    section.text(
        f"{read['records']:,} records in {read['exchanges']:,} captured requests from {read['files_read']:,} file(s) "
        f"({read['files_outside_window']:,} file(s) outside the window) in {summary['seconds']:.1f} s."
    )
    if read["malformed_lines"]:
        section.warning(
            f"{read['malformed_lines']:,} of {read['lines']:,} capture lines are malformed and were skipped; "
            "first ones: " + " | ".join(read["malformed_examples"])
        )
    problems = read["requests_undecodable"] + read["records_not_fitting_schema"]
    if problems:
        section.warning(
            f"{read['requests_undecodable']:,} request(s) could not be decoded and "
            f"{read['records_not_fitting_schema']:,} record(s) did not fit the model's schema; first ones: "
            + " | ".join(read["examples"])
        )
    if read["answers_unreadable"] or read["answers_missing"]:
        section.text(
            f"{read['answers_missing']:,} request(s) were captured without an answer and "
            f"{read['answers_unreadable']:,} answer(s) carried no readable predictions (error answers included)."
        )
    return section


def _checks(summary: Mapping[str, Any]) -> Section:
    rows = sorted(summary["checks"], key=lambda c: ORDER[c["status"]])
    frame = pd.DataFrame(
        [{k: c[k] for k in ("status", "check", "feature", "description")} for c in rows],
        columns=["status", "check", "feature", "description"],
    )
    return Section("checks", "Checks").table(frame, max_rows=500, max_chars=400)


def _text_sections(run: MonitorRun) -> list[Section]:
    sections = []
    current = {f["name"]: f for f in run.statistics["features"]}
    for column in run.baseline.inputs:
        if column.role != "text":
            continue
        base = run.baseline.feature(column.name) or {}
        mine = current.get(column.name) or {}
        section = Section(f"text-{column.name}", f"Text: {column.name}")
        base_text, mine_text = base.get("text_statistics") or {}, mine.get("text_statistics") or {}
        quantiles = pd.DataFrame(
            {
                "baseline": (base_text.get("length") or {}).get("quantiles") or {},
                "current": (mine_text.get("length") or {}).get("quantiles") or {},
            }
        )
        quantiles.index.name = "length quantile (characters)"
        section.table(quantiles, index=True)
        oov = pd.DataFrame(
            [
                {"": "baseline", **_oov_row(base_text)},
                {"": "current", **_oov_row(mine_text)},
            ]
        )
        section.table(oov)
        bins_base = ((base_text.get("length") or {}).get("bins")) or {}
        bins_mine = ((mine_text.get("length") or {}).get("bins")) or {}
        if bins_base.get("counts") and bins_mine.get("counts") and sum(bins_mine["counts"]):
            section.figure(
                _bars(
                    _edge_labels(bins_base.get("edges") or []),
                    shares(np.asarray(bins_base["counts"])),
                    shares(np.asarray(bins_mine["counts"])),
                    "text length (characters), the baseline's deciles",
                ),
                f"{column.name}: share of texts per length bin, baseline and current",
            )
        sections.append(section)
    return sections


def _oov_row(text: Mapping[str, Any]) -> dict[str, Any]:
    oov = text.get("oov") or {}
    if "skipped" in oov:
        return {"out-of-vocabulary rate": None, "tokens": None, "note": oov["skipped"]}
    return {"out-of-vocabulary rate": oov.get("rate"), "tokens": oov.get("tokens"), "note": ""}


def _edge_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"≤{edges[0]:.0f}"]
    labels += [f"{low:.0f}–{high:.0f}" for low, high in itertools.pairwise(edges)]
    return [*labels, f">{edges[-1]:.0f}"]


def _bars(labels: list[str], baseline: np.ndarray, current: np.ndarray, xlabel: str) -> Any:
    figure, axes = new_figure(8, 3.4)
    positions = np.arange(len(labels))
    axes.bar(positions - 0.2, baseline, width=0.4, label="baseline", color="#7a8ca3")
    axes.bar(positions + 0.2, current, width=0.4, label="current", color="#d9822b")
    axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("share")
    axes.set_xlabel(xlabel)
    axes.legend()
    return figure


def _domain_sections(run: MonitorRun) -> list[Section]:
    sections = []
    for name, test in run.domains.items():
        section = Section(f"domain-{name}", f"Domain classifier: {name}")
        section.text(
            f"Cross-validated AUC {test.auc:.3f} on {test.rows} texts a side; permutation p-value "
            f"{test.p_value:.3f} over {len(test.null_aucs)} permutations (an AUC of 0.5 means the captured texts "
            "cannot be told from the baseline's)."
        )
        columns = ["token", "weight", "share of captured texts", "share of baseline texts"]
        section.html("<p>Words that point at the captured texts:</p>")
        section.table(pd.DataFrame(test.top_current, columns=columns))
        section.html("<p>Words that point at the baseline's texts:</p>")
        section.table(pd.DataFrame(test.top_reference, columns=columns))
        if test.null_aucs:
            figure, axes = new_figure(6, 3)
            axes.hist(test.null_aucs, bins=20, color="#7a8ca3", label="permuted labels")
            axes.axvline(test.auc, color="#c0392b", label=f"observed {test.auc:.3f}")
            axes.axvline(run.thresholds.domain_auc, color="#444", linestyle="--", label="threshold")
            axes.set_xlabel("ROC AUC")
            axes.legend()
            section.figure(figure, f"{name}: observed AUC against the permutation distribution")
        sections.append(section)
    return sections


def _predictions(run: MonitorRun) -> Section:
    section = Section("predictions", "Predicted labels")

    def counts(statistics: Mapping[str, Any]) -> dict[str, float]:
        buckets = statistics["predictions"]["distribution"]["categorical"]["buckets"]
        return {str(b["value"]): float(b["count"]) for b in buckets}

    base, mine = counts(run.baseline.statistics), counts(run.statistics)
    labels = list(dict.fromkeys([*base, *mine]))
    if not labels:
        return section.text("No predicted labels (a regression model, or no answers captured).")
    p = shares(np.array([base.get(label, 0.0) for label in labels]))
    q = shares(np.array([mine.get(label, 0.0) for label in labels]))
    section.table(
        pd.DataFrame(
            {
                "label": labels,
                "baseline share": p,
                "current share": q,
                "current count": [mine.get(label, 0.0) for label in labels],
            }
        )
    )
    if sum(mine.values()):
        section.figure(
            _bars(labels, p, q, "predicted label"), "share of each predicted label, baseline and current"
        )
    return section


def _quality(run: MonitorRun) -> Section:
    section = Section("quality", "Accuracy against ground truth")
    windows = run.quality or []
    join = run.quality_join or {}
    section.text(
        f"{join.get('matched', 0):,} captured predictions joined to {join.get('labels', 0):,} labels by inferenceId "
        f"({join.get('multi_record_requests', 0):,} labelled requests held several records and were not joined)."
    )
    if not windows:
        return section.text("No labelled prediction in the window.")
    frame = pd.DataFrame(windows)
    section.table(frame, max_rows=200)
    metrics = run.baseline.model.get("metrics") or {}
    figure, axes = new_figure(8, 3.4)
    starts = pd.to_datetime(frame["start"])
    drops = {"accuracy": run.thresholds.accuracy_drop, "macro_f1": run.thresholds.macro_f1_drop}
    for metric, color in (("accuracy", "#2c7fb8"), ("macro_f1", "#d9822b")):
        axes.plot(starts, frame[metric], marker="o", color=color, label=metric)
        if metric in metrics:
            axes.axhline(metrics[metric], color=color, linestyle=":", label=f"test {metric}")
            axes.axhline(
                metrics[metric] - drops[metric], color=color, linestyle="--", label="violation below"
            )
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    section.figure(figure, "accuracy and macro-F1 per window, the model's test scores and the thresholds")
    return section


def _traffic(run: MonitorRun, summary: Mapping[str, Any]) -> Section:
    section = Section("traffic", "Traffic")
    by_variant = summary["read"]["exchanges_by_variant"]
    if by_variant:
        section.table(
            pd.DataFrame({"endpoint/variant": list(by_variant), "requests": list(by_variant.values())})
        )
    if run.hours:
        figure, axes = new_figure(8, 3)
        axes.plot([hour for hour, _ in run.hours], [n for _, n in run.hours], marker=".", color="#2c7fb8")
        axes.set_ylabel("records per hour")
        figure.autofmt_xdate()
        section.figure(figure, "captured records per hour")
    return section
