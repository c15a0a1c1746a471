"""The example notebooks run from top to bottom in a Jupyter kernel (nbclient + ipykernel),
with no error, no warning, and a real image from every plotting cell."""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).parent.parent / "examples"


def _executed(name: str, folder: Path) -> object:
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "stored without outputs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jupyter_client's own deprecations, not the notebook's
        client = nbclient.NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        client.execute()
    return notebook


def _check_outputs(notebook: object) -> list[str]:
    """Every cell's printed text; fails on an error, a warning, or a plot without an image."""
    printed = []
    for number, cell in enumerate(notebook.cells):  # type: ignore[attr-defined]
        if cell.cell_type != "code":
            continue
        images = []
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {number}: {output.ename}: {output.evalue}"
            if output.output_type == "stream":
                assert "Warning" not in output.text, f"cell {number}: {output.text}"
                printed.append(output.text)
            if "image/png" in output.get("data", {}):
                images.append(base64.b64decode(output.data["image/png"]))
        if "plot" in cell.metadata.get("tags", []):
            assert images and images[0].startswith(b"\x89PNG"), f"cell {number} shows no image"
            assert len(images[0]) > 10_000, f"cell {number}: the image is nearly empty"
    return printed


@pytest.mark.slow  # a Jupyter kernel, torch imported in it, 1,000 epochs: about 10 s
def test_the_tutorial_notebook_runs(tmp_path: Path) -> None:
    printed = "".join(_check_outputs(_executed("01_pytorch_workflow.ipynb", tmp_path)))
    assert "epoch 200/200" in printed  # ptflow.train(progress=True) shows its epoch lines
    assert (tmp_path / "models" / "01_pytorch_workflow_model_0.pth").is_file()


@pytest.mark.slow  # fits, the report, cross-validation: about 15 s
def test_the_tables_notebook_runs(tmp_path: Path) -> None:
    printed = "".join(_check_outputs(_executed("02_tables.ipynb", tmp_path)))
    assert "looks like an identifier" in printed and "imputed missing values" in printed
    assert (tmp_path / "runs" / "listings" / "model.pt").is_file()
