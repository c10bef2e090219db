"""record.json is written and read in one place (lab.records.schema), and a run's summary is
computed once: the record of a run takes the run's own."""

from __future__ import annotations

import json

import pytest
from conftest import synthetic_samples

from lab.engine.result import LoadResult
from lab.engine.spec import LoadSpec
from lab.errors import CorruptRecord
from lab.records import record as record_module
from lab.records import schema
from lab.records.experiment import record_from_result
from lab.records.record import Record
from lab.records.store import RecordStore, StoreWarning


def a_result() -> LoadResult:
    samples = synthetic_samples(2000)
    begin = int(samples["sent_ns"].min())
    return LoadResult.of_run(LoadSpec(url="http://127.0.0.1:9/", mode="open", rate=5000.0),
                             samples, start_ns_=begin, end_ns=begin + 400_000_000,
                             started_at="2025-01-01T00:00:00.000000+00:00")


def test_the_record_of_a_run_takes_the_runs_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    result = a_result()
    computed: list[object] = []
    monkeypatch.setattr(record_module, "summarize_measured",
                        lambda *arguments, **keywords: computed.append(arguments))
    record = record_from_result(result, name="once")
    assert record.summary is result.summary
    assert record.metadata()["summary"] == result.summary.as_dict()
    assert computed == []  # nothing summarized a second time


def test_a_summary_that_is_not_of_the_samples_is_refused() -> None:
    result = a_result()
    with pytest.raises(ValueError, match="summary"):
        Record.create(samples=synthetic_samples(10), load_spec={}, summary=result.summary)


def test_the_record_saved_is_the_one_the_generator_would_summarize(tmp_path) -> None:
    result = a_result()
    store = RecordStore(tmp_path)
    store.save(record_from_result(result, name="again"))
    assert store.load("again").summary.as_dict() == result.summary.as_dict()


@pytest.mark.parametrize(("change", "reason"), [
    ({"version": 2}, "record version 2 is not supported"),
    ({"format": "other"}, "not a record"),
    ({"tags": "a, b"}, "tags must be a list, not str"),
    ({"markers": [3]}, "markers must be an object, not int"),
    ({"run": {"window_ns": 5}}, "window_ns must be a list, not int"),
    ({"run": {"window_ns": [1, 2], "tls": {"handshakes": -1}}}, "tls.handshakes must be a count"),
    ({"run": {"window_ns": [1, 2], "tls": {"versions": {"TLSv1.3": "2"}}}},
     r"tls.versions.TLSv1.3 must be a count"),
])
def test_one_reader_says_what_is_wrong_for_the_listing_and_a_load_alike(
        tmp_path, change: dict[str, object], reason: str) -> None:
    store = RecordStore(tmp_path)
    saved = Record.create(samples=synthetic_samples(100), load_spec={}, name="damaged")
    path = store.save(saved) / schema.METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.warns(StoreWarning, match=reason):
        assert store.runs().empty
    with pytest.raises(CorruptRecord, match=reason):
        Record.from_metadata(json.loads(path.read_text()), saved.samples)
