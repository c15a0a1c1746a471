"""No file a user wrote is lost: the run folder's lock, the --overwrite rule, outputs that are
inputs, temporary files, and errors of the operating system as one line."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

import ptflow
from ptflow.cli import main
from ptflow.config import Config
from ptflow.errors import WorkflowError
from ptflow.files import atomic_path, host_tag
from ptflow.run_folder import LOCK_FILE, is_run_folder, writing


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _ptflow(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


def _one_error_line(result: Result, *fragments: str) -> None:
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by relative path, with its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project folder, the current folder and $HOME, holding files to keep."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "src" / "model.py").write_text("print('mine')\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("# mine\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("", "empty path"),
        ("  ", "empty path"),
        (".", "the current folder"),
        ("~", "your home folder"),
        ("src/..", "the current folder"),
        ("src", "not a ptflow run folder"),
    ],
)
def test_overwrite_never_replaces_a_folder_ptflow_did_not_make(
    project: Path, out: str, says: str
) -> None:
    before = _snapshot(project)
    target = str(Path(out).expanduser()) if out.startswith("~") else out
    result = _ptflow("run", "--epochs", "2", "--out", target, "--overwrite")
    _one_error_line(result, says)
    assert _snapshot(project) == before
    assert [p.name for p in Path.home().iterdir() if p.name not in (".cache", ".config")] == [
        ".bashrc"
    ]
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "src"]


def test_overwrite_refuses_the_root_a_link_and_a_folder_holding_the_data(
    project: Path, sine_table: Path
) -> None:
    _one_error_line(_ptflow("run", "--out", "/", "--overwrite"), "the root folder")
    (project / "runs").mkdir()
    assert _ptflow("run", "--quiet", "--epochs", "2", "--out", "runs/a").code == 0
    (project / "link").symlink_to(project / "runs" / "a")
    _one_error_line(_ptflow("run", "--out", "link", "--overwrite"), "symbolic link")
    data = project / "runs" / "a" / "sine.csv"  # the training data inside the run folder
    data.write_bytes(sine_table.read_bytes())
    before = _snapshot(project)
    result = _ptflow(
        "train", "--data", str(data), "--target", "y", "--out", "runs/a", "--overwrite"
    )
    _one_error_line(result, "not a ptflow run folder", "'sine.csv'")
    assert _snapshot(project) == before


def test_a_run_that_fails_before_its_first_checkpoint_puts_the_old_run_back(
    project: Path,
) -> None:
    assert _ptflow("run", "--quiet", "--epochs", "3", "--out", "run").code == 0
    before = _snapshot(project / "run")
    result = _ptflow(
        "run", "--epochs", "3", "--loss", "mse", "--lr", "1e20", "--out", "run", "--overwrite"
    )
    assert result.code == 3, result  # diverged in its first epoch: no checkpoint
    assert _snapshot(project / "run") == before
    assert not (project / "run" / ".replaced").exists()
    assert ptflow.load_run(project / "run").config == Config(epochs=3)


def test_the_replaced_run_stays_aside_until_the_new_one_has_a_checkpoint(project: Path) -> None:
    assert _ptflow("run", "--quiet", "--epochs", "2", "--out", "run").code == 0
    seen: list[list[str]] = []
    with writing(project / "run", overwrite=True) as folder:
        seen.append(sorted(p.name for p in (project / "run" / ".replaced").iterdir()))
        assert sorted(p.name for p in (project / "run").iterdir()) == [".ptflow.lock", ".replaced"]
        folder.keep()  # what the first checkpoint does
        assert not (project / "run" / ".replaced").exists()
    assert "summary.json" in seen[0] and "model.pt" in seen[0]


def test_an_empty_folder_and_a_new_one_are_left_as_found_when_the_run_fails(
    project: Path,
) -> None:
    (project / "empty").mkdir()
    for out in ("empty", "new"):
        result = _ptflow("run", "--epochs", "3", "--loss", "mse", "--lr", "1e20", "--out", out)
        assert result.code == 3, result
    assert list((project / "empty").iterdir()) == []
    assert not (project / "new").exists()


def test_a_folder_in_use_is_refused_naming_the_process(project: Path, sine_table: Path) -> None:
    (project / "run").mkdir()
    with writing(project / "run", overwrite=False):
        for args in (
            ["run", "--out", "run"],
            ["run", "--out", "run", "--overwrite"],
            ["train", "--data", str(sine_table), "--target", "y", "--out", "run"],
        ):
            _one_error_line(_ptflow(*args), "is in use by process", str(os.getpid()))
        with pytest.raises(WorkflowError, match="in use"):
            ptflow.resume_workflow(project / "run")
    assert json.loads((project / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.slow  # 10 s: a whole training in another process
def test_two_processes_into_one_folder_one_wins_and_the_files_are_its_own(
    project: Path,
) -> None:
    """A live run in another process; every second writer, in every form, is refused."""
    winner = subprocess.Popen(
        [sys.executable, "-m", "ptflow", "run", "--quiet", "--epochs", "4000", "--out", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = project / "run" / LOCK_FILE
    deadline = time.monotonic() + 60
    while not (lock.is_file() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        for args in (
            ["run", "--epochs", "2", "--out", "run"],
            ["run", "--epochs", "2", "--out", "run", "--overwrite"],
            ["run", "--resume", "run"],
        ):
            result = _ptflow(*args)
            if "is in use by process" not in result.err:
                assert winner.poll() is None, "the first run ended before the test could race it"
            _one_error_line(result, f"is in use by process {winner.pid}")
    finally:
        _, err = winner.communicate(timeout=120)
    assert winner.returncode == 0, err
    record = json.loads((project / "run" / "config.json").read_text())
    assert record["config"]["epochs"] == 4000
    summary = json.loads((project / "run" / "summary.json").read_text())
    assert summary["epochs"] == 4000
    history = (project / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 4001  # header + every epoch of the winner


def test_an_output_that_is_an_input_is_refused(project: Path, sine_table: Path) -> None:
    assert _ptflow("train", "--data", str(sine_table), "--target", "y", "--epochs", "2", "--quiet",
                   "--features", "a", "b", "--out", "run").code == 0  # fmt: skip
    (project / "link.csv").symlink_to(sine_table)
    (project / "data.parquet").symlink_to(sine_table)
    before = _snapshot(project)
    predict = ["predict", "run", "--data", str(sine_table), "--output"]
    _one_error_line(_ptflow(*predict, str(sine_table)), "is also an input")
    _one_error_line(_ptflow(*predict, "link.csv"), "is also an input")
    _one_error_line(_ptflow(*predict, "run/model.pt"), "inside the run folder")
    _one_error_line(_ptflow(*predict, "run/checkpoints/p.csv"), "inside the run folder")
    _one_error_line(_ptflow(*predict, "src"), "is a folder")
    _one_error_line(_ptflow(*predict, "nowhere/p.csv"), "does not exist")
    _one_error_line(_ptflow("compare", "run", "run", "--out", "run/summary.json"), "inside the run")
    _one_error_line(_ptflow("convert", str(sine_table), "data.parquet", "--overwrite"), "input")
    assert _snapshot(project) == before


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".pred.csv.{host_tag()}-{int(dead.stdout)}-abc123.tmp"
    live = tmp_path / f".other.csv.{host_tag()}-{os.getpid()}-def456.tmp"
    mine = tmp_path / ".notes.tmp"  # not named as ptflow names its files: never touched
    for path in (stale, live, mine):
        path.write_text("x")
    with atomic_path(tmp_path / "pred.csv") as tmp:
        tmp.write_text("y\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pred.csv", live.name, mine.name])


def test_sigterm_while_writing_predictions_leaves_no_temporary_file(
    project: Path, sine_table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _ptflow("train", "--data", str(sine_table), "--target", "y", "--epochs", "2",
                   "--quiet", "--features", "a", "b", "--out", "run").code == 0  # fmt: skip

    def terminated_midway(file: io.TextIOBase, *args: object) -> None:
        file.write("y_pred\n1.0\n")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives before this ends

    monkeypatch.setattr("ptflow.predictions.write_predictions", terminated_midway)
    result = _ptflow("predict", "run", "--data", str(sine_table), "--output", "pred.csv")
    assert result.code == 143 and "terminated" in result.err, result
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "run", "src"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_resuming_with_fewer_epochs_than_trained_is_refused(project: Path) -> None:
    assert _ptflow("run", "--quiet", "--epochs", "4", "--checkpoint-every", "1",
                   "--out", "run").code == 0  # fmt: skip
    (project / "run" / "summary.json").unlink()  # as if it had stopped after epoch 4
    before = _snapshot(project / "run")
    _one_error_line(_ptflow("run", "--resume", "run", "--epochs", "3"), "--epochs 4 or more")
    assert _snapshot(project / "run") == before


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("when", ["first write", "after training"])
def test_a_full_disk_during_train_is_one_line_and_no_half_written_file(
    project: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    if when == "first write":
        monkeypatch.setattr("ptflow.files.os.fsync", _enospc)
    else:
        monkeypatch.setattr("ptflow.workflow.plot_loss_curves", _enospc)
    _one_error_line(_ptflow("run", "--epochs", "3", "--out", "run"), "(ENOSPC)", "free some")
    if when == "first write":
        assert not (project / "run").exists()  # nothing to resume: the folder is not kept
    else:
        assert not (project / "run" / "summary.json").exists()  # unfinished: it can resume
        assert not list((project / "run").rglob("*.tmp"))


def test_a_full_disk_for_predict_and_convert_is_one_line(
    project: Path, sine_table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _ptflow("train", "--data", str(sine_table), "--target", "y", "--epochs", "2",
                   "--quiet", "--features", "a", "b", "--out", "run").code == 0  # fmt: skip
    before = _snapshot(project)
    monkeypatch.setattr("ptflow.files.os.fsync", _enospc)
    predict = ("predict", "run", "--data", str(sine_table), "--output", "pred.csv")
    _one_error_line(_ptflow(*predict), "(ENOSPC)")
    _one_error_line(_ptflow("convert", str(sine_table), "sine2.parquet"), "(ENOSPC)")
    _one_error_line(_ptflow("compare", "run", "run", "--out", "c.html"), "(ENOSPC)")
    assert _snapshot(project) == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs, where mounting is allowed (root on Linux); skipped elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_leaves_an_unfinished_run_or_nothing(
    small_disk: Path, sine_table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(small_disk)
    _one_error_line(_ptflow("run", "--epochs", "3", "--out", "run"), "(ENOSPC)")
    run = small_disk / "run"
    assert not run.exists() or (is_run_folder(run) and not (run / "summary.json").exists())
    assert not list(small_disk.rglob("*.tmp"))
    big = small_disk / "big.parquet"
    _one_error_line(_ptflow("convert", str(sine_table), str(big)), "(ENOSPC)")
    assert not big.exists() and not list(small_disk.rglob("*.tmp"))


def test_a_really_full_disk_for_predict_and_compare_is_one_line(
    small_disk: Path, sine_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"  # on a disk with room; only the outputs go to the full one
    assert main(["train", "--data", str(sine_table), "--target", "y", "--epochs",
                 "2", "--quiet", "--out", str(run)]) == 0  # fmt: skip
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:  # every page of the disk, taken
            os.write(filler, b"\0" * 4096)
    os.close(filler)
    monkeypatch.chdir(small_disk)
    predict = ("predict", str(run), "--data", str(sine_table), "--output", "pred.csv")
    _one_error_line(_ptflow(*predict), "(ENOSPC)")
    _one_error_line(_ptflow("compare", str(run), str(run), "--out", "c.html"), "(ENOSPC)")
    assert sorted(path.name for path in small_disk.iterdir()) == ["filler"]


@pytest.fixture(scope="module")
def finished_run(tutorial_run: ptflow.RunResult) -> Path:
    """A finished run folder (the session's tutorial run): copy it before changing it."""
    return tutorial_run.run_dir


@pytest.mark.parametrize(
    ("file", "text", "says"),
    [
        ("summary.json", "[]", "holds a list"),
        ("summary.json", '{"metrics": "good"}', "metrics is a str"),
        ("summary.json", '{"metrics": {"test": {"mae": "low"}}}', "not a table of numbers"),
        ("summary.json", '{"target": [0]}', "not a list of column names"),  # found by hypothesis
        ("config.json", "[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ("config.json", '{"config": 3}', "config is a int"),
    ],
)
def test_a_damaged_run_folder_is_one_line_and_runs_lists_it_and_goes_on(
    project: Path, finished_run: Path, file: str, text: str, says: str
) -> None:
    for name in ("good", "bad"):
        shutil.copytree(finished_run, project / "runs" / name)
    (project / "runs" / "bad" / file).write_text(text)
    _one_error_line(_ptflow("report", "runs/bad"), says, "damaged")
    _one_error_line(_ptflow("compare", "runs/good", "runs/bad"), says)
    _one_error_line(_ptflow("predict", "runs/bad", "--x", "1"), "damaged")
    for args in (["runs", "runs", "--sort", "test_mae"], ["runs", "runs", "--json"]):
        listed = _ptflow(*args)
        assert listed.code == 0 and "damaged" in listed.out and "good" in listed.out, listed
    rows = json.loads(_ptflow("runs", "runs", "--json").out)
    assert [row["status"] for row in rows if row["name"] == "bad"] == ["damaged"]


@pytest.mark.slow  # whole processes
def test_the_other_order_a_process_is_refused_a_folder_this_one_writes(project: Path) -> None:
    """The lock holds across processes both ways: here this process writes, another asks."""
    assert _ptflow("run", "--quiet", "--epochs", "2", "--out", "run").code == 0
    before = _snapshot(project / "run")
    with writing(project / "run", overwrite=True):  # as a live --overwrite holds it
        for args in (["--out", "run"], ["--out", "run", "--overwrite"], ["--resume", "run"]):
            done = subprocess.run(
                [sys.executable, "-m", "ptflow", "run", "--epochs", "2", *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
            assert f"in use by process {os.getpid()}" in done.stderr
        aside = _snapshot(project / "run" / ".replaced")  # the old run, untouched by them
        assert aside == {name: h for name, h in before.items() if name != ".ptflow.lock"}


def test_undoing_a_failed_run_deletes_only_what_ptflow_writes(project: Path) -> None:
    """A file someone drops into the folder while the run fails is not the run's to delete."""
    with pytest.raises(RuntimeError), writing(project / "new", overwrite=False):
        (project / "new" / "config.json").write_text("{}")
        (project / "new" / "mine.txt").write_text("dropped in meanwhile")
        raise RuntimeError("the run failed before its first checkpoint")
    assert sorted(p.name for p in (project / "new").iterdir()) == ["mine.txt"]


def test_the_audits_lost_files_are_kept(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a second audit of issue 14 found ptflow overwrote or deleted, or left behind."""
    monkeypatch.chdir(tmp_path)
    # compare --out over a user's file, or beside a user's PNG
    Path("keep.csv").write_text("a,b\n1,2\n")
    Path("keep.html").write_text("<p>my page</p>")
    Path("photo.png").write_bytes(b"mine")
    _one_error_line(_ptflow("compare", str(finished_run), str(finished_run), "--out",
                            "keep.html"), "not a comparison ptflow wrote")  # fmt: skip
    _one_error_line(_ptflow("compare", str(finished_run), str(finished_run), "--out",
                            "photo.html"), "ptflow did not write it")  # fmt: skip
    # a name without .html gets it: the comparison goes beside keep.csv, not over it
    assert _ptflow("compare", str(finished_run), str(finished_run), "--out", "keep.csv").code == 0
    assert Path("keep.csv.html").is_file()
    assert Path("keep.csv").read_text() == "a,b\n1,2\n"
    assert Path("keep.html").read_text() == "<p>my page</p>"
    assert Path("photo.png").read_bytes() == b"mine"
    for _ in range(2):  # its own earlier comparison it replaces
        assert _ptflow("compare", str(finished_run), str(finished_run), "--out", "c.html").code == 0
    # a user's .notes.tmp in a run folder is not ptflow's temporary file
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / ".notes.tmp").write_text("keep")
    _one_error_line(_ptflow("run", "--epochs", "1", "--out", str(run), "--overwrite"),
                    "ptflow did not write '.notes.tmp'")  # fmt: skip
    assert (run / ".notes.tmp").read_text() == "keep"
    # --resume of a user's folder leaves no lock file in it
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("hi")
    _one_error_line(_ptflow("run", "--resume", str(user)), "has no config.json")
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    # runs --json on a summary.json edited to hold NaN
    listed = tmp_path / "listed"
    shutil.copytree(finished_run, listed / "n")
    summary = (listed / "n" / "summary.json").read_text()
    (listed / "n" / "summary.json").write_text(summary.replace('"mae": ', '"mae": NaN, "x": ', 1))
    result = _ptflow("runs", str(listed), "--json")
    assert result.code == 0 and json.loads(result.out)[0]["name"] == "n", result.err
    # convert into a run folder
    _one_error_line(_ptflow("convert", str(sine_csv(tmp_path)), str(run / "d.parquet")),
                    "inside the run folder")  # fmt: skip
    assert not (run / "d.parquet").exists()
    # predict --input from a device
    _one_error_line(_ptflow("predict", str(finished_run), "--input", "/dev/zero"), "is a device")


def sine_csv(folder: Path) -> Path:
    """A small CSV to convert."""
    path = folder / "small.csv"
    path.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(20)))
    return path
