"""The comparison report: metrics JSON, a Markdown table and an HTML plot.

``metrics.json`` contains ``rows`` (one per model and slice, each with
``num_users``), the run's settings and counts, and ``deploy_gate``: per
product, the HR@K (``K`` = ``hit_k``) of the gated model (2T-HGNN by
default) on warm users, the one comparable figure a deploy step checks::

    {"deploy_gate": {"movie": {"model": "2t-hgnn", "slice": "warm",
                                "metric": "hr@10", "value": 0.31,
                                "num_users": 993}}}

The gate's ``value`` is null when the warm slice has no users, and a deploy
step must treat a null gate as failing. JSON has no NaN, so every NaN or
infinite figure of the document is written as null.

Rows averaged over seeds carry ``<metric>`` (the mean), ``<metric>_std``
(the sample standard deviation, 0 for one seed) and ``num_seeds``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from gfm import storage

METRICS_FILE = "metrics.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FORMAT_VERSION = 1

GATE_MODEL = "2t-hgnn"
GATE_SLICE = "warm"
# A row's hit-rate metric is ``hr@<hit_k>``, and each row carries one.
HIT_RATE_PREFIX = "hr@"

# Row keys that are neither metrics nor part of a row's identity.
_COUNT_KEYS = ("num_users", "num_seeds")
_IDENTITY_KEYS = ("protocol", "product", "model", "slice", "view")


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the metric keys of ``rows`` in first-seen order, without ``_std``."""
    names: list[str] = []
    for row in rows:
        for key in row:
            if (key in _IDENTITY_KEYS or key in _COUNT_KEYS or key == "seed"
                    or key.endswith("_std") or key in names):
                continue
            names.append(key)
    return names


def aggregate_seeds(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Average rows that differ only in ``seed``.

    Args:
        rows: rows of several runs, each with a ``seed`` key.

    Returns:
        One row per identity (protocol, product, model, slice, view) with the
        mean of each metric and of ``num_users``, ``<metric>_std`` and
        ``num_seeds``, in first-seen order. NaN figures (slices without
        users) are left out of the mean; a metric is NaN only when every
        seed's figure is.
    """
    rows = list(rows)
    metrics = metric_names(rows)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in _IDENTITY_KEYS)].append(row)

    aggregated = []
    for identity, members in groups.items():
        out = {k: v for k, v in zip(_IDENTITY_KEYS, identity) if v is not None}
        out["num_seeds"] = len(members)
        out["num_users"] = _mean([float(m["num_users"]) for m in members])
        for metric in metrics:
            values = [float(m[metric]) for m in members
                      if metric in m and not math.isnan(float(m[metric]))]
            out[metric] = _mean(values)
            out[f"{metric}_std"] = _sample_std(values)
        aggregated.append(out)
    return aggregated


def deploy_gate(rows: Sequence[dict[str, Any]], model: str = GATE_MODEL,
                slice_name: str = GATE_SLICE,
                metric: str | None = None) -> dict[str, dict[str, Any]]:
    """Return, per product, the gated model's figure on the gate slice.

    Products where the model has no row are left out, and a product whose
    figure is NaN (a slice without users) gets ``value`` None. A deploy step
    treats both as failing its gate.

    Args:
        rows: result rows.
        model: the gated model.
        slice_name: the gate slice.
        metric: the gate metric; None uses each row's ``hr@<hit_k>``.
    """
    gate: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["model"] != model or row["slice"] != slice_name:
            continue
        name = metric or _hit_rate_key(row)
        if name is None or name not in row:
            continue
        gate[row["product"]] = {
            "model": model, "slice": slice_name, "metric": name,
            "value": _finite_or_none(row[name]), "num_users": row["num_users"],
        }
    return gate


def _hit_rate_key(row: dict[str, Any]) -> str | None:
    keys = [key for key in row
            if key.startswith(HIT_RATE_PREFIX) and not key.endswith("_std")]
    return keys[0] if len(keys) == 1 else None


def excluded_item_notes(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Describe the test positives that a capped model cannot rank above its floor.

    Args:
        reports: a label (a product, or protocol, seed and product) to that
            product's ``EvaluationResult.report``.

    Returns:
        One line per model and label whose item cap left out items with
        history (EASE's ``ease_max_items``).
    """
    notes = []
    for label, report in reports.items():
        for model, counts in report.get("excluded_items", {}).items():
            beyond = counts["items_beyond_max_items"]
            if not beyond:
                continue
            positives = counts["test_positives_beyond_max_items"]
            total = counts["test_positives"]
            share = positives / total if total else 0.0
            notes.append(
                f"{model} on {label}: keeps the {counts['max_items']} most popular of "
                f"{counts['items_with_history']} items with history; the other "
                f"{beyond} rank below every kept item, and {positives} of {total} "
                f"test positives ({share:.1%}) are on them."
            )
    return notes


def to_markdown(rows: Sequence[dict[str, Any]], slices: dict[str, str] | None = None,
                title: str = "Evaluation") -> str:
    """Render rows as one Markdown table per protocol, product and slice.

    A figure averaged over several seeds reads ``mean ± std``.
    """
    metrics = metric_names(rows)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row.get("protocol"), row["product"], row["slice"])].append(row)

    lines = [f"# {title}", ""]
    for (protocol, product, slice_name), members in groups.items():
        heading = f"{protocol}: {product}" if protocol else product
        lines.append(f"## {heading}, slice `{slice_name}`")
        if slices and slice_name in slices:
            lines.append("")
            lines.append(slices[slice_name].capitalize() + ".")
        lines.append("")
        lines.append("| model | users | " + " | ".join(metrics) + " |")
        lines.append("| --- | ---: | " + " | ".join("---:" for _ in metrics) + " |")
        for row in members:
            figures = [_format_figure(row, metric) for metric in metrics]
            users = _format_count(row["num_users"])
            lines.append(f"| {row['model']} | {users} | " + " | ".join(figures) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_png(rows: Sequence[dict[str, Any]], metric: str) -> bytes:
    """Draw ``metric`` per model and slice, one panel per protocol and product.

    Each slice's label carries the number of users behind its bars, and
    error bars show the standard deviation over seeds where there is one.

    Returns:
        The PNG image's bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    panels: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        panels[(row.get("protocol"), row["product"])].append(row)

    figure, axes = pyplot.subplots(len(panels), 1, squeeze=False,
                                   figsize=(11, 3.6 * max(len(panels), 1)))
    for axis, ((protocol, product), members) in zip(axes[:, 0], panels.items()):
        models = list(dict.fromkeys(r["model"] for r in members))
        slices = list(dict.fromkeys(r["slice"] for r in members))
        width = 0.8 / max(len(models), 1)
        for position, model in enumerate(models):
            values, errors = [], []
            for slice_name in slices:
                row = next((r for r in members
                            if r["model"] == model and r["slice"] == slice_name), {})
                values.append(float(row.get(metric, math.nan)))
                errors.append(float(row.get(f"{metric}_std", 0.0)))
            xs = [i + (position - (len(models) - 1) / 2) * width
                  for i in range(len(slices))]
            axis.bar(xs, values, width=width, yerr=errors, label=model, capsize=2)
        users = {r["slice"]: r["num_users"] for r in members}
        labels = [f"{name}\n({_format_count(users[name])} users)" for name in slices]
        axis.set_xticks(range(len(slices)))
        axis.set_xticklabels(labels, rotation=20, ha="right", fontsize=7)
        axis.set_ylabel(metric)
        axis.set_title(f"{protocol}: {product}" if protocol else product)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    pyplot.close(figure)
    return buffer.getvalue()


def to_html(rows: Sequence[dict[str, Any]], markdown: str,
            metrics: Sequence[str] | None = None) -> str:
    """Return a standalone HTML page with one embedded plot per metric and the table.

    ``metrics`` defaults to the rows' hit rates (``hr@<hit_k>``) and ``mrr``.
    """
    if metrics is None:
        hit_rates = [name for name in metric_names(rows) if name.startswith(HIT_RATE_PREFIX)]
        metrics = hit_rates + ["mrr"]
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             "<title>gfm evaluation</title></head><body>",
             "<h1>gfm evaluation</h1>"]
    for metric in metrics:
        encoded = base64.b64encode(plot_png(rows, metric)).decode("ascii")
        parts.append(f"<h2>{html.escape(metric)} per model and slice</h2>")
        parts.append(f"<img alt='{html.escape(metric)} per model and slice' "
                     f"src='data:image/png;base64,{encoded}'>")
    parts.append("<h2>Table</h2>")
    parts.append(f"<pre>{html.escape(markdown)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_uri: str | os.PathLike, rows: Sequence[dict[str, Any]],
                 extra: dict[str, Any] | None = None,
                 slices: dict[str, str] | None = None,
                 title: str = "Evaluation",
                 notes: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and ``report.html`` below ``out_uri``.

    Args:
        out_uri: output folder, local or ``gs://``.
        rows: result rows, per seed or aggregated.
        extra: more top-level entries of ``metrics.json`` (settings,
            timings, counts).
        slices: slice name to description, for the tables.
        title: heading of the Markdown report.
        notes: lines listed under "Notes" at the end of the Markdown report,
            for limits of a figure that its row does not show.

    Returns:
        The document written to ``metrics.json``, with every NaN or
        infinite number replaced by None.
    """
    rows = list(rows)
    document = dict(extra or {})
    document.update({
        "format_version": FORMAT_VERSION,
        "metrics": metric_names(rows),
        "rows": rows,
        "slices": dict(slices or {}),
        "deploy_gate": deploy_gate(rows),
    })
    document = json_ready(document)
    markdown = to_markdown(rows, slices, title)
    if notes:
        markdown += "\n## Notes\n\n" + "".join(f"- {note}\n" for note in notes)
    storage.write_json(storage.join(out_uri, METRICS_FILE), document, allow_nan=False)
    storage.write_text(storage.join(out_uri, REPORT_MD), markdown)
    storage.write_text(storage.join(out_uri, REPORT_HTML), to_html(rows, markdown))
    return document


def json_ready_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return copies of ``rows`` with NaN figures as None, because JSON has no NaN."""
    return [json_ready(dict(row)) for row in rows]


def json_ready(value: Any) -> Any:
    """Return a copy of ``value`` with every NaN or infinite float as None.

    Dicts, lists and tuples are copied recursively, and numpy scalars count
    as numbers.
    """
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return _finite_or_none(value)
    return value


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _sample_std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0 if values else math.nan
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _format_figure(row: dict[str, Any], metric: str) -> str:
    value = float(row.get(metric, math.nan))
    if math.isnan(value):
        return "n/a"
    std = row.get(f"{metric}_std")
    if std is not None and row.get("num_seeds", 1) > 1:
        return f"{value:.4f} ± {float(std):.4f}"
    return f"{value:.4f}"


def _format_count(value: Any) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"
