from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import ptflow
from ptflow import WorkflowError


def test_save_load_gives_identical_predictions(tmp_path: Path) -> None:
    model = ptflow.build_model("linear", 3, 2, seed=1)
    ptflow.save_weights(model, tmp_path / "model.pt")
    loaded = ptflow.load_weights(ptflow.build_model("linear", 3, 2, seed=99), tmp_path / "model.pt")
    X = torch.randn(50, 3)
    assert torch.equal(ptflow.predict(loaded, X), ptflow.predict(model, X))


def test_the_file_is_a_plain_state_dict(tmp_path: Path) -> None:
    model = ptflow.build_model("tutorial", seed=42)
    ptflow.save_weights(model, tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert list(state) == ["weights", "bias"]
    assert torch.equal(state["weights"], model.weights.detach())


def test_a_different_architecture_is_explained(tmp_path: Path) -> None:
    ptflow.save_weights(ptflow.build_model("linear", 3, 1), tmp_path / "model.pt")
    with pytest.raises(WorkflowError) as caught:
        ptflow.load_weights(ptflow.build_model("tutorial"), tmp_path / "model.pt")
    message = str(caught.value)
    assert "missing keys bias, weights" in message
    assert "unexpected keys linear.bias, linear.weight" in message
    with pytest.raises(WorkflowError, match=r"linear.weight \(1, 3\) vs \(1, 2\)"):
        ptflow.load_weights(ptflow.build_model("linear", 2, 1), tmp_path / "model.pt")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04broken zip"])
def test_corrupt_files_are_errors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(WorkflowError, match="corrupt"):
        ptflow.load_weights(ptflow.build_model(), tmp_path / "model.pt")


def test_missing_file_and_non_state_dict(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="does not exist"):
        ptflow.load_weights(ptflow.build_model(), tmp_path / "nope.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WorkflowError, match="not a state_dict"):
        ptflow.load_weights(ptflow.build_model(), tmp_path / "list.pt")


class _Exploit:
    """Unpickling this object would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


@pytest.mark.parametrize("protocol", ["torch", "pickle"])
def test_a_malicious_pickle_never_runs(tmp_path: Path, protocol: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"weights": _Exploit(marker), "bias": torch.zeros(1)}
    if protocol == "torch":
        torch.save(payload, tmp_path / "evil.pt")
    else:
        (tmp_path / "evil.pt").write_bytes(pickle.dumps(payload))
    with pytest.raises(WorkflowError, match="corrupt"):
        ptflow.load_weights(ptflow.build_model(), tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_failed_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pt"
    ptflow.save_weights(ptflow.build_model(seed=1), path)
    before = path.read_bytes()

    def crash_midway(fd: int) -> None:
        raise OSError("disk full")  # the new bytes are written but never reach the disk

    monkeypatch.setattr("ptflow.files.os.fsync", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        ptflow.save_weights(ptflow.build_model(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left
