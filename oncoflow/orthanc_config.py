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
    return {**_base_configuration(settings), **_dicom_tls(settings)}


def _dicom_tls(settings: Settings) -> dict[str, Any]:
    """DICOM TLS (Orthanc >= 1.9) when configured: every association on the DICOM port must use TLS."""
    if settings.dicom_tls is None:
        return {}
    certificate, private_key, trusted = settings.dicom_tls
    return {"DicomTlsEnabled": True, "DicomTlsCertificate": str(certificate), "DicomTlsPrivateKey": str(private_key),
            "DicomTlsTrustedCertificates": str(trusted), "DicomTlsRemoteCertificateRequired": True}


def _base_configuration(settings: Settings) -> dict[str, Any]:
    return {
        "Name": f"OncoFlow {settings.aet}",
        "StorageDirectory": str(settings.orthanc_storage_dir),
        "IndexDirectory": str(settings.orthanc_storage_dir),
        "HttpPort": settings.http_port,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.aet,
        "DicomCheckCalledAet": True,
        # DICOM ingress: only the configured peers may associate (C-STORE, C-FIND, C-MOVE); echo stays open
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomAlwaysAllowEcho": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {
            peer.aet.lower(): {"AET": peer.aet, "Host": peer.host, "Port": peer.port, "AllowStore": True,
                               "AllowFind": True, "AllowMove": True, "AllowEcho": True, "AllowGet": True}
            for peer in settings.allowed_peers
        },
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
