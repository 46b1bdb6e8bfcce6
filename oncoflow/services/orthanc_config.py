"""Orthanc's JSON configuration for an OncoFlow stack, derived from :class:`Settings` alone."""

from __future__ import annotations

import json
import os
import site
import sys
from pathlib import Path
from typing import Any

from oncoflow.core.config import DEBIAN_ORTHANC_PLUGIN_DIR, REPO_ROOT, DicomPeer, Settings

PLUGIN_FILES = ("libOrthancPython.so", "libOrthancDicomWeb.so")
INDEX_PLUGIN_FILE = "libOrthancPostgreSQLIndex.so"  # Debian's orthanc-postgresql (4.0)
ORTHANC_BINARIES = ("/usr/sbin/Orthanc", "/usr/local/bin/Orthanc")  # Debian's; the Orthanc Team image's
ENTRY_SCRIPT = REPO_ROOT / "orthanc-plugins" / "oncoflow_orthanc.py"


# What Orthanc 1.10.1's C-STORE SCP accepts, made explicit (its Configuration.json: "AcceptedTransferSyntaxes" is
# applied first, then the groups). Every transfer syntax Orthanc knows is accepted, but for the groups that carry
# no still MR image OncoFlow can read; JPEG-LS (1.2.840.10008.1.2.4.80, .81) has no group of its own. What pydicom
# decodes (oncoflow.dicom.volume_builder.check_decodable): uncompressed, deflated (pydicom), RLE (pydicom),
# JPEG baseline, extended and lossless (python-gdcm), JPEG-LS (pyjpegls), JPEG 2000 Part 1 (.90, .91:
# pylibjpeg-openjpeg). A syntax accepted here but not decoded (JPEG 2000 Part 2 multi-component .92, .93; the
# retired JPEG processes, e.g. .55) is stored, and the study's job fails naming it: the modality gets no refusal
# it cannot explain, and the images stay readable in the PACS. Measured with storescu against Orthanc 1.10.1 and
# this configuration: .55, .70, .80, .90, .92, .93 and 1.2.840.10008.1.2.5 stored as sent; .94 and .100 refused.
ACCEPTED_TRANSFER_SYNTAXES = ["1.2.840.10008.1.*"]  # Orthanc's default: all the transfer syntaxes it knows
TRANSFER_SYNTAX_GROUPS: dict[str, bool] = {
    "DeflatedTransferSyntaxAccepted": True,  # 1.2.840.10008.1.2.1.99
    "JpegTransferSyntaxAccepted": True,  # JPEG baseline and extended (lossy), as scanners' lossy archives send
    "Jpeg2000TransferSyntaxAccepted": True,  # 1.2.840.10008.1.2.4.90 to .93
    "JpegLosslessTransferSyntaxAccepted": True,  # process 14 (.57) and its selection value 1 (.70)
    "RleTransferSyntaxAccepted": True,  # 1.2.840.10008.1.2.5
    "JpipTransferSyntaxAccepted": False,  # .94, .95: the pixel data stays on a JPIP server, not in the object
    "Mpeg2TransferSyntaxAccepted": False,  # video (endoscopy, cine), never an MR volume
    "Mpeg4TransferSyntaxAccepted": False,  # video (H.264)
    "H265TransferSyntaxAccepted": False,  # video (HEVC)
}


def orthanc_configuration(settings: Settings) -> dict[str, Any]:
    """The configuration Orthanc is started with (``Orthanc <file>``)."""
    config = {**_base_configuration(settings), **_dicom_tls(settings)}
    if settings.orthanc_index_url is not None:
        config["Plugins"] = [*config["Plugins"], str(settings.orthanc_plugin_dir / INDEX_PLUGIN_FILE)]
        config["PostgreSQL"] = _postgresql_index(settings.orthanc_index_url)
    return config


def write_orthanc_configuration(settings: Settings, path: Path) -> Path:
    """Write :func:`orthanc_configuration` to ``path``, readable by its owner only (it may hold the index's
    password), creating the folders Orthanc writes to; returns ``path``."""
    for directory in (path.parent, settings.orthanc_storage_dir):
        directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(orthanc_configuration(settings), out, indent=2)
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC
    return path


def orthanc_index_dir(settings: Settings) -> Path:
    """Orthanc's ``IndexDirectory``: beside the DICOM files for the SQLite index; with the PostgreSQL index, a
    folder of this Orthanc's own, never the shared storage. It stays unused (not even created) while the plugin
    serves the index, but when a listed plugin file is missing Orthanc 1.10.1 only logs "Inexistent path to
    plugins" and starts on a SQLite index in this folder (measured): two processes must never share that."""
    if settings.orthanc_index_url is None:
        return settings.orthanc_storage_dir
    return settings.home / "orthanc-index"


def _postgresql_index(url: str) -> dict[str, Any]:
    """The ``PostgreSQL`` section of Debian's index plugin 4.0: the index in PostgreSQL, the files on disk.

    ``ConnectionUri`` is handed to libpq as it is (plugin 4.0 reads it; libpq decodes a percent-encoded
    password). ``Lock`` must be false: with the default (true) the plugin takes a PostgreSQL advisory lock "to
    prevent the execution of two PostgreSQL index plugins on the same database" (orthanc-databases,
    PostgreSQL/Plugins/PostgreSQLDefinitions.h, POSTGRESQL_LOCK_INDEX), and a second Orthanc stops at start-up
    with "The PostgreSQL database is locked by another instance of Orthanc" (measured with 4.0). The Orthanc
    Book documents ``Lock: false`` as the way for several Orthanc instances to share one database, with the
    same configuration (plugins/postgresql.html, "Locking"), and several writers on it since Orthanc 1.9.2 and
    PostgreSQL plugins 4.0, each Orthanc keeping its own jobs (faq/scalability.html, "multiple writers");
    ``SaveJobs`` stays false.
    """
    return {"EnableIndex": True, "EnableStorage": False, "ConnectionUri": url, "Lock": False}


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
        "IndexDirectory": str(orthanc_index_dir(settings)),
        "HttpPort": settings.http_port,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.aet,
        "DicomCheckCalledAet": True,
        # Orthanc 1.10's defaults, written out because docs/dicom-conformance.md states them (section 2.2)
        "DicomThreadsCount": 4,  # simultaneous associations served
        "DicomScpTimeout": 30,  # s of silence before Orthanc closes an association it serves
        "MaximumPduLength": 16384,  # bytes, announced in A-ASSOCIATE-AC
        # DICOM roles: only the configured peers associate, each from its own IP address, each for its own
        # commands (a "DicomAlwaysAllow*" left true would let an unknown AE title's association in, and would
        # override the per-peer right of that command)
        **{f"DicomAlwaysAllow{command}": False for command in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move")},
        "DicomCheckModalityHost": True,
        "DicomModalities": _modalities(settings),
        "RemoteAccessAllowed": settings.http_remote_access,  # only with login on (checked in config)
        "AuthenticationEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "ExecuteLuaEnabled": False,
        "StableAge": settings.stable_age_s,
        # the character set of Orthanc's find answers (QIDO-RS, /tools/find, C-FIND) and of a file without
        # SpecificCharacterSet (0008,0005): UTF-8 keeps every script's PatientName (Latin-1 gave "^" for Hebrew)
        "DefaultEncoding": "Utf8",
        "AcceptedTransferSyntaxes": ACCEPTED_TRANSFER_SYNTAXES,
        **TRANSFER_SYNTAX_GROUPS,
        "UnknownSopClassAccepted": False,  # only the storage SOP classes Orthanc knows (its default)
        "OverwriteInstances": False,  # a resent UID never replaces what is stored (OncoFlow deletes, then stores)
        "SaveJobs": False,
        "Plugins": [str(settings.orthanc_plugin_dir / name) for name in PLUGIN_FILES],
        "PythonScript": str(ENTRY_SCRIPT),
        "PythonVerbose": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado"},
        "OncoFlow": {"SitePackages": site.getsitepackages()},
    }


def _modality(peer: DicomPeer) -> dict[str, Any]:
    """One ``DicomModalities`` entry: the peer's AE title, IP address and port, and exactly its rights. A query
    peer off this machine is reached by DICOM TLS (``UseDicomTls``: C-MOVE and C-STORE towards it)."""
    querying = peer.find or peer.move or peer.get
    return {"AET": peer.aet, "Host": peer.host, "Port": peer.port, "AllowEcho": True, "AllowStore": peer.store,
            "AllowFind": peer.find, "AllowFindWorklist": False, "AllowMove": peer.move, "AllowGet": peer.get,
            "AllowStorageCommitment": False, "UseDicomTls": querying and not peer.on_loopback}


def _modalities(settings: Settings) -> dict[str, Any]:
    """``DicomModalities``: the peers, and the hospital PACS results are routed to (``ONCOFLOW_ROUTE_TO``). The
    destination is reached by DICOM TLS when not on this machine; when its AE title is a peer's, it is that peer's
    entry (one AE title, one entry: Orthanc matches callers by AE title), at the destination's port."""
    modalities = {peer.modality_id: _modality(peer) for peer in settings.dicom_peers}
    route = settings.route_to
    if route is not None:
        entry = modalities.get(route.modality_id) or _modality(route)
        modalities[route.modality_id] = {**entry, "Port": route.port, "UseDicomTls": not route.on_loopback}
    return modalities


def orthanc_command(settings: Settings, config_path: Path) -> list[str]:
    """How Orthanc is started: the installed binary, ``--logfile`` (DICOM refusals are audited from that log,
    :mod:`oncoflow.security.dicom_refusals`) and its configuration."""
    binary = next((b for b in ORTHANC_BINARIES if Path(b).exists()), ORTHANC_BINARIES[0])
    return [binary, f"--logfile={settings.orthanc_log_path}", str(config_path)]


def missing_orthanc_parts(settings: Settings | None = None) -> list[str]:
    """Files of the Debian packages that an OncoFlow stack needs and that are absent.

    With ``settings`` whose ``orthanc_index_url`` is set, the PostgreSQL index plugin (``orthanc-postgresql``)
    is needed too; without ``settings`` only the parts every stack needs are checked.
    """
    names = [*PLUGIN_FILES]
    if settings is not None and settings.orthanc_index_url is not None:
        names.append(INDEX_PLUGIN_FILE)
    plugin_dir = settings.orthanc_plugin_dir if settings is not None else DEBIAN_ORTHANC_PLUGIN_DIR
    missing = [str(plugin_dir / name) for name in names if not (plugin_dir / name).exists()]
    if not any(Path(binary).exists() for binary in ORTHANC_BINARIES):
        missing.append(ORTHANC_BINARIES[0])
    return missing


def main(argv: list[str] | None = None) -> int:
    """``python -m oncoflow.services.orthanc_config [--run] PATH``: write the configuration of the ``ONCOFLOW_*``
    environment; with ``--run`` (a container's entry point), then become Orthanc (:func:`orthanc_command`)."""
    from oncoflow.core.config import ConfigError, load_settings

    args = sys.argv[1:] if argv is None else argv
    run = args[:1] == ["--run"]
    args = args[1:] if run else args
    if len(args) != 1:
        print("usage: python -m oncoflow.services.orthanc_config [--run] PATH", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    missing = missing_orthanc_parts(settings)
    if missing:  # Orthanc would only log it and start without the plugin (on a SQLite index, measured)
        print(f"missing Orthanc parts: {', '.join(missing)}", file=sys.stderr)
        return 1
    path = write_orthanc_configuration(settings, Path(args[0]))
    if run:
        settings.orthanc_log_path.parent.mkdir(parents=True, exist_ok=True)
        command = orthanc_command(settings, path)
        os.execv(command[0], command)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
