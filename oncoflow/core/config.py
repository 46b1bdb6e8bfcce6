"""OncoFlow's configuration: one place, read from the environment, validated at start-up.

Every component (the Orthanc plugin, the inference worker, the CLI) builds its
:class:`Settings` with :func:`load_settings`. Invalid values fail fast with one
message that lists every problem, so a misconfigured stack never half-starts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from oncoflow.core.change_thresholds import ChangeThresholds

REPO_ROOT = Path(__file__).resolve().parents[2]  # oncoflow/core/config.py -> the repository
VIEWER_BASE_PATH = "/ohif/"  # where Orthanc serves the OHIF viewer (and OHIF's bundles are re-rooted to)
DEBIAN_ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")  # orthanc-python, -dicomweb, -postgresql

SERIES_KINDS = ("t1c", "t1", "flair", "t2")
FUSION_STRATEGIES = ("majority", "staple", "weighted", "confidence")
DEFAULT_PANEL = "nnunet_demo,nnunet_demo_2d,nnunet_demo_3d_seed2,sam2,medgemma"
BASELINE_RULES = ("previous", "nadir", "first")
# ONCOFLOW_RESPONSE_CRITERIA: the names of oncoflow.measure.rano_response.CRITERIA
RESPONSE_CRITERIA = ("rano2-volumetric", "rano2-bidimensional", "rano2-non-enhancing", "rano-bm")
# RANO 2.0: "mixed" assesses the T2/FLAIR (non-enhancing) disease in parallel with the enhancing disease and combines
# the two categories; "enhancing" (a trial of contrast-enhancing tumours, e.g. glioblastoma) assesses enhancing only
TUMOUR_PRESENTATIONS = ("mixed", "enhancing")
# `oncoflow push` and dcmtk's storescu default, on this machine: development only
DEFAULT_STORE_PEERS = "ONCOFLOWCLI@127.0.0.1,STORESCU@127.0.0.1"
QUERY_RIGHTS = ("find", "move", "get")
ROUTE_OBJECTS = ("ensemble", "all")  # ONCOFLOW_ROUTE_OBJECTS: which SEGs go to the hospital's PACS
REGISTRATION_METHODS = ("elastix", "sitk")


@dataclass(frozen=True)
class DicomPeer:
    """A remote DICOM node allowed to associate with Orthanc, from one IP address, for the commands it is given.

    A store peer (a modality, ``ONCOFLOW_STORE_PEERS``) may only C-STORE (and C-ECHO). A query peer (another
    PACS, a workstation, ``ONCOFLOW_QUERY_PEERS``) has its own C-FIND, C-MOVE and C-GET rights, and is reached
    by DICOM TLS when it is not on this machine. Orthanc checks the caller's AE title and its IP address
    (``DicomCheckModalityHost``) on every association.
    """

    aet: str  # its calling AE title
    host: str = "127.0.0.1"  # the IP address it calls from, and where C-MOVE sends to it
    port: int = 104
    store: bool = True
    find: bool = False
    move: bool = False
    get: bool = False

    @property
    def on_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def rights(self) -> tuple[str, ...]:
        """What the peer may do, as words: ``store``, ``find``, ``move``, ``get``."""
        return tuple(name for name in ("store", *QUERY_RIGHTS) if getattr(self, name))

    @property
    def modality_id(self) -> str:
        """Its key in Orthanc's ``DicomModalities`` (``/modalities/{id}``): the AE title in lower case."""
        return self.aet.lower()


@dataclass(frozen=True)
class LlmSettings:
    """An ollama server that writes the report's clinical summary."""

    host: str  # OLLAMA_HOST, e.g. http://127.0.0.1:11434
    model: str  # ONCOFLOW_LLM_MODEL, e.g. llama3.1:8b
    timeout_s: float = 60.0  # ONCOFLOW_LLM_TIMEOUT_S

    @property
    def is_local(self) -> bool:
        """True when the server is on this machine (loopback); text sent elsewhere is de-identified first."""
        host = self.host.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]").lower()
        return host in ("localhost", "127.0.0.1", "::1")


DEFAULT_OTP_ROLES = frozenset({"admin", "radiologist", "doctor"})


@dataclass(frozen=True)
class AuthSettings:
    """Login through Keycloak (OpenID Connect): every HTTP request to Orthanc needs a valid access token.

    ``ONCOFLOW_AUTH=on`` (the default) or ``off``. With no ``ONCOFLOW_OIDC_ISSUER`` the stack runs its own
    Keycloak on ``127.0.0.1:ONCOFLOW_KEYCLOAK_PORT`` with the ``oncoflow`` realm (``keycloak/``); with one,
    an existing Keycloak realm is used and nothing is started.
    """

    issuer: str  # ONCOFLOW_OIDC_ISSUER: the realm URL, e.g. https://sso.example.org/realms/oncoflow
    audience: str = "orthanc"  # ONCOFLOW_OIDC_AUDIENCE: the `aud` every accepted token must name
    viewer_client_id: str = "ohif"  # ONCOFLOW_OIDC_VIEWER_CLIENT: the viewer's public client (code + PKCE)
    keycloak_port: int | None = None  # ONCOFLOW_KEYCLOAK_PORT: the embedded Keycloak; None for an external one
    leeway_s: float = 30.0  # ONCOFLOW_OIDC_LEEWAY_S: clock skew allowed on exp / iat / nbf
    # ONCOFLOW_OIDC_OTP_ROLES: realm roles whose tokens must show a second factor (``otp`` in the token's
    # ``amr`` claim); empty: none. Keycloak asks these roles for a TOTP code; Orthanc checks it was given.
    otp_roles: frozenset[str] = DEFAULT_OTP_ROLES

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        """The realm's token endpoint (password and client-credentials grants)."""
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def keycloak_url(self) -> str:
        """The Keycloak server (the issuer without ``/realms/<realm>``): its admin API lives there."""
        return self.issuer.rsplit("/realms/", 1)[0]

    @property
    def realm(self) -> str:
        return self.issuer.rsplit("/realms/", 1)[1]


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
    panel: tuple[str, ...]  # ONCOFLOW_PANEL: the experts (model names in the repository), in priority order
    model_weights: dict[str, Path]  # ONCOFLOW_MODEL_WEIGHTS: "model=path,...": weights outside the repository
    fusion: str  # ONCOFLOW_FUSION: majority | staple | weighted | confidence
    fusion_weights: dict[str, float] | None  # ONCOFLOW_FUSION_WEIGHTS: "model=weight,..."
    panel_concurrency: int  # ONCOFLOW_PANEL_CONCURRENCY: expert calls at once (plugin and worker)
    series_preference: tuple[str, ...]  # ONCOFLOW_SERIES_PREFERENCE: e.g. "t1c,t1,flair"
    max_voxels: int  # ONCOFLOW_MAX_VOXELS: larger input volumes are refused
    stable_age_s: int  # ONCOFLOW_STABLE_AGE_S: Orthanc StableAge
    worker_timeout_s: float  # ONCOFLOW_WORKER_TIMEOUT_S: one inference request
    job_max_attempts: int  # ONCOFLOW_JOB_MAX_ATTEMPTS: transient failures before a job fails
    baseline_rule: str = "previous"  # ONCOFLOW_BASELINE: previous | nadir | first
    response_criteria: str = "rano2-volumetric"  # ONCOFLOW_RESPONSE_CRITERIA: one of RESPONSE_CRITERIA
    lesion_join_distance_mm: float = 5.0  # ONCOFLOW_LESION_JOIN_MM: fragments closer than this are one lesion
    tumour_presentation: str = "mixed"  # ONCOFLOW_TUMOUR_PRESENTATION: one of TUMOUR_PRESENTATIONS
    registration_method: str = "elastix"  # ONCOFLOW_REGISTRATION: elastix (SimpleITK fallback) | sitk
    change_thresholds: ChangeThresholds = field(default_factory=ChangeThresholds)  # ONCOFLOW_*_PERCENT, ...
    torch_threads: int = field(default=2)  # ONCOFLOW_TORCH_THREADS: per model call (default cores ÷ concurrency)
    max_upload_bytes: int = 20 * 1024 * 1024  # ONCOFLOW_MAX_UPLOAD_BYTES: one clinical note (PDF or TXT)
    min_free_mb: int = 1024  # ONCOFLOW_MIN_FREE_MB: below this free space under ONCOFLOW_HOME, health is 503, jobs wait
    llm: LlmSettings | None = None  # OLLAMA_HOST + ONCOFLOW_LLM_MODEL: the summary writer; None = deterministic
    signing_key: Path | None = None  # ONCOFLOW_SIGNING_KEY: PEM private key (default <home>/signing/signer.key)
    signing_cert: Path | None = None  # ONCOFLOW_SIGNING_CERT: PEM certificate (default <home>/signing/signer.pem)
    signing_chain: Path | None = None  # ONCOFLOW_SIGNING_CHAIN: PEM issuer chain (default <home>/signing/ca.pem)
    report_institution: str = "OncoFlow development site"  # ONCOFLOW_REPORT_INSTITUTION: report header, signature
    # ONCOFLOW_REPORT_PATIENT_NAME (on/off): the report's header prints PatientName (0010,0010) above the pseudonym
    report_patient_name: bool = False
    # ONCOFLOW_STORE_PEERS ("AET@host[:port],...": may C-STORE) and ONCOFLOW_QUERY_PEERS ("AET@host:port/find+move+get,
    # ..."): the only DICOM peers Orthanc accepts associations from, each from its own IP address, for its rights
    dicom_peers: tuple[DicomPeer, ...] = ()
    # ONCOFLOW_DICOM_TLS_CERT / _KEY / _TRUSTED (PEM): DICOM TLS on the DICOM port (all three, or none)
    dicom_tls: tuple[Path, Path, Path] | None = None
    # ONCOFLOW_AUTH=on|off (default on): token checks on Orthanc's HTTP API; None only when switched off
    auth: AuthSettings | None = None
    # ONCOFLOW_DATABASE_URL (postgresql://user:password@host:port/db): the job queue, job history and timeline in
    # PostgreSQL, shared by every Orthanc and pipeline worker; None: SQLite under ONCOFLOW_HOME (one machine)
    database_url: str | None = None
    job_consumer: bool = True  # ONCOFLOW_JOB_CONSUMER=on|off: Orthanc's plugin runs jobs itself (off: it only queues)
    # ONCOFLOW_WORKER_BIND: the address the inference worker listens on (0.0.0.0 in a container, behind a network
    # only the pipeline reaches; the KServe API has no login)
    worker_bind: str = "127.0.0.1"
    # ONCOFLOW_HTTP_REMOTE_ACCESS=on|off (default off: loopback only): Orthanc's RemoteAccessAllowed, e.g. behind
    # the TLS proxy in another container. Needs login on: every request then carries a checked token.
    http_remote_access: bool = False
    # ONCOFLOW_ORTHANC_PLUGIN_DIR: where Orthanc's plugin libraries are (Debian: /usr/share/orthanc/plugins)
    orthanc_plugin_dir: Path = DEBIAN_ORTHANC_PLUGIN_DIR
    pipeline_workers: int = 0  # ONCOFLOW_PIPELINE_WORKERS: pipeline worker processes `make up` starts (shared queue)
    job_lease_s: float = 60.0  # ONCOFLOW_JOB_LEASE_S: a claimed job's lease, renewed while it runs; then redelivered
    # ONCOFLOW_ORTHANC_URL: where a pipeline worker reaches Orthanc's REST API (default: this stack's HTTP port)
    orthanc_api_url: str | None = None
    # ONCOFLOW_ORTHANC_INDEX_URL (postgresql://...): Orthanc's own index in PostgreSQL (the postgresql plugin), so
    # several Orthanc processes share one index and storage; None: Orthanc's SQLite index under ONCOFLOW_HOME
    orthanc_index_url: str | None = None
    # ONCOFLOW_ORTHANC_STORAGE: Orthanc's DICOM file storage (default <home>/orthanc-storage); several Orthanc
    # processes on one PostgreSQL index must share it (a shared file system)
    orthanc_storage: Path | None = None
    # ONCOFLOW_BRAIN_EXTRACTION: the brain-extraction model of the repository (default "deepbet"), or "off"; the
    # experts that want a skull-stripped input are then skipped, with the reason
    brain_extraction: str | None = "deepbet"
    # ONCOFLOW_DRIVING_REGION: ET (enhancing tumour, default, as RANO 2.0 measures), TC (tumour core) or WT (whole
    # tumour): the region whose volume the change, its flag and the lesion measurements follow
    driving_region: str = "ET"
    # ONCOFLOW_SEQUENCE_PATTERNS: "t1c=<regex>;flair=<regex>": a site's own series names per sequence kind, tried
    # (case-insensitively, on SeriesDescription, ProtocolName and SequenceName) before the usual names
    sequence_patterns: dict[str, str] = field(default_factory=dict)
    # ONCOFLOW_ROUTE_TO ("AET@ip:port"): the hospital's main PACS, which receives every result object OncoFlow
    # stores by C-STORE (Orthanc's job engine; DICOM TLS when not on this machine); None: results stay in Orthanc
    route_to: DicomPeer | None = None
    # ONCOFLOW_ROUTE_OBJECTS: "ensemble" (the fused SEG and refined SEGs) or "all" (every expert's SEG and the brain
    # SEG too); the SR, REG, Encapsulated PDF and rejection notes (KOS) always go
    route_objects: str = "ensemble"
    # ONCOFLOW_ROUTE_RETRY_S: how long a failed C-STORE job is resubmitted (back-off 2 s doubling up to 20 s)
    route_retry_s: float = 3600.0

    @property
    def pipeline_client_path(self) -> Path:
        """The secret of Keycloak's ``oncoflow-pipeline`` service account (JSON, mode 0600): a pipeline worker's
        tokens for Orthanc's API when login is on."""
        return self.home / "secrets" / "keycloak-pipeline.json"

    @property
    def assignments_client_path(self) -> Path:
        """The secret of Keycloak's ``oncoflow-assignments`` service account (JSON, mode 0600)."""
        return self.home / "secrets" / "keycloak-assignments.json"

    @property
    def audit_db_path(self) -> Path:
        """The append-only, hash-chained audit log (:mod:`oncoflow.security.audit_log`)."""
        return self.home / "oncoflow-audit.sqlite3"

    @property
    def pseudonym_key_path(self) -> Path:
        """The installation's secret for patient pseudonyms and audit patient references."""
        return self.home / "secrets" / "pseudonym.key"

    @property
    def rag_dir(self) -> Path:
        """The patients' notes: chromadb's persistent store and the uploaded files' metadata."""
        return self.home / "rag"

    @property
    def signing_dir(self) -> Path:
        """Where ``make up`` creates the development CA and signing certificate when none is configured."""
        return self.home / "signing"

    @property
    def signing_paths(self) -> tuple[Path, Path, Path]:
        """(private key, certificate, issuer chain) used to sign reports."""
        return (self.signing_key or self.signing_dir / "signer.key",
                self.signing_cert or self.signing_dir / "signer.pem",
                self.signing_chain or self.signing_dir / "ca.pem")

    @property
    def orthanc_storage_dir(self) -> Path:
        return self.orthanc_storage or self.home / "orthanc-storage"

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
    def orthanc_log_path(self) -> Path:
        """Orthanc's own log (``--logfile``): OncoFlow reads the DICOM refusals in it
        (:mod:`oncoflow.security.dicom_refusals`)."""
        return self.log_dir / "orthanc-server.log"

    @property
    def orthanc_url(self) -> str:
        """Orthanc's REST API: ``ONCOFLOW_ORTHANC_URL``, or this stack's own port on the loopback."""
        return self.orthanc_api_url or f"http://127.0.0.1:{self.http_port}"

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


def _pairs(env: Mapping[str, str], name: str, errors: list[str]) -> dict[str, str]:
    """``"key=value,key=value"`` as a dict; malformed entries are reported in ``errors``."""
    pairs: dict[str, str] = {}
    for item in (i.strip() for i in env.get(name, "").split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            errors.append(f"{name} entry {item!r} must be model=value")
            continue
        pairs[key.strip()] = value.strip()
    return pairs


def parse_model_weights(env: Mapping[str, str], errors: list[str]) -> dict[str, Path]:
    """``ONCOFLOW_MODEL_WEIGHTS`` as model name -> absolute path (also read by Triton's model.py files)."""
    return {k: Path(v).expanduser().resolve() for k, v in _pairs(env, "ONCOFLOW_MODEL_WEIGHTS", errors).items()}


def _valid_aet(aet: str) -> bool:
    return 1 <= len(aet) <= 16 and aet.isascii() and aet.isprintable() and aet.strip() == aet and "\\" not in aet


def _peer_address(variable: str, item: str, address: str, port_required: bool,
                  errors: list[str]) -> tuple[str, int] | None:
    """``host[:port]`` of a peer entry: an IP address (Orthanc compares the caller's IP as text, so a host name
    would never match) and a port (default 104)."""
    host, _, port_text = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    try:
        port = int(port_text) if port_text else (0 if port_required else 104)
        ipaddress.ip_address(host)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        errors.append(f"{variable} entry {item!r}: the host must be an IP address (Orthanc compares the caller's "
                      f"IP, never a name){' and the port is required' if port_required else ''}")
        return None
    return host, port


def parse_dicom_peers(store_raw: str, query_raw: str, errors: list[str]) -> tuple[DicomPeer, ...]:
    """``ONCOFLOW_STORE_PEERS`` (``AET@host[:port]``) and ``ONCOFLOW_QUERY_PEERS`` (``AET@host:port/find+move+get``),
    entries separated by commas. An AE title in both lists is one peer with both rights (same host required)."""
    peers: dict[str, DicomPeer] = {}
    for variable, raw in (("ONCOFLOW_STORE_PEERS", store_raw), ("ONCOFLOW_QUERY_PEERS", query_raw)):
        query = variable == "ONCOFLOW_QUERY_PEERS"
        for item in (i.strip() for i in raw.split(",")):
            if not item:
                continue
            entry, _, rights_text = item.partition("/")
            aet, _, address = entry.partition("@")
            rights = set(rights_text.split("+")) if rights_text else set()
            if not _valid_aet(aet) or not address or (query and (not rights or not rights <= set(QUERY_RIGHTS))) \
                    or (not query and rights_text):
                form = "AET@host:port/find+move+get (one right at least)" if query else "AET@host[:port]"
                errors.append(f"{variable} entry {item!r} must be {form} (AET: 1-16 ASCII)")
                continue
            located = _peer_address(variable, item, address, query, errors)
            if located is None:
                continue
            peer = DicomPeer(aet, *located, store=not query, **{name: name in rights for name in QUERY_RIGHTS})
            earlier = peers.get(aet)
            if earlier is not None and (earlier.host != peer.host or earlier.store == peer.store):
                errors.append(f"{variable} names AE title {aet} twice, or with another host than before")
                continue
            if earlier is not None:  # a store peer that may also query, from the same host
                peer = DicomPeer(aet, peer.host, peer.port if query else earlier.port, True,
                                 peer.find or earlier.find, peer.move or earlier.move, peer.get or earlier.get)
            peers[aet] = peer
    return tuple(peers.values())


def parse_route_to(raw: str, peers: tuple[DicomPeer, ...], tls: bool, errors: list[str]) -> DicomPeer | None:
    """``ONCOFLOW_ROUTE_TO`` (``AET@ip:port``): the PACS that receives OncoFlow's results, or ``None`` when unset.

    Its AE title may be a configured peer's (the hospital's PACS also queries and retrieves): then on the same IP
    address, and a query peer's port too (C-MOVE to it reaches the same node). Off this machine it needs DICOM TLS.
    """
    item = raw.strip()
    if not item:
        return None
    aet, _, address = item.partition("@")
    if not _valid_aet(aet) or not address or "/" in address:
        errors.append(f"ONCOFLOW_ROUTE_TO={item!r} must be AET@ip:port (AET: 1-16 ASCII)")
        return None
    located = _peer_address("ONCOFLOW_ROUTE_TO", item, address, True, errors)
    if located is None:
        return None
    route = DicomPeer(aet, *located, store=False)
    peer = next((p for p in peers if p.aet == aet), None)
    querying = peer is not None and (peer.find or peer.move or peer.get)
    if peer is not None and (peer.host != route.host or (querying and peer.port != route.port)):
        errors.append(f"ONCOFLOW_ROUTE_TO names peer {aet} with another IP address or port than its peer entry")
    if not route.on_loopback and not tls:
        errors.append(f"ONCOFLOW_ROUTE_TO {aet} is not on this machine: it needs DICOM TLS (set "
                      "ONCOFLOW_DICOM_TLS_CERT, _KEY and _TRUSTED)")
    return route


def _switch(env: Mapping[str, str], name: str, default: bool, errors: list[str]) -> bool:
    """An ``on`` / ``off`` setting."""
    raw = env.get(name, "on" if default else "off").strip().lower()
    if raw not in ("on", "off"):
        errors.append(f"{name}={raw!r} must be on or off")
        return default
    return raw == "on"


def _postgres_url(env: Mapping[str, str], name: str, errors: list[str]) -> str | None:
    """A ``postgresql://`` URL (libpq URI) from ``name``, or ``None`` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")) or "@" not in raw.split("/", 3)[2]:
        errors.append(f"{name} must be postgresql://user:password@host[:port]/database (the value is not shown)")
    return raw


def _auth_settings(env: Mapping[str, str], errors: list[str]) -> AuthSettings | None:
    """``ONCOFLOW_AUTH`` and the OpenID Connect settings (see :class:`AuthSettings`)."""
    mode = env.get("ONCOFLOW_AUTH", "on").strip().lower()
    if mode not in ("on", "off"):
        errors.append(f"ONCOFLOW_AUTH={mode!r} must be on or off")
        return None
    if mode == "off":
        return None
    audience = env.get("ONCOFLOW_OIDC_AUDIENCE", "orthanc").strip() or "orthanc"
    viewer_client = env.get("ONCOFLOW_OIDC_VIEWER_CLIENT", "ohif").strip() or "ohif"
    leeway_s = _float(env, "ONCOFLOW_OIDC_LEEWAY_S", 30.0, 0.0, errors)
    otp_roles = DEFAULT_OTP_ROLES
    if "ONCOFLOW_OIDC_OTP_ROLES" in env:
        otp_roles = frozenset(role.strip() for role in env["ONCOFLOW_OIDC_OTP_ROLES"].split(",") if role.strip())
        if not all(re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", role) for role in otp_roles):
            errors.append("ONCOFLOW_OIDC_OTP_ROLES must list realm role names (a-z 0-9 _ -), separated by commas")
    issuer = env.get("ONCOFLOW_OIDC_ISSUER", "").strip().rstrip("/")
    if issuer:
        if not issuer.startswith(("https://", "http://")) or "/realms/" not in issuer:
            errors.append(f"ONCOFLOW_OIDC_ISSUER={issuer!r} must be a Keycloak realm URL (http[s]://host/realms/NAME)")
        return AuthSettings(issuer, audience, viewer_client, None, leeway_s, otp_roles)
    port = _int(env, "ONCOFLOW_KEYCLOAK_PORT", 8180, 1, 65535, errors)
    return AuthSettings(f"http://127.0.0.1:{port}/realms/oncoflow", audience, viewer_client, port, leeway_s,
                        otp_roles)


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
    if not _valid_aet(aet):
        errors.append(f"ONCOFLOW_AET={aet!r} is not a valid AE title (1-16 ASCII characters)")

    worker_url = env.get("ONCOFLOW_WORKER_URL", f"127.0.0.1:{worker_port}")
    if "://" in worker_url:
        errors.append(f"ONCOFLOW_WORKER_URL={worker_url!r} must be host:port, without a scheme")

    repo = Path(env.get("ONCOFLOW_MODEL_REPOSITORY", str(REPO_ROOT / "inference" / "model_repository")))
    repo = repo.expanduser().resolve()
    if not repo.is_dir():
        errors.append(f"ONCOFLOW_MODEL_REPOSITORY={repo} is not a directory")

    panel = tuple(p.strip() for p in env.get("ONCOFLOW_PANEL", DEFAULT_PANEL).split(",") if p.strip())
    if not panel or len(set(panel)) != len(panel):
        errors.append(f"ONCOFLOW_PANEL={env.get('ONCOFLOW_PANEL')!r} must name one or more distinct models")
    model_weights = parse_model_weights(env, errors)
    raw_brain = env.get("ONCOFLOW_BRAIN_EXTRACTION", "deepbet").strip()
    brain_extraction = None if raw_brain.lower() in ("off", "") else raw_brain
    if brain_extraction in panel:
        errors.append(f"ONCOFLOW_BRAIN_EXTRACTION={brain_extraction} is a preprocessing model, not a panel expert: "
                      "take it out of ONCOFLOW_PANEL")
    driving_region = env.get("ONCOFLOW_DRIVING_REGION", "ET").strip().upper()
    if driving_region not in ("ET", "TC", "WT"):
        errors.append(f"ONCOFLOW_DRIVING_REGION={driving_region!r} is not one of ET, TC, WT")
    fusion = env.get("ONCOFLOW_FUSION", "majority").strip().lower()
    if fusion not in FUSION_STRATEGIES:
        errors.append(f"ONCOFLOW_FUSION={fusion!r} is not one of {', '.join(FUSION_STRATEGIES)}")
    fusion_weights: dict[str, float] | None = None
    raw_weights = _pairs(env, "ONCOFLOW_FUSION_WEIGHTS", errors)
    if raw_weights:
        fusion_weights = {}
        for model, raw in raw_weights.items():
            try:
                fusion_weights[model] = float(raw)
            except ValueError:
                errors.append(f"ONCOFLOW_FUSION_WEIGHTS weight {model}={raw!r} is not a number")
                continue
            if not fusion_weights[model] >= 0:
                errors.append(f"ONCOFLOW_FUSION_WEIGHTS weight {model}={raw} must be non-negative")
        unweighted = [m for m in panel if m not in fusion_weights]
        if unweighted and fusion in ("weighted", "confidence"):
            errors.append(f"ONCOFLOW_FUSION_WEIGHTS gives no weight to panel models {unweighted}")
    elif fusion == "weighted":
        errors.append("ONCOFLOW_FUSION=weighted needs ONCOFLOW_FUSION_WEIGHTS (model=weight,...)")
    # default: up to 3 experts at once (measured best on 2 cores: one torch thread each), never more than the panel
    concurrency = _int(env, "ONCOFLOW_PANEL_CONCURRENCY", max(1, min(3, len(panel))), 1, 64, errors)
    default_threads = max(1, (os.cpu_count() or 1) // max(concurrency, 1))

    raw_preference = env.get("ONCOFLOW_SERIES_PREFERENCE", "t1c,t1,flair")
    preference = tuple(p.strip().lower() for p in raw_preference.split(",") if p.strip())
    unknown = [p for p in preference if p not in SERIES_KINDS]
    if unknown or not preference:
        errors.append(
            f"ONCOFLOW_SERIES_PREFERENCE has unknown kinds {unknown}; choose from {', '.join(SERIES_KINDS)}"
        )

    sequence_patterns: dict[str, str] = {}
    for item in (part.strip() for part in env.get("ONCOFLOW_SEQUENCE_PATTERNS", "").split(";") if part.strip()):
        kind, _, pattern = item.partition("=")
        kind = kind.strip().lower()
        if kind not in SERIES_KINDS or not pattern:
            errors.append(f"ONCOFLOW_SEQUENCE_PATTERNS item {item!r} must be kind=regex with kind one of "
                          f"{', '.join(SERIES_KINDS)}")
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(f"ONCOFLOW_SEQUENCE_PATTERNS {kind}={pattern!r} is no regular expression: {exc}")
            continue
        sequence_patterns[kind] = pattern

    response_criteria = env.get("ONCOFLOW_RESPONSE_CRITERIA", "rano2-volumetric").strip().lower()
    if response_criteria not in RESPONSE_CRITERIA:
        errors.append(f"ONCOFLOW_RESPONSE_CRITERIA={response_criteria!r} is not one of {', '.join(RESPONSE_CRITERIA)}")
    tumour_presentation = env.get("ONCOFLOW_TUMOUR_PRESENTATION", "mixed").strip().lower()
    if tumour_presentation not in TUMOUR_PRESENTATIONS:
        errors.append(f"ONCOFLOW_TUMOUR_PRESENTATION={tumour_presentation!r} is not one of "
                      f"{', '.join(TUMOUR_PRESENTATIONS)}")
    baseline_rule = env.get("ONCOFLOW_BASELINE", "previous").strip().lower()
    if baseline_rule not in BASELINE_RULES:
        errors.append(f"ONCOFLOW_BASELINE={baseline_rule!r} is not one of {', '.join(BASELINE_RULES)}")
    registration_method = env.get("ONCOFLOW_REGISTRATION", "elastix").strip().lower()
    if registration_method not in REGISTRATION_METHODS:
        errors.append(f"ONCOFLOW_REGISTRATION={registration_method!r} is not one of {', '.join(REGISTRATION_METHODS)}")
    defaults = ChangeThresholds()
    thresholds = ChangeThresholds(
        progression_percent=_float(env, "ONCOFLOW_PROGRESSION_PERCENT", defaults.progression_percent, 0.0, errors),
        response_percent=-_float(env, "ONCOFLOW_RESPONSE_PERCENT", -defaults.response_percent, 0.0, errors),
        stable_percent=_float(env, "ONCOFLOW_STABLE_PERCENT", defaults.stable_percent, 0.0, errors),
        min_registration_ncc=_float(env, "ONCOFLOW_MIN_REGISTRATION_NCC", defaults.min_registration_ncc, -1.0, errors),
    )
    if "ONCOFLOW_MAX_CI_TO_CHANGE" in env:
        errors.append("ONCOFLOW_MAX_CI_TO_CHANGE is gone: the change is flagged 'high uncertainty' when its 95% "
                      "interval straddles the progression or response threshold (ONCOFLOW_PROGRESSION_PERCENT, "
                      "ONCOFLOW_RESPONSE_PERCENT)")
    if thresholds.stable_percent >= min(thresholds.progression_percent, -thresholds.response_percent):
        errors.append("ONCOFLOW_STABLE_PERCENT must be below the progression and response thresholds")

    llm: LlmSettings | None = None
    ollama_host = env.get("OLLAMA_HOST", "").strip()
    llm_model = env.get("ONCOFLOW_LLM_MODEL", "").strip()
    if ollama_host and llm_model:
        if "://" not in ollama_host:
            ollama_host = f"http://{ollama_host}"
        llm = LlmSettings(ollama_host, llm_model, _float(env, "ONCOFLOW_LLM_TIMEOUT_S", 60.0, 1.0, errors))
    elif llm_model:
        errors.append("ONCOFLOW_LLM_MODEL is set but OLLAMA_HOST is not: set both, or neither for the "
                      "deterministic summary")
    signing = {name: Path(env[var]).expanduser().resolve() if env.get(var) else None
               for name, var in (("key", "ONCOFLOW_SIGNING_KEY"), ("cert", "ONCOFLOW_SIGNING_CERT"),
                                 ("chain", "ONCOFLOW_SIGNING_CHAIN"))}
    given = [name for name, path in signing.items() if path is not None]
    if given and len(given) != 3:
        errors.append("ONCOFLOW_SIGNING_KEY, ONCOFLOW_SIGNING_CERT and ONCOFLOW_SIGNING_CHAIN go together: "
                      f"only {', '.join(given)} set")
    for name, path in signing.items():
        if path is not None and not path.is_file():
            errors.append(f"ONCOFLOW_SIGNING_{name.upper()}={path} is not a file")

    tls = [env.get(v, "").strip() for v in ("ONCOFLOW_DICOM_TLS_CERT", "ONCOFLOW_DICOM_TLS_KEY",
                                             "ONCOFLOW_DICOM_TLS_TRUSTED")]
    dicom_tls: tuple[Path, Path, Path] | None = None
    if any(tls):
        paths = [Path(t).expanduser().resolve() for t in tls if t]
        missing = [p for p in paths if not p.is_file()]
        if len(paths) != 3 or missing:
            errors.append("ONCOFLOW_DICOM_TLS_CERT, _KEY and _TRUSTED must all name PEM files"
                          + (f" (missing: {', '.join(map(str, missing))})" if missing else ""))
        else:
            dicom_tls = (paths[0], paths[1], paths[2])

    if "ONCOFLOW_ALLOWED_AETS" in env:
        errors.append("ONCOFLOW_ALLOWED_AETS is now ONCOFLOW_STORE_PEERS (store only, AET@host[:port]); query and "
                      "retrieve peers go in ONCOFLOW_QUERY_PEERS (AET@host:port/find+move+get)")
    dicom_peers = parse_dicom_peers(env.get("ONCOFLOW_STORE_PEERS", DEFAULT_STORE_PEERS),
                                    env.get("ONCOFLOW_QUERY_PEERS", ""), errors)
    remote_queries = [p.aet for p in dicom_peers if (p.find or p.move or p.get) and not p.on_loopback]
    if remote_queries and dicom_tls is None and not any("ONCOFLOW_DICOM_TLS" in e for e in errors):
        errors.append(f"query peers off this machine ({', '.join(remote_queries)}) need DICOM TLS: set "
                      "ONCOFLOW_DICOM_TLS_CERT, _KEY and _TRUSTED")
    route_to = parse_route_to(env.get("ONCOFLOW_ROUTE_TO", ""), dicom_peers,
                              dicom_tls is not None or any("ONCOFLOW_DICOM_TLS" in e for e in errors), errors)
    route_objects = env.get("ONCOFLOW_ROUTE_OBJECTS", "ensemble").strip().lower()
    if route_objects not in ROUTE_OBJECTS:
        errors.append(f"ONCOFLOW_ROUTE_OBJECTS={route_objects!r} is not one of {', '.join(ROUTE_OBJECTS)}")
    auth = _auth_settings(env, errors)
    database_url = _postgres_url(env, "ONCOFLOW_DATABASE_URL", errors)
    orthanc_index_url = _postgres_url(env, "ONCOFLOW_ORTHANC_INDEX_URL", errors)
    job_consumer = _switch(env, "ONCOFLOW_JOB_CONSUMER", True, errors)
    if not job_consumer and database_url is None:
        errors.append("ONCOFLOW_JOB_CONSUMER=off needs ONCOFLOW_DATABASE_URL: with the SQLite queue nobody else "
                      "could run the jobs")
    remote_access = _switch(env, "ONCOFLOW_HTTP_REMOTE_ACCESS", False, errors)
    if remote_access and auth is None:
        errors.append("ONCOFLOW_HTTP_REMOTE_ACCESS=on needs login (ONCOFLOW_AUTH=on): Orthanc's API would be open "
                      "to the network")
    pipeline_workers = _int(env, "ONCOFLOW_PIPELINE_WORKERS", 0, 0, 64, errors)
    if pipeline_workers and database_url is None:
        errors.append("ONCOFLOW_PIPELINE_WORKERS needs ONCOFLOW_DATABASE_URL: pipeline workers share the "
                      "PostgreSQL queue")
    orthanc_api_url = env.get("ONCOFLOW_ORTHANC_URL", "").strip().rstrip("/") or None
    if orthanc_api_url is not None and not orthanc_api_url.startswith(("http://", "https://")):
        errors.append(f"ONCOFLOW_ORTHANC_URL={orthanc_api_url!r} must be an http(s):// URL")

    settings = Settings(
        home=home,
        http_port=http_port,
        dicom_port=dicom_port,
        aet=aet,
        worker_port=worker_port,
        worker_url=worker_url,
        model_repository=repo,
        panel=panel,
        brain_extraction=brain_extraction,
        driving_region=driving_region,
        sequence_patterns=sequence_patterns,
        model_weights=model_weights,
        fusion=fusion,
        fusion_weights=fusion_weights,
        panel_concurrency=concurrency,
        series_preference=preference,
        max_voxels=_int(env, "ONCOFLOW_MAX_VOXELS", 512 * 512 * 400, 1, 2**31 - 1, errors),
        stable_age_s=_int(env, "ONCOFLOW_STABLE_AGE_S", 3, 1, 3600, errors),
        worker_timeout_s=_float(env, "ONCOFLOW_WORKER_TIMEOUT_S", 300.0, 1.0, errors),
        job_max_attempts=_int(env, "ONCOFLOW_JOB_MAX_ATTEMPTS", 20, 1, 1000, errors),
        baseline_rule=baseline_rule,
        response_criteria=response_criteria,
        tumour_presentation=tumour_presentation,
        lesion_join_distance_mm=_float(env, "ONCOFLOW_LESION_JOIN_MM", 5.0, 0.0, errors),
        registration_method=registration_method,
        change_thresholds=thresholds,
        torch_threads=_int(env, "ONCOFLOW_TORCH_THREADS", default_threads, 1, 256, errors),
        max_upload_bytes=_int(env, "ONCOFLOW_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, 1024, 2**31 - 1, errors),
        min_free_mb=_int(env, "ONCOFLOW_MIN_FREE_MB", 1024, 0, 2**31 - 1, errors),
        llm=llm,
        signing_key=signing["key"],
        signing_cert=signing["cert"],
        signing_chain=signing["chain"],
        report_institution=env.get("ONCOFLOW_REPORT_INSTITUTION", "OncoFlow development site").strip()
        or "OncoFlow development site",
        report_patient_name=_switch(env, "ONCOFLOW_REPORT_PATIENT_NAME", False, errors),
        dicom_peers=dicom_peers,
        dicom_tls=dicom_tls,
        auth=auth,
        database_url=database_url,
        job_consumer=job_consumer,
        pipeline_workers=pipeline_workers,
        worker_bind=env.get("ONCOFLOW_WORKER_BIND", "127.0.0.1").strip() or "127.0.0.1",
        http_remote_access=remote_access,
        orthanc_plugin_dir=Path(env.get("ONCOFLOW_ORTHANC_PLUGIN_DIR", "").strip() or DEBIAN_ORTHANC_PLUGIN_DIR),
        job_lease_s=_float(env, "ONCOFLOW_JOB_LEASE_S", 60.0, 3.0, errors),
        orthanc_api_url=orthanc_api_url,
        orthanc_index_url=orthanc_index_url,
        orthanc_storage=Path(env["ONCOFLOW_ORTHANC_STORAGE"]).expanduser().resolve()
        if env.get("ONCOFLOW_ORTHANC_STORAGE", "").strip() else None,
        route_to=route_to,
        route_objects=route_objects,
        route_retry_s=_float(env, "ONCOFLOW_ROUTE_RETRY_S", 3600.0, 1.0, errors),
    )
    if errors:
        raise ConfigError("invalid OncoFlow configuration:\n  - " + "\n  - ".join(errors))
    return settings
