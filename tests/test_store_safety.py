"""The data folder survives kills mid-save and skips (and reports) whatever is not a record."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, synthetic_samples

from lab.cli import main
from lab.records.record import Record
from lab.records.store import CorruptRecord, RecordStore, StoreWarning

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
