"""Orthanc's JSON configuration for an OncoFlow stack, derived from :class:`Settings` alone."""

from __future__ import annotations

import site
from pathlib import Path
from typing import Any

from .config import REPO_ROOT, Settings

ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
PLUGIN_FILES = ("libOrthancPython.so", "libOrthancDicomWeb.so")
ENTRY_SCRIPT = REPO_ROOT / "orthanc-plugins" / "oncoflow_orthanc.py"


def orthanc_configuration(settings: Settings) -> dict[str, Any]:
    """The configuration Orthanc is started with (``Orthanc <file>``)."""
    return {
        "Name": f"OncoFlow {settings.aet}",
        "StorageDirectory": str(settings.orthanc_storage_dir),
        "IndexDirectory": str(settings.orthanc_storage_dir),
        "HttpPort": settings.http_port,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.aet,
        "DicomCheckCalledAet": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "ExecuteLuaEnabled": False,
        "StableAge": settings.stable_age_s,
        "OverwriteInstances": True,
        "SaveJobs": False,
        "Plugins": [str(ORTHANC_PLUGIN_DIR / name) for name in PLUGIN_FILES],
        "PythonScript": str(ENTRY_SCRIPT),
        "PythonVerbose": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado"},
        "OncoFlow": {"SitePackages": site.getsitepackages()},
    }


def missing_orthanc_parts() -> list[str]:
    """Files of the Debian packages that an OncoFlow stack needs and that are absent."""
    wanted = [ORTHANC_PLUGIN_DIR / name for name in PLUGIN_FILES] + [Path("/usr/sbin/Orthanc")]
    return [str(p) for p in wanted if not p.exists()]
