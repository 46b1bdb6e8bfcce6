"""OncoFlow's configuration: one place, read from the environment, validated at start-up.

Every component (the Orthanc plugin, the inference worker, the CLI) builds its
:class:`Settings` with :func:`load_settings`. Invalid values fail fast with one
message that lists every problem, so a misconfigured stack never half-starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SERIES_KINDS = ("t1c", "t1", "flair", "t2")


class ConfigError(ValueError):
    """Raised when the environment holds an invalid OncoFlow setting."""


@dataclass(frozen=True)
class Settings:
    """Validated settings. Environment variable names are given per field."""

    home: Path  # ONCOFLOW_HOME: all state (Orthanc storage, job DB, logs, PIDs)
    http_port: int  # ONCOFLOW_HTTP_PORT: Orthanc REST / DICOMweb
    dicom_port: int  # ONCOFLOW_DICOM_PORT: Orthanc DICOM (C-STORE, C-FIND, C-MOVE)
    aet: str  # ONCOFLOW_AET: Orthanc's application entity title
    worker_port: int  # ONCOFLOW_WORKER_PORT: the KServe v2 worker
    worker_url: str  # ONCOFLOW_WORKER_URL: host:port the plugin reaches (a Triton server works too)
    model_repository: Path  # ONCOFLOW_MODEL_REPOSITORY: Triton-layout model repository
    segmentation_model: str  # ONCOFLOW_SEG_MODEL: model name in the repository
    nnunet_model_dir: Path | None  # ONCOFLOW_NNUNET_MODEL_DIR: overrides the repository's nnU-Net folder
    series_preference: tuple[str, ...]  # ONCOFLOW_SERIES_PREFERENCE: e.g. "t1c,t1,flair"
    max_voxels: int  # ONCOFLOW_MAX_VOXELS: larger input volumes are refused
    stable_age_s: int  # ONCOFLOW_STABLE_AGE_S: Orthanc StableAge
    worker_timeout_s: float  # ONCOFLOW_WORKER_TIMEOUT_S: one inference request
    job_max_attempts: int  # ONCOFLOW_JOB_MAX_ATTEMPTS: transient failures before a job fails
    torch_threads: int = field(default=2)  # ONCOFLOW_TORCH_THREADS

    @property
    def orthanc_storage_dir(self) -> Path:
        return self.home / "orthanc-storage"

    @property
    def job_db_path(self) -> Path:
        return self.home / "oncoflow-jobs.sqlite3"

    @property
    def run_dir(self) -> Path:
        """PID files and generated configuration."""
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def orthanc_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def worker_http_url(self) -> str:
        return f"http://{self.worker_url}"


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int, errors: list[str]) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name}={raw!r} is not an integer")
        return default
    if not low <= value <= high:
        errors.append(f"{name}={value} is outside {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, errors: list[str]) -> float:
    raw = env.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name}={raw!r} is not a number")
        return default
    if value < low:
        errors.append(f"{name}={value} must be at least {low}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``).

    Raises :class:`ConfigError` naming every invalid variable.
    """
    env = os.environ if env is None else env
    errors: list[str] = []

    home = Path(env.get("ONCOFLOW_HOME", "./var")).expanduser().resolve()
    http_port = _int(env, "ONCOFLOW_HTTP_PORT", 8042, 1, 65535, errors)
    dicom_port = _int(env, "ONCOFLOW_DICOM_PORT", 4242, 1, 65535, errors)
    worker_port = _int(env, "ONCOFLOW_WORKER_PORT", 8000, 1, 65535, errors)
    if len({http_port, dicom_port, worker_port}) != 3:
        errors.append(
            f"ports must differ: http={http_port} dicom={dicom_port} worker={worker_port}"
        )

    aet = env.get("ONCOFLOW_AET", "ONCOFLOW")
    if not (1 <= len(aet) <= 16 and aet.isascii() and aet.strip() == aet and "\\" not in aet):
        errors.append(f"ONCOFLOW_AET={aet!r} is not a valid AE title (1-16 ASCII characters)")

    worker_url = env.get("ONCOFLOW_WORKER_URL", f"127.0.0.1:{worker_port}")
    if "://" in worker_url:
        errors.append(f"ONCOFLOW_WORKER_URL={worker_url!r} must be host:port, without a scheme")

    repo = Path(env.get("ONCOFLOW_MODEL_REPOSITORY", str(REPO_ROOT / "inference" / "model_repository")))
    repo = repo.expanduser().resolve()
    if not repo.is_dir():
        errors.append(f"ONCOFLOW_MODEL_REPOSITORY={repo} is not a directory")

    nnunet_raw = env.get("ONCOFLOW_NNUNET_MODEL_DIR")
    nnunet_dir = Path(nnunet_raw).expanduser().resolve() if nnunet_raw else None

    raw_preference = env.get("ONCOFLOW_SERIES_PREFERENCE", "t1c,t1,flair")
    preference = tuple(p.strip().lower() for p in raw_preference.split(",") if p.strip())
    unknown = [p for p in preference if p not in SERIES_KINDS]
    if unknown or not preference:
        errors.append(
            f"ONCOFLOW_SERIES_PREFERENCE has unknown kinds {unknown}; choose from {', '.join(SERIES_KINDS)}"
        )

    settings = Settings(
        home=home,
        http_port=http_port,
        dicom_port=dicom_port,
        aet=aet,
        worker_port=worker_port,
        worker_url=worker_url,
        model_repository=repo,
        segmentation_model=env.get("ONCOFLOW_SEG_MODEL", "nnunet_demo"),
        nnunet_model_dir=nnunet_dir,
        series_preference=preference,
        max_voxels=_int(env, "ONCOFLOW_MAX_VOXELS", 512 * 512 * 400, 1, 2**31 - 1, errors),
        stable_age_s=_int(env, "ONCOFLOW_STABLE_AGE_S", 3, 1, 3600, errors),
        worker_timeout_s=_float(env, "ONCOFLOW_WORKER_TIMEOUT_S", 300.0, 1.0, errors),
        job_max_attempts=_int(env, "ONCOFLOW_JOB_MAX_ATTEMPTS", 20, 1, 1000, errors),
        torch_threads=_int(env, "ONCOFLOW_TORCH_THREADS", 2, 1, 256, errors),
    )
    if errors:
        raise ConfigError("invalid OncoFlow configuration:\n  - " + "\n  - ".join(errors))
    return settings
