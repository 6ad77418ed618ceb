"""Atomic publication of files and partitions, locally or on Airflow object storage.

Readers must never see a half-written file under its final name, and a rerun must replace what an
earlier run wrote. Locally that is a temporary name in the same directory plus ``os.replace``
(atomic on POSIX). Object stores have no rename: a file is uploaded under a temporary key and then
moved (copy + delete, so the final key only ever holds a complete object).

A partition (a directory of files) is built under a temporary sibling directory and swapped in by
two renames (old partition aside, new one in). Runs for *different* partitions never touch each
other's names; two runs of the *same* partition each produce a complete partition and the last
swap wins. On object storage the files are moved one by one, ``summary.json`` last, so the summary
is the commit marker of a partition.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: A local :class:`Path` or an ``airflow.sdk.ObjectStoragePath`` (typed loosely: it is imported lazily).
Target = Any

log = logging.getLogger(__name__)

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})


def data_dir() -> Path:
    """``$ICE_DATA_DIR``, else ``$AIRFLOW_HOME/ice_data``, else ``~/airflow/ice_data``."""
    explicit = os.environ.get("ICE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "ice_data"


def resolve(destination: Any, conn_id: str | None = None) -> Target:
    """Return a local :class:`Path` for plain paths and ``file://`` URIs, else an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        path = destination
    else:
        text = os.fspath(destination) if isinstance(destination, os.PathLike) else str(destination)
        if "://" not in text:
            return Path(text).expanduser()
        path = ObjectStoragePath(text, conn_id=conn_id)
    if path.protocol in LOCAL_PROTOCOLS:
        return Path(path.path)
    return path


def new_file_mode() -> int:
    """Return the mode ``open(path, "w")`` gives a new file under the process umask."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def is_local(target: Target) -> bool:
    """Return True for a local path (not object storage)."""
    return isinstance(target, Path)


def _temp_name(name: str) -> str:
    # Hidden and unique: concurrent runs never share a temporary name, and readers globbing "*.json"
    # or "date=*" do not pick it up.
    return f".{name}.tmp-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def spool_for(final: Target) -> Iterator[IO[bytes]]:
    """Return a writable temporary file for content bound for ``final``; removed if not published.

    Local targets get it next to ``final`` (same filesystem, so :func:`publish_file` is a rename).
    """
    if is_local(final):
        assert isinstance(final, Path)
        final.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, name kept for the rename
            dir=final.parent, prefix=f".{final.name}.", suffix=".part", delete=False
        )
        # mkstemp creates 0600; the published file gets what a plain open() would give (0644 under
        # the usual umask 022), like the partition files, so readers running as another user can read it.
        os.fchmod(handle.fileno(), new_file_mode())
    else:
        handle = tempfile.NamedTemporaryFile(prefix="ice-spool-", suffix=".part", delete=False)  # noqa: SIM115
    try:
        yield handle
    finally:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)


def publish_file(spool: IO[bytes], final: Target) -> str:
    """Make the spooled content visible under ``final`` atomically, replacing any earlier file.

    Returns the URI of the published file.
    """
    spool.flush()
    if is_local(final):
        assert isinstance(final, Path)
        os.fsync(spool.fileno())
        os.replace(spool.name, final)
        return final.resolve().as_uri()
    temp = final.parent / _temp_name(final.name)
    try:
        spool.seek(0)
        with temp.open("wb") as remote:
            shutil.copyfileobj(spool, remote, length=1024 * 1024)
        temp.rename(final)
    except BaseException:
        with contextlib.suppress(Exception):
            temp.unlink()
        raise
    return str(final)


@contextlib.contextmanager
def staged_partition(final: Target) -> Iterator[Path]:
    """Return a fresh local directory to build a partition in; removed unless :func:`swap_partition` took it.

    For a local ``final`` it is a hidden sibling (same filesystem: the swap is a rename); for object
    storage it is a local temporary directory whose files are uploaded by the swap.
    """
    if is_local(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / _temp_name(final.name)
        staging.mkdir()
    else:
        staging = Path(tempfile.mkdtemp(prefix="ice-partition-"))
    try:
        yield staging
    finally:
        _remove_tree(staging)


def swap_partition(staging: Path, final: Target, *, commit_last: str = "summary.json") -> str:
    """Replace ``final`` by the complete ``staging`` directory; returns the partition's URI."""
    if is_local(final):
        _swap_local(staging, final)
        return str(final.resolve().as_uri())
    names = sorted((p.name for p in staging.iterdir()), key=lambda name: name == commit_last)
    remote_staging = final.parent / _temp_name(final.name)
    try:
        for name in names:
            with (staging / name).open("rb") as local, (remote_staging / name).open("wb") as remote:
                shutil.copyfileobj(local, remote, length=1024 * 1024)
        for stale in list(final.iterdir()) if final.exists() else []:
            if stale.name not in names:
                stale.unlink()
        for name in names:  # summary.json last: it marks the partition complete
            (remote_staging / name).rename(final / name)
    finally:
        _remove_tree(remote_staging)
    return str(final)


def _swap_local(staging: Path, final: Path, attempts: int = 5) -> None:
    for _ in range(attempts):
        aside = final.parent / _temp_name(final.name + ".old")
        old: Path | None = aside
        try:
            final.rename(aside)
        except FileNotFoundError:
            old = None
        try:
            staging.rename(final)
        except OSError:
            # Another run of the same partition swapped its own in between our two renames: retry;
            # both are complete, the last one wins.
            if old is not None:
                _remove_tree(old)
            continue
        if old is not None:
            _remove_tree(old)
        return
    raise RuntimeError(f"could not swap partition {final.name} in after {attempts} attempts")


def _remove_tree(target: Target) -> None:
    try:
        if is_local(target):
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.fs.rm(target.path, recursive=True)
    except Exception:
        log.warning("Could not remove temporary %s", target, exc_info=True)
