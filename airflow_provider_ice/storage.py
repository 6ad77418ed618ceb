"""Atomic publication of files and partitions, locally or on Airflow object storage.

Readers must never see a half-written file under its final name, and a rerun must replace what an
earlier run wrote. Locally that is a temporary name in the same directory plus ``os.replace``
(atomic on POSIX). Object stores have no rename: a file is uploaded under a temporary key and then
moved (copy + delete, so the final key only ever holds a complete object).

A partition (a directory of files) is committed in one step that readers can trust, on a local
disk and on object storage alike: every run writes its files under a new version folder
``<partition>/v=<UTC time>-<id>/`` that nobody reads yet, then writes ``<partition>/_manifest.json``
naming that version and each file's size and SHA-256. Writing that one small object (one PUT, or
``os.replace`` locally) is the commit: a reader that reads the manifest first always gets one
complete version, and the partition is never missing while it is replaced. Afterwards the version
it replaced is deleted. Two runs of the same partition each commit a complete version and the
last commit wins; runs for different partitions never touch each other's names.

The reader contract (see the README): read ``_manifest.json`` first, then the files of the version
it names (:func:`committed_files` does this); no manifest means nothing is committed yet; if a named
file is gone, a newer commit replaced it: read the manifest again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

#: A local :class:`Path` or an ``airflow.sdk.ObjectStoragePath`` (typed loosely: it is imported lazily).
Target = Any

log = logging.getLogger(__name__)

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
#: The commit of a partition: names the version to read (see the module docstring).
MANIFEST_FILE = "_manifest.json"
VERSION_PREFIX = "v="
#: Versions no manifest names (left by a crashed run) are removed by a later commit after this long.
ORPHAN_AGE = timedelta(days=1)


def data_dir() -> Path:
    """``$ICE_DATA_DIR``, else ``$AIRFLOW_HOME/ice_data``, else ``~/airflow/ice_data``."""
    explicit = os.environ.get("ICE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "ice_data"


def resolve(destination: Any, conn_id: str | None = None) -> Target:
    """Return a local :class:`Path` for plain paths and ``file://`` URIs, else an ``ObjectStoragePath``."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

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
    # Some ObjectStoragePath versions (Airflow 2's universal-pathlib) subclass pathlib.Path too.
    return isinstance(target, Path) and not hasattr(target, "protocol")


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
    """Return a fresh local directory to build a partition version in; removed unless committed.

    For a local ``final`` it is a hidden folder inside the partition (the commit renames it to its
    version name); for object storage it is a local temporary directory the commit uploads.
    """
    if is_local(final):
        final.mkdir(parents=True, exist_ok=True)
        staging = final / _temp_name("staging")
        staging.mkdir()
    else:
        staging = Path(tempfile.mkdtemp(prefix="ice-partition-"))
    try:
        yield staging
    finally:
        _remove_tree(staging)


def commit_partition(staging: Path, final: Target) -> tuple[str, str]:
    """Publish ``staging`` as the new version of ``final``; return the partition's URI and the version."""
    version = f"{VERSION_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    files = {p.name: _describe(p) for p in sorted(staging.iterdir())}
    previous = read_manifest(final)
    if is_local(final):
        staging.rename(final / version)  # same folder: one rename, invisible until the manifest says so
    else:
        try:
            for name in files:
                with (staging / name).open("rb") as local, (final / version / name).open("wb") as remote:
                    shutil.copyfileobj(local, remote, length=1024 * 1024)
        except BaseException:
            _remove_tree(final / version)  # never named by a manifest: nobody reads it
            raise
    manifest = {"version": version, "files": files, "committed_at": datetime.now(timezone.utc).isoformat()}
    _write_manifest(final, json.dumps(manifest, indent=2, sort_keys=True).encode())
    _remove_replaced(final, version, previous)
    uri = final.resolve().as_uri() if is_local(final) else str(final)
    return uri, version


def read_manifest(partition: Target) -> dict[str, Any] | None:
    """Return the committed manifest of ``partition``, or None when nothing is committed yet."""
    try:
        manifest = json.loads((partition / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(manifest, dict) or not str(manifest.get("version", "")).startswith(VERSION_PREFIX):
        raise ValueError(f"{MANIFEST_FILE} of {partition} is not a partition manifest")
    return manifest


def committed_files(partition: Target) -> dict[str, Target]:
    """Return the files of the committed version of ``partition``, by name, from one read of its manifest.

    This is the reader contract: take every file of one read of the manifest (reading the manifest
    again per file could mix two versions); on ``FileNotFoundError`` while reading them, a newer
    commit replaced that version: call this again.

    :raises FileNotFoundError: nothing is committed yet.
    """
    manifest = read_manifest(partition)
    if manifest is None:
        raise FileNotFoundError(f"{partition}: no committed version (no {MANIFEST_FILE})")
    return {name: partition / manifest["version"] / name for name in manifest.get("files", {})}


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _write_manifest(final: Target, data: bytes) -> None:
    if is_local(final):
        temp = final / _temp_name(MANIFEST_FILE)
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final / MANIFEST_FILE)
    else:
        # Written aside, then moved in: a server-side copy (S3, GCS, Azure) or a store entry replaced
        # at once, so readers see the old manifest or the new one, never a part, whatever the
        # filesystem shows of an object while it is being written.
        temp = final / _temp_name(MANIFEST_FILE)
        try:
            with temp.open("wb") as remote:
                remote.write(data)
            temp.rename(final / MANIFEST_FILE)
        except BaseException:
            with contextlib.suppress(Exception):
                temp.unlink()
            raise


def _remove_replaced(final: Target, mine: str, previous: dict[str, Any] | None) -> None:
    """Delete the version this commit replaced, orphans of crashed runs and pre-manifest files.

    A run whose commit a concurrent one overtook deletes its own version; a version in use is never
    deleted.
    """
    current = read_manifest(final)
    keep = current["version"] if current is not None else mine
    replaced = {mine, previous["version"] if previous else ""} - {keep}
    cutoff = datetime.now(timezone.utc) - ORPHAN_AGE
    for entry in list(final.iterdir()):
        name = entry.name
        if name in (MANIFEST_FILE, keep) or name.startswith("."):  # "." : another run's staging
            continue
        if name.startswith(VERSION_PREFIX) and name not in replaced and not _created_before(name, cutoff):
            continue  # another run's version, possibly about to be committed
        if entry.is_dir():
            _remove_tree(entry)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def _created_before(version: str, cutoff: datetime) -> bool:
    try:
        created = datetime.strptime(version[len(VERSION_PREFIX) :].split("-")[0], "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return True  # not a name this module gives: not a version of ours
    return created.replace(tzinfo=timezone.utc) < cutoff


def _remove_tree(target: Target) -> None:
    try:
        if is_local(target):
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.fs.rm(target.path, recursive=True)
    except Exception:
        log.warning("Could not remove temporary %s", target, exc_info=True)
