"""See the run: one self-contained HTML page per run folder, from the folder's files alone.

`report.html` embeds its plots as base64 PNG images and its style inline: no network, no
scripts, no other file. It opens offline in any browser, reads on a phone or a desktop,
and prints cleanly. `ptflow report RUN_DIR` renders it again without retraining.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptflow.config import made_data, relevant_settings
from ptflow.errors import WorkflowError
from ptflow.files import check_output_path, quoted, write_text
from ptflow.run_folder import (
    PLOT_CAPTIONS,
    REPORT,
    SUMMARY,
    read_history,
    read_record,
    read_summary,
    run_folder_holding,
)
from ptflow.tasks import Task, task_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_comparison", "write_report"]

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fff; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; word-break: break-all; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #555; }
.warning { color: #a33; font-weight: bold; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: 0.5rem; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
table.importance td:last-child { width: 20rem; }
.bar { background: #4a7ab5; height: 0.9rem; min-width: 1px; }
@media print { section, figure { break-inside: avoid; } main { max-width: none; } }
"""


def write_report(run_dir: str | os.PathLike[str], summary: dict[str, Any] | None = None) -> Path:
    """Write `run_dir/report.html` from the run folder's files and return its path.

    `summary` is the run's summary when it is not yet on disk (the workflow writes the
    report just before the summary, which marks the run finished).
    """
    run_dir = Path(run_dir)
    hint = "report on a finished run folder (see `ptflow runs`)"
    record, summary, history = _read_run(run_dir, hint, summary)
    sections = [
        _header(run_dir, record, summary),
        _metrics(summary),
        _parameters(summary),
        _data(record, summary),
        _training(history, summary),
        _plots(run_dir),
        _settings("Configuration", relevant_settings(record["config"], task_of(summary).name)),
        _settings("Environment", record.get("versions", {})),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(_title(run_dir, record))}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n<main>\n" + "\n".join(s for s in sections if s) + "\n</main>\n"
        "</body>\n</html>\n"
    )
    path = run_dir / REPORT
    write_text(path, page)
    return path


def _read_run(
    run_dir: Path, hint: str, summary: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[float]]]:
    """A finished run folder's record, results (unless given) and history."""
    record = read_record(run_dir)
    summary = summary if summary is not None else read_summary(run_dir)
    if summary is None:
        raise WorkflowError(f"{quoted(run_dir)} lacks {SUMMARY}: {hint}.")
    return record, summary, read_history(run_dir)


def _header(run_dir: Path, record: dict[str, Any], summary: dict[str, Any]) -> str:
    versions = record.get("versions", {})
    facts = [
        f"created {record.get('created', '?')}",
        f"wall time {summary.get('wall_s', '?')} s",
        f"device {summary.get('device', record.get('device', '?'))}",
        f"ptflow {versions.get('ptflow', '?')}, torch {versions.get('torch', '?')}, "
        f"Python {versions.get('python', '?')}",
    ]
    command = " ".join(map(str, record.get("command") or ["ptflow.run_workflow(...)"]))
    return (
        f"<section>\n<h1>{_text(_title(run_dir, record))}</h1>\n"
        f'<p class="meta">{_text(" · ".join([f"run folder {run_dir.name}", *facts]))}</p>\n'
        f"<pre>{_text(command)}</pre>\n</section>"
    )


def _title(run_dir: Path, record: dict[str, Any]) -> str:
    """The command that made the run, as far as its command and data ("ptflow train
    houses.csv"), or the run folder's name when it came from Python."""
    command = record.get("command")
    if not command or len(command) < 2:
        return f"ptflow run {run_dir.name}"
    data = record.get("data", {}).get("file")
    return " ".join(map(str, command[:2])) + (f" {data}" if data else "")


def _metrics(summary: dict[str, Any]) -> str:
    task = task_of(summary)
    rows = []
    for source, label in (("metrics", ""), ("baseline_metrics", f", {task.baseline}")):
        for part, values in summary.get(source, {}).items():
            cells = "".join(
                f'<td class="number" data-metric="{source}.{part}.{m.name}" '
                f'data-value="{_text(repr(values.get(m.name)))}">{_number(values.get(m.name))}</td>'
                for m in task.metrics
            )
            rows.append(f"<tr><th>{_text(part + label)}</th>{cells}</tr>")
    head = "<tr><th></th>" + "".join(f"<th>{_text(m.label)}</th>" for m in task.metrics) + "</tr>"
    tests = [summary.get(key, {}).get("test") for key in ("metrics", "baseline_metrics")]
    ours, theirs = tests
    behind = None
    if isinstance(ours, dict) and isinstance(theirs, dict):
        early = summary.get("stopped_early") is True
        behind = task.behind_baseline(ours, theirs, task.judged_by(summary), early)
    baseline = f"{task.baseline} fit on the same training rows is the baseline to beat."
    intro = f"The {baseline}" if task.classes else f"In the data's own units; the {baseline}"
    return (
        "<section>\n<h2>Metrics</h2>\n"
        f"<p>{_text(intro)}</p>\n"
        + (f'<p class="warning">{_text(behind)}</p>\n' if behind else "")
        + f'<div class="scroll"><table>\n{head}\n'
        + "\n".join(rows)
        + "\n</table></div>\n</section>"
    )


def _parameters(summary: dict[str, Any]) -> str:
    learned, true = summary.get("learned_parameters"), summary.get("true_parameters")
    if not learned:
        return ""
    rows = "".join(
        f"<tr><th>{_text(name)}</th><td class='number'>{_number(value)}</td>"
        f"<td class='number'>{_number((true or {}).get(name))}</td></tr>"
        for name, value in learned.items()
    )
    return (
        "<section>\n<h2>Parameters</h2>\n<table>\n"
        "<tr><th></th><th>learned</th><th>true</th></tr>\n" + rows + "\n</table>\n</section>"
    )


# What a run without a file learned from, by `config.made_data`.
_MADE_DATA = {
    "line": "the tutorial's line y = weight · X + bias",
    "circles": "two noisy circles (ptflow run --task classification)",
}


def _data(record: dict[str, Any], summary: dict[str, Any]) -> str:
    data = record.get("data", {})
    split = summary.get("split_rows", {})
    facts = {
        "file": data.get("file") or _MADE_DATA[made_data(record.get("config", {})) or "line"],
        "rows": data.get("rows"),
        "features": ", ".join(summary.get("features", [])),
        "targets": ", ".join(summary.get("target", [])),
        "split (train / validation / test)": " / ".join(
            str(split.get(part, 0)) for part in ("train", "val", "test")
        ),
        "rows left out": "; ".join(data["left_out"])  # what, and why
        if data.get("left_out")
        else data.get("dropped_rows"),
        "SHA-256": data.get("sha256"),
    }
    return (
        _table_section("Data", facts)
        + _columns(summary.get("columns"))
        + _importance(summary.get("importance"), task_of(summary))
        + _coefficients(summary.get("coefficients"))
    )


def _coefficients(coefficients: Any) -> str:
    """A linear model's weights in the data's units: per input, per category, intercept."""
    if not isinstance(coefficients, dict):
        return ""
    rows = [("intercept", coefficients.get("intercept"))]
    rows += list((coefficients.get("inputs") or {}).items())
    for column, levels in (coefficients.get("categories") or {}).items():
        rows += [(f"{column} = {level}", value) for level, value in (levels or {}).items()]
    body = "".join(
        f"<tr><th>{_text(str(name))}</th><td class='number'>"
        f"{_text(', '.join(_number(v) for v in (value if isinstance(value, list) else [value])))}"
        "</td></tr>\n"
        for name, value in rows
    )
    return (
        "<section>\n<h2>Coefficients</h2>\n"
        "<p>The linear model in the data's units: the change in the target for one unit more "
        "of each input, and each category's shift against one unseen in training.</p>\n"
        f'<div class="scroll"><table>\n{body}</table></div>\n</section>'
    )


def _importance(importance: Any, task: Task) -> str:
    """Permutation importance as bars: how much the first metric worsens, per column."""
    if not isinstance(importance, dict) or not isinstance(importance.get("columns"), dict):
        return ""
    values = {
        str(name): float(value)
        for name, value in importance["columns"].items()
        if isinstance(value, int | float) and math.isfinite(value)
    }
    if not values:
        return ""
    metric = next((m for m in task.metrics if m.name == importance.get("metric")), task.metrics[0])
    largest = max(max(values.values()), 1e-300)
    change = "rise" if metric.lower_is_better else "fall"  # how much worse, either way
    rows = "".join(
        f"<tr><th>{_text(name)}</th><td class='number'>{_number(value)}</td>"
        f'<td><div class="bar" style="width: {max(0.0, value) / largest * 100:.1f}%"></div>'
        f"</td></tr>\n"
        for name, value in values.items()
    )
    return (
        "<section>\n<h2>Importance</h2>\n"
        f"<p>How much the test rows' {_text(metric.label)} worsens when one column's values are "
        "shuffled among the rows (the mean of 5 seeded shuffles): the model's use of each "
        "column, in the data's units.</p>\n"
        '<div class="scroll"><table class="importance">\n'
        f"<tr><th>column</th><th>{_text(metric.label)} {change}</th><th></th></tr>\n{rows}"
        "</table></div>\n</section>"
    )


def _columns(roles: Any) -> str:
    """What the run did with each column of its table: role, and what it holds or why not."""
    if not isinstance(roles, list) or not roles:
        return ""
    rows = "".join(
        f"<tr><th>{_text(str(role.get('name')))}</th><td>{_text(str(role.get('role')))}</td>"
        f"<td>{_text(str(role.get('detail')))}</td></tr>\n"
        for role in roles
        if isinstance(role, dict)
    )
    return (
        '<section>\n<h2>Columns</h2>\n<div class="scroll"><table>\n'
        f"<tr><th>column</th><th>role</th><th>detail</th></tr>\n{rows}</table></div>\n</section>"
    )


def _training(history: dict[str, list[float]], summary: dict[str, Any]) -> str:
    facts = {
        "epochs": summary.get("epochs"),
        "best epoch": summary.get("best_epoch"),
        "stopped early": summary.get("stopped_early"),
    }
    figure = _history_figure(history, summary.get("best_epoch"))
    return (
        _table_section("Training", facts).removesuffix("</section>")
        + _figure(figure, "Loss per epoch (best epoch dashed) and the learning rate")
        + "</section>"
    )


def _history_figure(history: dict[str, list[float]], best_epoch: int | None) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6.5))
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    epochs = history.get("epoch", [])
    for name in history:
        if name.endswith("_loss"):
            label = name.removesuffix("_loss").replace("val", "validation")
            loss_axes.plot(epochs, history[name], label=f"{label} loss")
    if best_epoch is not None:
        loss_axes.axvline(best_epoch, color="gray", linestyle="--", label="best epoch")
    loss_axes.set_ylabel("loss")
    loss_axes.legend()
    lr_axes.plot(epochs, history.get("lr", []), color="purple")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("epoch")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _plots(run_dir: Path) -> str:
    figures = [
        _figure((run_dir / name).read_bytes(), caption)
        for name, caption in PLOT_CAPTIONS.items()
        if (run_dir / name).is_file()
    ]
    return "<section>\n<h2>Plots</h2>\n" + "".join(figures) + "</section>" if figures else ""


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)}</figcaption></figure>\n"
    )


def _settings(title: str, values: dict[str, Any]) -> str:
    return _table_section(title, {key: values[key] for key in sorted(values)})


def _table_section(title: str, facts: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_text(name)}</th><td>{_text(_shown(value))}</td></tr>\n"
        for name, value in facts.items()
        if value is not None
    )
    return (
        f'<section>\n<h2>{_text(title)}</h2>\n<div class="scroll"><table>\n{rows}'
        "</table></div>\n</section>"
    )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def write_comparison(
    run_dirs: list[str | os.PathLike[str]], out: str | os.PathLike[str] = "compare.html"
) -> tuple[Path, Path]:
    """Write one page comparing runs, and its loss-curve plot as a PNG beside it.

    The page overlays the runs' loss curves, tabulates their metrics, and sets their
    settings side by side with the ones that differ highlighted. An `out` whose name does
    not end in .html (or .htm) gets .html added. Returns both paths.
    """
    if len(run_dirs) < 2:
        raise WorkflowError("compare needs at least two run folders.")
    runs = [Path(run) for run in run_dirs]
    names = _unique_names(runs)
    records, summaries, histories = [], [], []
    for run in runs:
        record, summary, history = _read_run(run, "compare finished run folders")
        records.append(record)
        summaries.append(summary)
        histories.append(history)
    out = check_output_path(out, "--out")  # a folder is refused before a name is made of it
    if out.suffix.lower() not in (".html", ".htm"):  # else a browser would not open it
        out = out.with_name(f"{out.name}.html")
    png_path = out.with_suffix(".png")
    for path in (out, png_path):  # never over a run's own files
        check_output_path(path, "--out")
        if (inside := run_folder_holding(path)) is not None:
            raise WorkflowError(
                f"--out {quoted(path)} is inside the run folder {quoted(inside)}, which holds "
                f"only what its run wrote; write the comparison elsewhere."
            )
    _check_replaceable(out, png_path)
    png = _comparison_figure(names, histories)
    from ptflow.files import atomic_path

    with atomic_path(png_path) as tmp:
        tmp.write_bytes(png)
    sections = [
        f"<section>\n<h1>ptflow: {len(runs)} runs compared</h1>\n</section>",
        "<section>\n<h2>Loss curves</h2>\n"
        + _figure(png, "Evaluation loss per epoch (solid), training loss (dotted)")
        + "</section>",
        _comparison_metrics(names, summaries),
        _comparison_settings(names, [record["config"] for record in records]),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{_COMPARISON_MARK}\n"
        f"<title>ptflow: {len(runs)} runs compared</title>\n<style>{_STYLE}"
        "tr.differs td, tr.differs th { background: #fff3c4; }</style>\n"
        "</head>\n<body>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )
    write_text(out, page)
    return out, png_path


def _unique_names(runs: list[Path]) -> list[str]:
    names = [run.name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [str(run) for run in runs]  # the same folder name in two places: the full path


# In every comparison page ptflow writes: the mark that it may replace the page (and its PNG).
_COMPARISON_MARK = '<meta name="generator" content="ptflow compare">'


def _check_replaceable(page: Path, png: Path) -> None:
    """Refuse to write over files ptflow did not write: only an earlier comparison goes."""
    earlier = False
    if page.exists():
        with contextlib.suppress(OSError), open(page, "rb") as file:
            earlier = _COMPARISON_MARK.encode() in file.read(4096)
        if not earlier:
            raise WorkflowError(
                f"--out {quoted(page)} already exists and is not a comparison ptflow wrote; "
                f"choose another --out."
            )
    if png.exists() and not earlier:
        raise WorkflowError(
            f"{quoted(png)} (the plot written beside --out) already exists and ptflow did "
            f"not write it; choose another --out."
        )


def _comparison_figure(names: list[str], histories: list[dict[str, list[float]]]) -> bytes:
    figure = _comparison_plot(names, histories)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _comparison_plot(names: list[str], histories: list[dict[str, list[float]]]) -> Figure:
    """Each run's loss curves in its own colour: evaluation solid, training dotted."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5.5))
    axes = figure.subplots()
    for index, (name, history) in enumerate(zip(names, histories, strict=True)):
        colour = f"C{index % 10}"
        epochs = history.get("epoch", [])
        for column, values in history.items():
            if column.endswith("_loss"):  # each labelled: the legend shows what dots mean
                dotted = column == "train_loss"  # None: matplotlib's solid default
                axes.plot(
                    epochs, values, color=colour, label=f"{name} ({column})",
                    linestyle=":" if dotted else None, linewidth=1 if dotted else None,
                )  # fmt: skip
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend(fontsize=8)
    return figure


def _comparison_metrics(names: list[str], summaries: list[dict[str, Any]]) -> str:
    metrics = list(dict.fromkeys(m for summary in summaries for m in task_of(summary).metrics))
    head = "<tr><th>run</th><th>epochs</th>"
    head += "".join(f"<th>test {_text(m.label)}</th>" for m in metrics) + "<th>wall s</th></tr>"
    rows = []
    for name, summary in zip(names, summaries, strict=True):
        test = summary.get("metrics", {}).get("test", {})
        cells = [summary.get("epochs"), *(test.get(m.name) for m in metrics)]
        cells.append(summary.get("wall_s"))
        rows.append(
            f"<tr><th>{_text(name)}</th>"
            + "".join(f'<td class="number">{_number(value)}</td>' for value in cells)
            + "</tr>"
        )
    return (
        '<section>\n<h2>Metrics</h2>\n<div class="scroll"><table>\n'
        + head
        + "\n"
        + "\n".join(rows)
        + "\n</table></div>\n</section>"
    )


def _comparison_settings(names: list[str], configs: list[dict[str, Any]]) -> str:
    keys = sorted({key for config in configs for key in config})
    head = "<tr><th>setting</th>" + "".join(f"<th>{_text(name)}</th>" for name in names) + "</tr>"
    rows = []
    for key in keys:
        values = [_shown(config.get(key)) for config in configs]
        marked = ' class="differs"' if len(set(values)) > 1 else ""
        rows.append(
            f'<tr{marked} data-setting="{_text(key)}">'
            f"<th>{_text(key)}</th>"
            + "".join(f"<td>{_text(value)}</td>" for value in values)
            + "</tr>"
        )
    return (
        "<section>\n<h2>Settings</h2>\n<p>Highlighted: the settings that differ.</p>\n"
        '<div class="scroll"><table>\n' + head + "\n" + "\n".join(rows) + "\n</table></div>\n"
        "</section>"
    )
