"""Settings from the environment: defaults, the panel and fusion settings, and one message for all errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oncoflow.core.config import DEFAULT_PANEL, REPO_ROOT, ConfigError, load_settings


def settings(**env: str):
    return load_settings({"ONCOFLOW_HOME": "/tmp/oncoflow-config-test", **env})


def test_defaults() -> None:
    s = settings()
    assert (s.http_port, s.dicom_port, s.aet) == (8042, 4242, "ONCOFLOW")
    assert s.panel == tuple(DEFAULT_PANEL.split(","))
    assert s.fusion == "majority" and s.fusion_weights is None and s.model_weights == {}
    assert s.model_repository == REPO_ROOT / "inference" / "model_repository"
    assert s.torch_threads >= 1 and s.panel_concurrency == 3
    single = settings(ONCOFLOW_PANEL="nnunet_demo")
    assert single.panel_concurrency == 1 and single.torch_threads == max(1, os.cpu_count() or 1)


def test_panel_weights_and_fusion() -> None:
    s = settings(ONCOFLOW_PANEL="a, b", ONCOFLOW_FUSION="WEIGHTED", ONCOFLOW_FUSION_WEIGHTS="a=2, b=0.5",
                 ONCOFLOW_MODEL_WEIGHTS="a=/models/brats,sam2=~/sam2.pt")
    assert s.panel == ("a", "b") and s.fusion == "weighted"
    assert s.fusion_weights == {"a": 2.0, "b": 0.5}
    assert s.model_weights["a"] == Path("/models/brats")
    assert s.model_weights["sam2"] == Path("~/sam2.pt").expanduser()


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        settings(ONCOFLOW_HTTP_PORT="x", ONCOFLOW_FUSION="vote", ONCOFLOW_PANEL="a,a",
                 ONCOFLOW_FUSION_WEIGHTS="a=heavy,b", ONCOFLOW_MODEL_WEIGHTS="nopath=",
                 ONCOFLOW_PANEL_CONCURRENCY="0")
    message = str(info.value)
    for fragment in ("ONCOFLOW_HTTP_PORT='x' is not an integer", "ONCOFLOW_FUSION='vote' is not one of",
                     "must name one or more distinct models", "weight a='heavy' is not a number",
                     "entry 'b' must be model=value", "entry 'nopath=' must be model=value",
                     "ONCOFLOW_PANEL_CONCURRENCY=0 is outside 1..64"):
        assert fragment in message, message


def test_weighted_fusion_needs_a_weight_per_expert() -> None:
    with pytest.raises(ConfigError, match="needs ONCOFLOW_FUSION_WEIGHTS"):
        settings(ONCOFLOW_FUSION="weighted")
    with pytest.raises(ConfigError, match=r"gives no weight to panel models \['b'\]"):
        settings(ONCOFLOW_PANEL="a,b", ONCOFLOW_FUSION="weighted", ONCOFLOW_FUSION_WEIGHTS="a=1")


def test_llm_and_signing_settings() -> None:
    settings = load_settings({"OLLAMA_HOST": "10.1.2.3:11434", "ONCOFLOW_LLM_MODEL": "llama3.1:8b"})
    assert settings.llm is not None and settings.llm.host == "http://10.1.2.3:11434" and not settings.llm.is_local
    assert load_settings({"OLLAMA_HOST": "http://localhost:11434", "ONCOFLOW_LLM_MODEL": "m"}).llm.is_local
    assert load_settings({}).llm is None
    key, cert, chain = load_settings({"ONCOFLOW_HOME": "/srv/of"}).signing_paths
    assert (key, cert, chain) == (Path("/srv/of/signing/signer.key"), Path("/srv/of/signing/signer.pem"),
                                  Path("/srv/of/signing/ca.pem"))
    with pytest.raises(ConfigError) as error:
        load_settings({"ONCOFLOW_LLM_MODEL": "m", "ONCOFLOW_SIGNING_KEY": "/nonexistent.key",
                       "ONCOFLOW_MAX_UPLOAD_BYTES": "10"})
    message = str(error.value)
    assert "OLLAMA_HOST is not" in message and "go together" in message and "/nonexistent.key is not a file" in message
    assert "ONCOFLOW_MAX_UPLOAD_BYTES=10 is outside" in message


def test_dicom_ingress_settings_reach_orthanc(tmp_path: Path) -> None:
    from oncoflow.services.orthanc_config import orthanc_configuration

    settings = load_settings({"ONCOFLOW_STORE_PEERS": "MRI_3T@10.1.1.7:11112,WS1@127.0.0.1",
                              "ONCOFLOW_QUERY_PEERS": "WS1@127.0.0.1:11112/find+get,VIEWER@127.0.0.1:104/move",
                              "ONCOFLOW_HOME": str(tmp_path)})
    config = orthanc_configuration(settings)
    for command in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move"):  # no one is let in by default
        assert config[f"DicomAlwaysAllow{command}"] is False, command
    assert config["DicomCheckCalledAet"] is True and config["DicomCheckModalityHost"] is True
    nothing = {"AllowFind": False, "AllowFindWorklist": False, "AllowMove": False, "AllowGet": False,
               "AllowStorageCommitment": False, "UseDicomTls": False}
    assert config["DicomModalities"]["mri_3t"] == {"AET": "MRI_3T", "Host": "10.1.1.7", "Port": 11112,
                                                   "AllowEcho": True, "AllowStore": True, **nothing}
    assert config["DicomModalities"]["ws1"] == {"AET": "WS1", "Host": "127.0.0.1", "Port": 11112,
                                                "AllowEcho": True, "AllowStore": True,
                                                **nothing, "AllowFind": True, "AllowGet": True}
    assert config["DicomModalities"]["viewer"] == {"AET": "VIEWER", "Host": "127.0.0.1", "Port": 104,
                                                   "AllowEcho": True, "AllowStore": False, **nothing,
                                                   "AllowMove": True}
    assert set(config["DicomModalities"]) == {"mri_3t", "ws1", "viewer"} and "DicomTlsEnabled" not in config
    pem = [tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem")]
    for path in pem:
        path.write_text("-----BEGIN-----\n")
    tls_env = {"ONCOFLOW_DICOM_TLS_CERT": str(pem[0]), "ONCOFLOW_DICOM_TLS_KEY": str(pem[1]),
               "ONCOFLOW_DICOM_TLS_TRUSTED": str(pem[2])}
    tls = load_settings({**tls_env, "ONCOFLOW_QUERY_PEERS": "MAINPACS@10.0.0.5:104/find+move"})
    assert orthanc_configuration(tls)["DicomTlsPrivateKey"] == str(pem[1])
    assert orthanc_configuration(tls)["DicomModalities"]["mainpacs"]["UseDicomTls"] is True  # off this machine
    with pytest.raises(ConfigError, match="_TRUSTED must all name PEM files"):
        load_settings({"ONCOFLOW_DICOM_TLS_CERT": str(pem[0])})


@pytest.mark.parametrize(("env", "message"), [
    ({"ONCOFLOW_STORE_PEERS": "A_VERY_LONG_AE_TITLE_X@127.0.0.1"}, "must be AET@host"),
    ({"ONCOFLOW_STORE_PEERS": "MRI"}, "must be AET@host"),  # a store peer names the host it calls from
    ({"ONCOFLOW_STORE_PEERS": "MRI@mri.example.org"}, "must be an IP address"),
    ({"ONCOFLOW_STORE_PEERS": "MRI@10.0.0.1/find"}, "must be AET@host"),  # a store peer has no query rights
    ({"ONCOFLOW_QUERY_PEERS": "PACS@127.0.0.1:104"}, "one right at least"),
    ({"ONCOFLOW_QUERY_PEERS": "PACS@127.0.0.1:104/find+delete"}, "one right at least"),
    ({"ONCOFLOW_QUERY_PEERS": "PACS@127.0.0.1/find"}, "the port is required"),
    ({"ONCOFLOW_QUERY_PEERS": "PACS@10.0.0.5:104/find"}, "need DICOM TLS"),  # off this machine, no TLS
    ({"ONCOFLOW_STORE_PEERS": "WS@127.0.0.1", "ONCOFLOW_QUERY_PEERS": "WS@127.0.0.2:104/find"}, "another host"),
    ({"ONCOFLOW_ALLOWED_AETS": "STORESCU"}, "is now ONCOFLOW_STORE_PEERS"),
    ({"ONCOFLOW_MAX_CI_TO_CHANGE": "0.15"}, "straddles the progression or response threshold"),
])
def test_bad_dicom_peers_are_refused_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_login_is_on_by_default_with_the_embedded_keycloak() -> None:
    auth = settings().auth
    assert auth is not None and auth.keycloak_port == 8180 and auth.audience == "orthanc"
    assert (auth.issuer, auth.keycloak_url, auth.realm) == (
        "http://127.0.0.1:8180/realms/oncoflow", "http://127.0.0.1:8180", "oncoflow")
    assert auth.jwks_url == "http://127.0.0.1:8180/realms/oncoflow/protocol/openid-connect/certs"
    assert settings(ONCOFLOW_AUTH="off").auth is None
    external = settings(ONCOFLOW_OIDC_ISSUER="https://sso.example.org/realms/radiology/").auth
    assert external is not None and external.keycloak_port is None  # nothing to start: the site's own Keycloak
    assert external.issuer == "https://sso.example.org/realms/radiology"
    with pytest.raises(ConfigError) as error:
        settings(ONCOFLOW_AUTH="maybe", ONCOFLOW_OIDC_ISSUER="sso.example.org")
    assert "ONCOFLOW_AUTH='maybe' must be on or off" in str(error.value)
    with pytest.raises(ConfigError, match="must be a Keycloak realm URL"):
        settings(ONCOFLOW_OIDC_ISSUER="sso.example.org")


def test_scale_out_settings_are_checked_together() -> None:
    url = "postgresql://oncoflow:s3cret@db:5432/oncoflow"
    s = settings(ONCOFLOW_DATABASE_URL=url, ONCOFLOW_JOB_CONSUMER="off", ONCOFLOW_PIPELINE_WORKERS="2",
                 ONCOFLOW_JOB_LEASE_S="6")
    assert (s.database_url, s.job_consumer, s.pipeline_workers, s.job_lease_s) == (url, False, 2, 6.0)
    defaults = settings()
    assert defaults.database_url is None and defaults.job_consumer and defaults.pipeline_workers == 0
    with pytest.raises(ConfigError) as caught:
        settings(ONCOFLOW_JOB_CONSUMER="maybe", ONCOFLOW_PIPELINE_WORKERS="1",
                 ONCOFLOW_ORTHANC_INDEX_URL="mysql://orthanc:hunter2@db/index", ONCOFLOW_JOB_LEASE_S="1")
    message = str(caught.value)
    assert "ONCOFLOW_JOB_CONSUMER='maybe' must be on or off" in message
    assert "ONCOFLOW_PIPELINE_WORKERS needs ONCOFLOW_DATABASE_URL" in message
    assert "ONCOFLOW_ORTHANC_INDEX_URL must be postgresql://" in message and "hunter2" not in message
    assert "ONCOFLOW_JOB_LEASE_S" in message
    with pytest.raises(ConfigError, match="ONCOFLOW_JOB_CONSUMER=off needs ONCOFLOW_DATABASE_URL"):
        settings(ONCOFLOW_JOB_CONSUMER="off")


def test_report_patient_name_is_off_unless_switched_on() -> None:
    assert settings().report_patient_name is False
    assert settings(ONCOFLOW_REPORT_PATIENT_NAME="on").report_patient_name is True
    with pytest.raises(ConfigError, match="ONCOFLOW_REPORT_PATIENT_NAME='yes' must be on or off"):
        settings(ONCOFLOW_REPORT_PATIENT_NAME="yes")
