"""A partition is replaced in one step readers can trust, on a local disk and on object storage.

A reader following the README's contract (manifest first, then the version it names; read the
manifest again if a named file vanished) reads partitions while they are replaced over and over:
it must always find a committed partition, and every read must be one whole version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice import storage


def _write_version(final: Any, n: int) -> str:
    with storage.staged_partition(final) as staging:
        (staging / "sessions.jsonl").write_text(
            "".join(json.dumps({"run": n, "i": i}) + "\n" for i in range(50))
        )
        (staging / "summary.json").write_text(json.dumps({"run": n, "sessions": 50}))
        _uri, version = storage.commit_partition(staging, final)
    return version


def _read(final: Any) -> tuple[int, int]:
    """One read by the contract; returns (run of summary, run of every session line)."""
    for _ in range(20):
        try:
            files = storage.committed_files(final)  # one read of the manifest
            summary = json.loads(files["summary.json"].read_text())
            lines = files["sessions.jsonl"].read_text().splitlines()
        except FileNotFoundError:
            continue  # replaced between the manifest and the file: read the manifest again
        runs = {json.loads(line)["run"] for line in lines}
        assert len(lines) == 50, "a partial file was read"
        assert len(runs) == 1, f"lines of several versions: {runs}"
        return summary["run"], runs.pop()
    raise AssertionError("the partition stayed unreadable")


@pytest.mark.parametrize("threads", [1, 3])
def test_local_readers_always_see_one_whole_committed_version_while_it_is_replaced(
    tmp_path: Path, threads: int
) -> None:
    final = tmp_path / "sessions" / "date=2026-01-01"
    with pytest.raises(FileNotFoundError, match="no committed"):
        storage.committed_files(final)  # nothing committed yet: nothing to read
    _write_version(final, 0)
    stop = threading.Event()
    reads: list[tuple[int, int]] = []
    failures: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                reads.append(_read(final))
            except BaseException as err:  # reported below
                failures.append(err)
                return

    readers = [threading.Thread(target=reader) for _ in range(threads)]
    for thread in readers:
        thread.start()
    versions = [_write_version(final, n) for n in range(1, 16)]
    stop.set()
    for thread in readers:
        thread.join()
    assert failures == []
    assert len(reads) > 15
    assert all(summary_run == lines_run for summary_run, lines_run in reads)  # never mixed
    assert _read(final) == (15, 15)
    # Each commit removed the version it replaced: only the manifest and the last version remain.
    assert sorted(p.name for p in final.iterdir()) == ["_manifest.json", versions[-1]]
    manifest = json.loads((final / "_manifest.json").read_text())
    data = (final / versions[-1] / "summary.json").read_bytes()
    assert manifest["files"]["summary.json"] == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_object_storage_readers_see_the_old_version_until_the_manifest_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    final = ObjectStoragePath(f"memory://commit-{tmp_path.name}/sessions/date=2026-01-01")
    _write_version(final, 0)
    seen: list[tuple[int, int]] = []
    upload = shutil.copyfileobj

    def upload_then_read(source: Any, target: Any, length: int = 0) -> None:
        upload(source, target, length)
        seen.append(_read(final))  # a reader between two uploads of the new version

    monkeypatch.setattr(storage.shutil, "copyfileobj", upload_then_read)
    version = _write_version(final, 1)
    assert seen == [(0, 0), (0, 0)]  # both files uploaded, still the old version for readers
    assert _read(final) == (1, 1)  # the manifest switched it in one step
    assert sorted(p.name for p in final.iterdir()) == ["_manifest.json", version]


def test_a_losing_concurrent_commit_removes_its_own_version_and_keeps_the_winner(tmp_path: Path) -> None:
    final = tmp_path / "date=2026-01-01"
    _write_version(final, 0)
    previous = storage.read_manifest(final)
    with storage.staged_partition(final) as late, storage.staged_partition(final) as early:
        (early / "summary.json").write_text('{"run": 1}')
        (late / "summary.json").write_text('{"run": 2}')
        # Both runs read the same previous manifest; "late" commits last and wins.
        _, first = storage.commit_partition(early, final)
        _, second = storage.commit_partition(late, final)
    assert previous is not None
    assert storage.read_manifest(final)["version"] == second  # type: ignore[index]
    assert json.loads(storage.committed_files(final)["summary.json"].read_text()) == {"run": 2}
    assert sorted(p.name for p in final.iterdir()) == ["_manifest.json", second]
    assert first != second


def test_files_of_the_layout_before_manifests_are_removed_by_the_first_commit(tmp_path: Path) -> None:
    final = tmp_path / "date=2026-01-01"
    final.mkdir()
    (final / "summary.json").write_text('{"old": true}')
    (final / "sessions.jsonl").write_text("{}\n")
    version = _write_version(final, 7)
    assert sorted(p.name for p in final.iterdir()) == ["_manifest.json", version]
    assert json.loads(storage.committed_files(final)["summary.json"].read_text())["run"] == 7
