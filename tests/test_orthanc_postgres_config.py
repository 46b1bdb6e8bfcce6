"""Orthanc's generated configuration with its index in PostgreSQL (``ONCOFLOW_ORTHANC_INDEX_URL``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oncoflow.core.config import ConfigError, load_settings
from oncoflow.services import orthanc_config
from oncoflow.services.orthanc_config import INDEX_PLUGIN_FILE, missing_orthanc_parts, orthanc_configuration

INDEX_URL = "postgresql://orthanc:p%40ss%2Fw@db.example.org:5433/orthanc_index"


def _settings(home: Path, **env: str):
    return load_settings({"ONCOFLOW_HOME": str(home), "ONCOFLOW_AUTH": "off", **env})


def test_sqlite_index_is_unchanged_without_an_index_url(tmp_path: Path) -> None:
    config = orthanc_configuration(_settings(tmp_path))
    assert "PostgreSQL" not in config
    assert not any(p.endswith(INDEX_PLUGIN_FILE) for p in config["Plugins"])
    assert config["IndexDirectory"] == config["StorageDirectory"] == str(tmp_path / "orthanc-storage")


def test_postgresql_index_with_shared_file_storage(tmp_path: Path) -> None:
    shared = tmp_path / "shared-storage"
    config = orthanc_configuration(_settings(tmp_path / "home", ONCOFLOW_ORTHANC_INDEX_URL=INDEX_URL,
                                             ONCOFLOW_ORTHANC_STORAGE=str(shared)))
    assert config["PostgreSQL"] == {"EnableIndex": True, "EnableStorage": False, "ConnectionUri": INDEX_URL,
                                    "Lock": False}
    assert config["Plugins"] == [str(orthanc_config.DEBIAN_ORTHANC_PLUGIN_DIR / n)
                                 for n in (*orthanc_config.PLUGIN_FILES, INDEX_PLUGIN_FILE)]
    assert config["StorageDirectory"] == str(shared)
    # never shared between Orthanc processes (a SQLite fallback there must stay private to this one)
    assert config["IndexDirectory"] == str(tmp_path / "home" / "orthanc-index")
    assert config["SaveJobs"] is False and config["PythonScript"] == str(orthanc_config.ENTRY_SCRIPT)


def test_postgresql_index_and_dicom_tls_together(tmp_path: Path) -> None:
    pem = [tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem")]
    for path in pem:
        path.write_text("-----BEGIN-----\n")
    config = orthanc_configuration(_settings(tmp_path, ONCOFLOW_ORTHANC_INDEX_URL=INDEX_URL,
                                             ONCOFLOW_DICOM_TLS_CERT=str(pem[0]), ONCOFLOW_DICOM_TLS_KEY=str(pem[1]),
                                             ONCOFLOW_DICOM_TLS_TRUSTED=str(pem[2])))
    assert config["DicomTlsEnabled"] is True and config["PostgreSQL"]["EnableIndex"] is True


def test_missing_parts_name_the_index_plugin_only_when_it_is_needed(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in orthanc_config.PLUGIN_FILES:
        (plugins / name).write_bytes(b"")
    index_plugin = str(plugins / INDEX_PLUGIN_FILE)
    sqlite = _settings(tmp_path, ONCOFLOW_ORTHANC_PLUGIN_DIR=str(plugins))
    postgres = _settings(tmp_path, ONCOFLOW_ORTHANC_INDEX_URL=INDEX_URL, ONCOFLOW_ORTHANC_PLUGIN_DIR=str(plugins))
    assert str(orthanc_config.DEBIAN_ORTHANC_PLUGIN_DIR / INDEX_PLUGIN_FILE) not in missing_orthanc_parts()
    assert index_plugin not in missing_orthanc_parts(sqlite)
    assert index_plugin in missing_orthanc_parts(postgres)
    (plugins / INDEX_PLUGIN_FILE).write_bytes(b"")
    assert index_plugin not in missing_orthanc_parts(postgres)


def test_the_written_configuration_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "run" / "orthanc.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)  # an older, readable file is narrowed
    settings = _settings(tmp_path, ONCOFLOW_ORTHANC_INDEX_URL=INDEX_URL)
    orthanc_config.write_orthanc_configuration(settings, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["PostgreSQL"]["ConnectionUri"] == INDEX_URL


def test_remote_http_access_is_refused_without_login(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ONCOFLOW_HTTP_REMOTE_ACCESS=on needs login"):
        _settings(tmp_path, ONCOFLOW_HTTP_REMOTE_ACCESS="on")
    assert orthanc_configuration(_settings(tmp_path))["RemoteAccessAllowed"] is False
