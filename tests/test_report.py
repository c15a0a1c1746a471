"""report.html: one self-contained page per run, re-rendered by `ptflow report`, checked as
text here and in a real headless browser where Debian's chromium is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import ptflow
from ptflow import Config, TrainingInterrupted
from tests.conftest import Cli, RunCli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return width, height


def _check_metrics(page: str, summary: dict[str, object]) -> None:
    cells = re.findall(r'data-metric="([^"]+)" data-value="([^"]+)"', page)
    assert len(cells) == 4 * (len(summary["metrics"]) + len(summary["baseline_metrics"]))  # type: ignore[arg-type]
    for key, value in cells:
        source, part, name = key.split(".")
        assert float(value) == summary[source][part][name]  # type: ignore[index]


def test_every_run_writes_one_self_contained_page(tutorial_run: ptflow.RunResult) -> None:
    page = (tutorial_run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing outside the file
    images = _images(page)
    assert len(images) == 4  # loss and learning rate, data, before, after
    assert all(min(_png_size(png)) > 100 for png in images)
    summary = json.loads((tutorial_run.run_dir / "summary.json").read_text())
    _check_metrics(page, summary)
    assert "0.7" in page and "learned" in page  # the true weight beside the learned one
    assert tutorial_run.run_dir.name in page and "torch" in page


def test_ptflow_report_renders_it_again(tmp_path: Path, run_cli: RunCli, sine_table: Path) -> None:
    ptflow.run_workflow(Config.for_table(str(sine_table), "y", epochs=5), tmp_path / "run")
    first = (tmp_path / "run" / "report.html").read_bytes()
    (tmp_path / "run" / "report.html").unlink()
    done = run_cli("report", "run")
    assert done.returncode == 0 and done.stdout.strip() == str(Path("run") / "report.html")
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert page.encode() == first  # the same page, from the files alone
    assert "sine.csv" in page and "predicted against actual" in page
    assert "residuals" in page and len(_images(page)) == 5  # curves, data, before, after, residuals
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    _check_metrics(page, summary)
    assert summary["data"]["sha256"] in page


def test_report_refuses_what_is_not_a_finished_run(tmp_path: Path, run_cli: RunCli) -> None:
    with pytest.raises(TrainingInterrupted):
        ptflow.run_workflow(Config(epochs=50), tmp_path / "cut", should_stop=lambda: True)
    done = run_cli("report", "cut")
    assert done.returncode == 2 and "lacks summary.json" in done.stderr
    assert run_cli("report", "nowhere").returncode == 2


_PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(image => image.naturalWidth);
  const cells = [...document.querySelectorAll("[data-metric]")].map(
    cell => [cell.dataset.metric, cell.dataset.value]);
  document.body.setAttribute("data-probe", JSON.stringify({images, cells}));
});
</script>
"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium: the browser test needs Debian's chromium (apt-get install chromium), "
    "which .ci/run installs",
)
def test_the_page_renders_in_a_real_browser(tutorial_run: ptflow.RunResult, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = (tutorial_run.run_dir / "report.html").read_text(encoding="utf-8")
    # A copy with a probe that records what the browser loaded; the report has no script.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the page did not finish loading"
    probed = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(probed["images"]) == 4 and all(width > 0 for width in probed["images"])
    summary = json.loads((tutorial_run.run_dir / "summary.json").read_text())
    for key, value in probed["cells"]:
        source, part, name = key.split(".")
        assert float(value) == summary[source][part][name]
    # A screenshot on a phone-sized screen: not blank.
    shot = tmp_path / "phone.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=390,844", f"--screenshot={shot}",
         (tutorial_run.run_dir / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    import numpy as np
    from PIL import Image

    with Image.open(shot) as image:
        grey = np.asarray(image.convert("L"))
    assert grey.min() < 100 < grey.max()  # dark text and images on a light page
    assert (grey < 200).mean() > 0.02  # and not a nearly empty one


def test_compare_overlays_runs_and_marks_differing_settings(
    tmp_path: Path, run_cli: RunCli
) -> None:
    ptflow.run_workflow(Config(epochs=20), tmp_path / "slow")
    ptflow.run_workflow(Config(epochs=20, lr=0.05), tmp_path / "fast")
    ptflow.run_workflow(Config(epochs=30, lr=0.05), tmp_path / "long")
    done = run_cli("compare", "slow", "fast", "long", "--out", "cmp.html")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cmp.html", "cmp.png"]
    page = (tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert "<script" not in page and not re.search(r"(src|href)=\"(?!data:)", page)
    differing = set(re.findall(r'<tr class="differs" data-setting="([^"]+)"', page))
    assert differing == {"lr", "epochs"}
    assert (tmp_path / "cmp.png").read_bytes() in _images(page)  # the same plot, embedded
    assert min(_png_size((tmp_path / "cmp.png").read_bytes())) > 100
    for name in ("slow", "fast", "long"):
        r2 = json.loads((tmp_path / name / "summary.json").read_text())["metrics"]["test"]["r2"]
        assert f"{r2:.4g}" in page
    one = run_cli("compare", "slow")
    assert one.returncode == 2 and "at least two" in one.stderr
    missing = run_cli("compare", "slow", "nowhere")
    assert missing.returncode == 2 and "nowhere" in missing.stderr


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short finished runs of the line, `a` and `b`, in one folder."""
    folder = tmp_path_factory.mktemp("two_runs")
    for name, lr in (("a", 0.01), ("b", 0.05)):
        ptflow.run_workflow(Config(epochs=5, lr=lr), folder / name)
    return folder


def test_compare_adds_html_to_an_out_without_it(two_runs: Path, cli: Cli) -> None:
    done = cli("compare", "a", "b", "--out", "cmp", cwd=two_runs)
    assert done.code == 0, done.err
    assert done.out.split() == ["cmp.html", "cmp.png"]
    assert (two_runs / "cmp.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (two_runs / "cmp").exists()
    kept = cli("compare", "a", "b", "--out", "other.htm", cwd=two_runs)  # an HTML name stays
    assert kept.code == 0 and kept.out.split() == ["other.htm", "other.png"], kept.err


def test_the_comparison_legend_names_the_dotted_training_curves(two_runs: Path) -> None:
    from ptflow.report import _comparison_plot
    from ptflow.run_folder import read_history

    histories = [read_history(two_runs / name) for name in ("a", "b")]
    (axes,) = _comparison_plot(["a", "b"], histories).axes
    legend = axes.get_legend()
    assert legend is not None
    shown = {
        text.get_text(): line.get_linestyle()
        for text, line in zip(legend.get_texts(), legend.get_lines(), strict=True)
    }
    assert shown == {
        "a (test_loss)": "-",
        "a (train_loss)": ":",
        "b (test_loss)": "-",
        "b (train_loss)": ":",
    }
