"""labeller.jobs without Streamlit: run rows, detached processes, dead-process detection,
promotion, comparing metrics, suggestion-refresh progress."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Run
from labeller import jobs
from training.jobs import create_run


def _wait_dead(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while jobs.pid_alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still alive after {timeout} s")
        time.sleep(0.05)


def _queued_run(cat: Catalogue) -> int:
    return create_run(cat, {"backbone": "tiny"})


def _finished_run(cat: Catalogue, bundle: bool = True, **kw: object) -> int:
    with cat.write() as s:
        run = Run(params={"backbone": "tiny"}, status="succeeded", progress=1.0)
        s.add(run)
        for key, value in kw.items():
            setattr(run, key, value)
        s.flush()
        run_id = run.id
        if bundle:
            folder = jobs.run_dir(cat, run_id) / "bundle"
            folder.mkdir(parents=True)
            (folder / "bundle.json").write_text("{}")
            run.bundle_path = f"runs/{run_id}/bundle"
    return run_id


def test_spawn_runs_detached_with_data_folder_and_log(catalogue: Catalogue) -> None:
    log = catalogue.data_dir / "jobs" / "env.log"
    pid = jobs.spawn(catalogue, ["json.tool", "--help"], log)
    assert pid > 0 and pid != os.getpid()
    _wait_dead(pid)
    assert "usage" in log.read_text().lower()
    assert os.getsid(os.getpid()) != pid  # its own session: not stopped with ours


def test_pid_alive_reaps_own_children(catalogue: Catalogue) -> None:
    pid = jobs.spawn(catalogue, ["this"], catalogue.data_dir / "this.log")
    _wait_dead(pid)
    assert pid not in jobs._CHILDREN
    assert not jobs.pid_alive(pid)
    assert jobs.pid_alive(os.getpid())
    assert not jobs.pid_alive(None)


def test_check_run_marks_dead_process_failed_with_its_log(catalogue: Catalogue) -> None:
    run_id = _queued_run(catalogue)
    pid = jobs.spawn(catalogue, ["this"], jobs.run_log(catalogue, run_id))
    _wait_dead(pid)
    with catalogue.write() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status, run.pid = "running", pid
    checked = jobs.check_run(catalogue, run_id)
    assert checked is not None
    assert checked.status == "failed"
    assert checked.error is not None
    assert f"pid {pid}" in checked.error
    assert "Namespaces are one honking great idea" in checked.error


def test_check_run_leaves_live_and_finished_runs_alone(catalogue: Catalogue) -> None:
    done = _finished_run(catalogue, pid=999_999_999)
    live_id = _queued_run(catalogue)
    with catalogue.write() as s:
        live = s.get(Run, live_id)
        assert live is not None
        live.status, live.pid = "running", os.getpid()
    assert jobs.check_run(catalogue, done).status == "succeeded"  # type: ignore[union-attr]
    assert jobs.check_run(catalogue, live_id).status == "running"  # type: ignore[union-attr]
    assert jobs.check_run(catalogue, 12345) is None


def test_start_fit_runs_the_training_cli_and_records_its_failure(catalogue: Catalogue) -> None:
    """An empty catalogue cannot train: the real CLI records why in the run."""
    with pytest.raises(jobs.JobError, match="unknown training parameters: colour"):
        jobs.start_fit(catalogue, {"backbone": "tiny", "colour": "red"})
    run_id = jobs.start_fit(catalogue, {"backbone": "tiny"}, name=" plumbing ")
    with catalogue.read() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.pid is not None and run.name == "plumbing"
        pid = run.pid
    _wait_dead(pid, timeout=120)
    final = jobs.check_run(catalogue, run_id)
    assert final is not None and final.status == "failed"
    assert "no labelled images in the train split" in (final.error or "")


def test_cancel_run_stops_the_process(catalogue: Catalogue) -> None:
    run_id = _queued_run(catalogue)
    code = "import time; time.sleep(60)"
    pid = jobs.spawn(
        catalogue, ["timeit", "-n", "1", "-r", "1", code], jobs.run_log(catalogue, run_id)
    )
    with catalogue.write() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status, run.pid = "running", pid
    assert jobs.cancel_run(catalogue, run_id) is True
    _wait_dead(pid, timeout=10)
    with catalogue.read() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "failed" and run.error == "cancelled by a user"
    assert jobs.cancel_run(catalogue, run_id) is False


def test_promote_keeps_exactly_one_active(catalogue: Catalogue) -> None:
    first = _finished_run(catalogue)
    second = _finished_run(catalogue)
    for run_id in (first, second, first):
        jobs.promote(catalogue, run_id)
        with catalogue.read() as s:
            active = list(s.scalars(select(Run.id).where(Run.active)))
            assert jobs.active_run(s).id == run_id  # type: ignore[union-attr]
        assert active == [run_id]


def test_promote_refuses_unfinished_runs(catalogue: Catalogue) -> None:
    queued = _queued_run(catalogue)
    with pytest.raises(jobs.JobError, match=f"run {queued} is queued"):
        jobs.promote(catalogue, queued)
    with pytest.raises(jobs.JobError, match="no run 999"):
        jobs.promote(catalogue, 999)


METRICS = {
    "stage1": {
        "accuracy": 0.9,
        "macro_f1": 0.85,
        "per_class": {"Dunk Low": {"precision": 1.0, "recall": 0.8, "n": 5}},
    },
    "stage2": {"accuracy": 0.7, "classes": [{"class": "DD1391-100", "f1": 0.5}]},
    "n_train": 40,
    "confusion": [[1, 0], [0, 1]],
}


def test_flatten_metrics_keeps_scalars_only() -> None:
    assert jobs.flatten_metrics(METRICS) == {
        "stage1.accuracy": 0.9,
        "stage1.macro_f1": 0.85,
        "stage2.accuracy": 0.7,
        "n_train": 40,
    }
    assert jobs.flatten_metrics(None) == {}


def test_metric_tables_finds_per_class_tables() -> None:
    tables = jobs.metric_tables(METRICS)
    assert tables == {
        "stage1.per_class": {"Dunk Low": {"precision": 1.0, "recall": 0.8, "n": 5}},
        "stage2.classes": {"DD1391-100": {"f1": 0.5}},
    }


def test_compare_table_lines_up_runs(catalogue: Catalogue) -> None:
    a = Run(id=1, params={"backbone": "tiny"}, metrics=METRICS)
    b = Run(id=2, params={"backbone": "vgg16"}, metrics={"stage1": {"accuracy": 0.95}})
    table = jobs.compare_table([a, b])
    assert table["param.backbone"] == {"#1": "tiny", "#2": "vgg16"}
    assert table["stage1.accuracy"] == {"#1": 0.9, "#2": 0.95}
    assert table["stage2.accuracy"] == {"#1": 0.7, "#2": None}


def test_run_pictures_from_run_and_bundle_folders(catalogue: Catalogue) -> None:
    run_id = _finished_run(catalogue)
    folder = jobs.run_dir(catalogue, run_id)
    (folder / "confusion_stage1.png").write_bytes(b"png")
    (folder / "bundle" / "curve.svg").write_text("<svg/>")
    (folder / "notes.txt").write_text("not a picture")
    with catalogue.read() as s:
        run = s.get(Run, run_id)
        assert run is not None
        names = [p.name for p in jobs.run_pictures(catalogue, run)]
    assert names == ["confusion_stage1.png", "curve.svg"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[  2.0%] start\n[ 45.5%] embedding 20/50\n", 0.455),
        ("suggest:  40%|####      | 20/50 [00:01<00:02]\n", 0.4),
        ("embedding 3/10\npredicting 7 / 28\n", 0.25),
        ("loading model\n", None),
        ("", None),
    ],
)
def test_parse_progress(text: str, expected: float | None) -> None:
    assert jobs.parse_progress(text) == (pytest.approx(expected) if expected else None)


def test_tail_keeps_newest_state_of_progress_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("start\nstep 1/3\rstep 2/3\rstep 3/3\ndone\n")
    assert jobs.tail(log) == "start\nstep 3/3\ndone"
    assert jobs.tail(log, max_lines=1) == "done"
    assert jobs.tail(tmp_path / "missing.txt") == ""
