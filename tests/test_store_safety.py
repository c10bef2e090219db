"""The data folder survives kills mid-save and skips (and reports) whatever is not a record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, synthetic_samples

from lab.cli import main
from lab.errors import RecordNotFound
from lab.records import record as record_module
from lab.records.record import Record
from lab.records.store import CorruptRecord, RecordStore, StoreWarning, _read_record

# Runs a save in a child process and SIGKILLs it at one step of the save, the way a crash or
# an impatient kill -9 would stop it.
KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from lab.records import files; from lab.records import store
    from lab.records.record import Record
    from lab.measure.samples import empty

    folder, point = sys.argv[1], sys.argv[2]

    def die(*arguments, **keywords):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(step):
        def wrapped(*arguments, **keywords):
            step(*arguments, **keywords)
            die()
        return wrapped

    def half_written_samples(path, samples):
        with open(path, "wb") as stream:
            data = samples.tobytes()
            stream.write(data[: len(data) // 2])
            stream.flush()
            os.fsync(stream.fileno())
        die()

    if point == "during-samples":
        store._write_samples = half_written_samples
    elif point == "after-samples":
        store._write_samples = after(store._write_samples)
    elif point == "after-metadata":
        store._write_metadata = after(store._write_metadata)
    elif point == "before-publish":
        store._publish = die
    elif point == "during-update":
        files.os.replace = die
    samples = empty(200_000)
    samples["sent_ns"] = np.arange(samples.size) * 1000
    samples["done_ns"] = samples["sent_ns"] + 500_000
    target = store.RecordStore(folder)
    if point == "during-update":
        target.update("kept", name="half-renamed", notes="never lands")
    else:
        target.save(Record.create(samples=samples, load_spec={"mode": "closed"}, name="killed"))
    print("the save was not stopped")
""")

POINTS = ["during-samples", "after-samples", "after-metadata", "before-publish", "during-update"]


@pytest.mark.parametrize("point", POINTS)
def test_a_save_killed_midway_leaves_no_partial_record(store: RecordStore, point: str) -> None:
    kept = Record.create(samples=synthetic_samples(300), load_spec={"mode": "open"}, name="kept")
    store.save(kept)
    child = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(store.path), point],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # debris of the killed save is not reported
        table = store.runs()
    assert table["name"].tolist() == ["kept"]
    assert store.load("kept") == kept
    # The folder is still usable: the next save lands next to the debris.
    again = Record.create(samples=synthetic_samples(10), load_spec={}, name="after-the-kill")
    store.save(again)
    assert store.load("after-the-kill") == again


def _corrupt(store: RecordStore, good: Record) -> dict[str, str]:
    """Foreign and broken entries of every kind, with the reason each should be reported for."""
    folder = store.path
    (folder / "notes.txt").write_text("my notes about the runs\n")
    (folder / "empty-folder").mkdir()
    broken_json = folder / "20250101-000000-aaaa"
    broken_json.mkdir()
    (broken_json / "record.json").write_text("{ this is not json")
    foreign = folder / "20250101-000000-bbbb"
    foreign.mkdir()
    (foreign / "record.json").write_text(json.dumps({"format": "something-else"}))
    truncated = store.path / good.id
    copy = folder / "20250101-000000-cccc"
    copy.mkdir()
    metadata = json.loads((truncated / "record.json").read_text())
    metadata["id"] = copy.name
    (copy / "record.json").write_text(json.dumps(metadata))
    (copy / "samples.npy").write_bytes((truncated / "samples.npy").read_bytes()[:100])
    return {"notes.txt": "not a record", "empty-folder": "no record.json",
            broken_json.name: "unreadable", foreign.name: "not a record",
            copy.name: "samples.npy is unreadable"}


def test_corrupt_or_foreign_entries_are_reported_and_skipped(store: RecordStore,
                                                              synthetic_record: Record) -> None:
    store.save(synthetic_record)
    expected = _corrupt(store, synthetic_record)
    with pytest.warns(StoreWarning) as caught:
        table = store.runs()
    assert table["name"].tolist() == ["synthetic"]
    messages = [str(warning.message) for warning in caught]
    for entry, reason in expected.items():
        assert any(entry in message and reason in message for message in messages), (entry, messages)
    with pytest.warns(StoreWarning):
        assert store.load("synthetic") == synthetic_record


def test_samples_that_do_not_match_their_checksum_are_refused(store: RecordStore,
                                                               synthetic_record: Record) -> None:
    path = store.save(synthetic_record)
    samples = np.load(path / "samples.npy")
    samples["done_ns"][0] += 1  # one flipped measurement, same size and format
    np.save(path / "samples.npy", samples)
    with pytest.raises(CorruptRecord, match="checksum"):
        store.load(synthetic_record.id)


def test_the_cli_reports_skipped_entries_and_carries_on(store: RecordStore, synthetic_record: Record,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    store.save(synthetic_record)
    _corrupt(store, synthetic_record)
    assert main(["runs", "--data-dir", str(store.path)]) == 0
    output = capsys.readouterr()
    assert "synthetic" in output.out
    assert "skipped" in output.err and "notes.txt" in output.err
    assert main(["show", "no-such-run", "--data-dir", str(store.path)]) == 1
    assert "no record with id or name 'no-such-run'" in capsys.readouterr().err


def test_an_empty_or_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert RecordStore(tmp_path / "nowhere").runs().empty


# --- one damaged record fails alone -----------------------------------------------------------

def _copy_as(store: RecordStore, good: Record, record_id: str) -> Path:
    """A byte-for-byte copy of a saved record under another id, to damage."""
    source, copy = store.path / good.id, store.path / record_id
    copy.mkdir()
    metadata = json.loads((source / "record.json").read_text())
    metadata["id"] = record_id
    (copy / "record.json").write_text(json.dumps(metadata))
    (copy / "samples.npy").write_bytes((source / "samples.npy").read_bytes())
    return copy


def _load_spec_is_a_list(copy: Path) -> None:
    metadata = json.loads((copy / "record.json").read_text())
    metadata["load_spec"] = []
    (copy / "record.json").write_text(json.dumps(metadata))


def _notes_nested_too_deeply(copy: Path) -> None:
    text = (copy / "record.json").read_text()
    depth = 200_000
    nested = "[" * depth + "]" * depth
    (copy / "record.json").write_text(text.replace('"notes": "made up"', f'"notes": {nested}'))


def _garbled_npy_header(copy: Path) -> None:
    data = bytearray((copy / "samples.npy").read_bytes())
    start = data.index(b"{")
    garbage = b"{'descr': [('a', ((((((\"\\"
    data[start:start + len(garbage)] = garbage
    (copy / "samples.npy").write_bytes(bytes(data))


def _samples_are_a_fifo(copy: Path) -> None:
    (copy / "samples.npy").unlink()
    os.mkfifo(copy / "samples.npy")


def _samples_link_out_of_the_folder(copy: Path) -> None:
    outside = copy.parent.parent / "elsewhere.npy"
    outside.write_bytes((copy / "samples.npy").read_bytes())
    (copy / "samples.npy").unlink()
    (copy / "samples.npy").symlink_to(outside)


def _record_is_a_link_out_of_the_folder(copy: Path) -> None:
    outside = copy.parent.parent / "outside-record"
    copy.rename(outside)
    copy.symlink_to(outside, target_is_directory=True)


def _edited(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A damage made by editing record.json's object."""
    def edit(copy: Path) -> None:
        metadata = json.loads((copy / "record.json").read_text())
        change(metadata)
        (copy / "record.json").write_text(json.dumps(metadata))
    return edit


# Issue 23's damaged records: each is skipped with one line naming the file and the field.
ESCAPES = "\x1b[2J\x1b[31mPWNED"
_started_at_escapes = _edited(lambda m: m["environment"].update(started_at=ESCAPES))
_started_at_naive = _edited(lambda m: m["environment"].update(started_at="2025-01-01T00:00:00"))
_started_at_far = _edited(lambda m: m["environment"].update(started_at="9999-01-01T00:00:00+00:00"))
_window_reversed = _edited(lambda m: m.update(run={"window_ns": [10**30, -10**30]}))
_window_backwards = _edited(lambda m: m.update(run={"window_ns": [2000, 1000]}))
_rows_as_text = _edited(lambda m: m["samples"].update(rows=str(m["samples"]["rows"])))
_cpu_count_text = _edited(lambda m: m["environment"].update(cpu_count="many"))
_threshold_negative = _edited(lambda m: m.update(thresholds_ms=[-1.0]))
_marker_time_text = _edited(lambda m: m.update(markers=[{"t_s": "soon", "label": "x"}]))
_stages_unreadable = _edited(lambda m: m["load_spec"].update(stages=["1s:100", "x"]))
_stage_an_object = _edited(lambda m: m["load_spec"].update(stages=[{"x": 1}]))
_thresholds_unreadable = _edited(lambda m: m["load_spec"].update(thresholds=["p(99)<"]))


DAMAGE = {
    "started_at holds escapes": (_started_at_escapes, "environment.started_at must be an ISO 8601 time"),
    "started_at without offset": (_started_at_naive, "environment.started_at must say its UTC offset"),
    "started_at after 2262": (_started_at_far, "environment.started_at must be from 1970 to 2261"),
    "window_ns reversed and huge": (_window_reversed, "run.window_ns begin must be from 0 to"),
    "window_ns ends before it begins": (_window_backwards, "run.window_ns end must be from 2000 to"),
    "samples.rows as text": (_rows_as_text, "samples.rows must be a whole number, not '5000'"),
    "cpu_count as text": (_cpu_count_text, "environment.cpu_count must be a whole number"),
    "threshold below zero": (_threshold_negative, "thresholds_ms must be above 0"),
    "marker time as text": (_marker_time_text, "markers.t_s must be a finite number"),
    "stages unreadable": (_stages_unreadable, "load_spec.stages: 'x' is not DURATION:RATE"),
    "a stage an object": (_stage_an_object, "load_spec.stages must be text, not dict"),
    "thresholds unreadable": (_thresholds_unreadable, "load_spec.thresholds: 'p(99)<' is not"),
    "load_spec is a list": (_load_spec_is_a_list, "load_spec must be an object"),
    "notes nested too deeply": (_notes_nested_too_deeply, "nested too deeply"),
    "garbled .npy header": (_garbled_npy_header, "samples.npy is unreadable"),
    "FIFO as samples.npy": (_samples_are_a_fifo, "samples.npy is not a regular file"),
    "samples.npy links out": (_samples_link_out_of_the_folder, "samples.npy is a symbolic link"),
    "record links out": (_record_is_a_link_out_of_the_folder, "a symbolic link (not followed)"),
}


@pytest.mark.timeout(60)  # a FIFO read would block for ever: fail, do not hang the suite
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_record_is_skipped_with_one_line_and_the_good_one_still_works(
        damage: str, store: RecordStore, synthetic_record: Record, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    store.save(synthetic_record)
    damaged = _copy_as(store, synthetic_record, "20250101-000000-dddd")
    make, reason = DAMAGE[damage]
    make(damaged)
    with pytest.warns(StoreWarning) as caught:
        assert store.runs()["name"].tolist() == ["synthetic"]
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"skipped {damaged}: ") and reason in str(caught[0].message)

    data = ["--data-dir", str(store.path)]
    assert main(["runs", *data]) == 0
    output = capsys.readouterr()
    assert "synthetic" in output.out
    assert output.err.count("\n") == 1 and reason in output.err and "Traceback" not in output.err
    assert main(["show", "synthetic", *data]) == 0
    assert synthetic_record.id in capsys.readouterr().out
    target = tmp_path / "good.csv"
    assert main(["export", "synthetic", "-o", str(target), *data]) == 0
    assert target.read_text().count("\n") == synthetic_record.samples.size + 1
    assert "\x1b" not in output.err  # the reason quotes the value escaped


@pytest.mark.parametrize("damage", ["started_at holds escapes", "window_ns reversed and huge",
                                    "samples.rows as text"])
def test_a_damaged_record_is_refused_by_the_python_api_too(damage: str, store: RecordStore,
                                                           synthetic_record: Record) -> None:
    store.save(synthetic_record)
    damaged = _copy_as(store, synthetic_record, "20250101-000000-dddd")
    make, reason = DAMAGE[damage]
    make(damaged)
    with pytest.raises(CorruptRecord, match=re.escape(reason)):
        _read_record(damaged)
    with pytest.warns(StoreWarning, match=re.escape(reason)):
        assert [info.id for info in store.infos()] == [synthetic_record.id]
    with pytest.warns(StoreWarning), pytest.raises(RecordNotFound):
        store.load("20250101-000000-dddd")


def test_an_edited_summary_is_not_shown_the_samples_decide(store: RecordStore, synthetic_record: Record,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """runs (the cached summary) and show (the record) print one set of figures: a cache that
    is not the one saved with these samples is summarized anew."""
    path = store.save(synthetic_record)
    _edited(lambda m: m["summary"].update(requests=10**40, rps=1e308))(path)
    truth = synthetic_record.summary
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        (info,) = store.infos()
        table = store.runs()
        loaded = store.load("synthetic")
    assert info.summary.as_dict() == loaded.summary.as_dict() == truth.as_dict()
    assert table["requests"].tolist() == [truth.requests]
    data = ["--data-dir", str(store.path)]
    assert main(["runs", *data]) == 0
    listed = capsys.readouterr().out
    assert main(["show", "synthetic", *data]) == 0
    shown = capsys.readouterr().out
    assert "1e+308" not in listed and str(10**40) not in listed
    assert f"{truth.requests} requests in" in shown and f" {truth.requests} " in listed


def test_a_cache_saved_with_the_samples_is_used_by_both_views(store: RecordStore,
                                                             synthetic_record: Record,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(synthetic_record)
    monkeypatch.setattr(record_module, "summarize_measured",
                        lambda *arguments, **keywords: pytest.fail("summarized again"))
    assert store.infos()[0].summary.as_dict() == synthetic_record.summary.as_dict()
    assert store.load("synthetic").summary.as_dict() == synthetic_record.summary.as_dict()


def test_text_of_a_record_reaches_the_terminal_escaped(store: RecordStore, synthetic_record: Record,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = store.save(synthetic_record)
    _edited(lambda m: m.update(load_spec={**m["load_spec"], "mode": ESCAPES, ESCAPES: 1}))(path)
    _edited(lambda m: m["environment"].update(hostname=ESCAPES, cpu_model=ESCAPES,
                                              started_at="2025-01-01T02:00:00+02:00"))(path)
    data = ["--data-dir", str(store.path)]
    # the default listing keeps what fits 100 characters: the long setting is asked for by name
    for command in (["runs", "--columns", "id,mode"], ["show", "synthetic"],
                    ["runs", "--all-columns"]):
        assert main([*command, *data]) == 0
        output = capsys.readouterr()
        assert "\x1b" not in output.out + output.err
        assert "\\x1b[2J" in output.out
    assert main(["runs", *data]) == 0
    assert "\x1b" not in capsys.readouterr().out
    assert main(["runs", "--columns", "started", *data]) == 0
    assert "2025-01-01 00:00:00" in capsys.readouterr().out  # shown in UTC


def test_a_record_written_by_an_older_lab_is_summarised_anew(store: RecordStore,
                                                             synthetic_record: Record) -> None:
    """Its cached summary has other keys (and other definitions): the samples decide."""
    path = store.save(synthetic_record)
    metadata = json.loads((path / "record.json").read_text())
    metadata["summary"] = {"requests": 1, "requests_per_s": 2.0}
    del metadata["run"]
    (path / "record.json").write_text(json.dumps(metadata))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        (info,) = store.infos()
    assert info.summary.as_dict() == synthetic_record.summary.as_dict()
