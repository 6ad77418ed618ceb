"""Finding PostgreSQL, and installing it when missing (no deployment needed: runs even when skipped).

This machine may have PostgreSQL already, which would hide a broken install step; these tests give
the detection fake layouts and check what ``ensure_postgres`` would run on a fresh one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deployment.stack import DeploymentError, ensure_postgres, find_postgres_bindir


def _server(bindir: Path) -> Path:
    bindir.mkdir(parents=True)
    for name in ("initdb", "postgres", "pg_ctl"):
        (bindir / name).write_text("")
    return bindir


def test_the_newest_debian_version_directory_is_found(tmp_path: Path) -> None:
    _server(tmp_path / "13" / "bin")
    newest = _server(tmp_path / "15" / "bin")
    (tmp_path / "16" / "bin").mkdir(parents=True)  # a client-only leftover, no server
    assert find_postgres_bindir(which=lambda name: None, debian_root=tmp_path) == newest


def test_initdb_on_path_wins(tmp_path: Path) -> None:
    on_path = _server(tmp_path / "opt" / "bin")
    _server(tmp_path / "debian" / "15" / "bin")
    found = find_postgres_bindir(which=lambda name: str(on_path / name), debian_root=tmp_path / "debian")
    assert found == on_path


def test_client_tools_alone_are_not_a_server(tmp_path: Path) -> None:
    (tmp_path / "usr-bin").mkdir()
    (tmp_path / "usr-bin" / "initdb").write_text("")  # a wrapper without the server next to it
    assert (
        find_postgres_bindir(which=lambda name: str(tmp_path / "usr-bin" / name), debian_root=tmp_path)
        is None
    )


def test_a_missing_server_is_installed_with_apt_get(tmp_path: Path) -> None:
    commands: list[list[str]] = []
    installed: list[Path] = []

    def run(argv: list[str], **kwargs: Any) -> None:
        commands.append(argv)
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if argv[:2] == ["apt-get", "install"]:
            installed.append(_server(tmp_path / "15" / "bin"))

    def find() -> Path | None:
        return find_postgres_bindir(which=lambda name: None, debian_root=tmp_path)

    assert ensure_postgres(run=run, find=find, is_root=True) == tmp_path / "15" / "bin"
    assert commands == [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ]


def test_an_installed_server_is_used_as_is(tmp_path: Path) -> None:
    bindir = _server(tmp_path / "15" / "bin")

    def run(argv: list[str], **kwargs: Any) -> None:
        raise AssertionError(f"nothing to install, yet ran {argv}")

    assert ensure_postgres(run=run, find=lambda: bindir, is_root=True) == bindir


def test_without_root_a_missing_server_is_a_clear_error() -> None:
    with pytest.raises(DeploymentError, match="install the postgresql package"):
        ensure_postgres(run=lambda *a, **k: None, find=lambda: None, is_root=False)
