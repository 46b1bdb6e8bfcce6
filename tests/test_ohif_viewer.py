"""The OHIF viewer's preparation (re-rooting to /ohif/) and its routes' file logic, on a tiny fake dist.

No network and no Orthanc: the rules run on files shaped like the pinned package's, ``npm`` is a
stand-in script, and the routes' answers are computed by :class:`ViewerFiles` and :func:`forward_qido`.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest

from oncoflow.api.qido_proxy import forward_qido, qido_uri
from oncoflow.api.viewer_files import (
    IMMUTABLE,
    REVALIDATE,
    ViewerFiles,
    cache_control,
    content_type,
    has_file_extension,
    safe_file,
)
from oncoflow.core.config import AuthSettings
from oncoflow.services import ohif_viewer
from oncoflow.services.ohif_viewer import (
    BASE_PATH,
    MARKER_NAME,
    REROOT_RULES,
    OhifPrepareError,
    apply_reroot_rules,
    ensure_ohif_dist,
    is_fresh,
    npm_pack,
    prepare_dist,
    prepared_dir,
    sri_sha512,
)

APP_BUNDLE = "app.bundle.0f6159c501addfe9.js"
WORKERS = ["136.bundle.b948da0438a0a660.js", "compute.bundle.0fc3a3ee85296cf2.js",
           "histogram-worker.bundle.ec5f0cf05ce3909c.js", "interpolation.bundle.fa54018d8628f8c0.js",
           "polySeg.bundle.2c5892e4c5a6bdd5.js", "2299.bundle.2375af8b16a1702e.js", "8097.bundle.8ae6404ba94890a0.js"]


def fake_dist_files() -> dict[str, str]:
    """Files with as many occurrences of each pattern as the pinned @ohif/app 3.13.2 has."""
    assets = "".join(f'<link rel="icon" href="/assets/icon-{i}.png">' for i in range(26))
    index = ('<meta name="msapplication-TileImage" content="/assets/mstile.png">'
             '<meta name="msapplication-config" content="/assets/browserconfig.xml">'
             '<script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">' + assets +
             '<script src="/app-config.js"></script><script type="module" src="/init-service-worker.js"></script>'
             '<script>window.PUBLIC_URL="/"</script><script defer src="/app.bundle.0f6159c501addfe9.js"></script>'
             '<link href="/app.bundle.css" rel="stylesheet"><a href="//cdn.example/x">protocol-relative</a>')
    manifest = json.dumps({"icons": [{"src": f"/assets/android-{i}.png"} for i in range(9)],
                           "start_url": "./index.html"}, indent=2)
    files = {
        "index.html": index,
        "manifest.json": manifest,
        "app.bundle.css": "".join(f"@font-face{{src:url(/a34f9d1faa5f3315.woff2)}} /*{i}*/" for i in range(5))
        + "a{background:url(//cdn.example/x.png)}",
        APP_BUNDLE: '__webpack_require__.p = "/";\n'
                    "const imported = await window.browserImportFunction('/dicom-microscopy-viewer/viewer.min.js');\n"
                    "const uri = firstOpenIdClient.silent_redirect_uri || '/silent-refresh.html';\n",
        "oidc-client.min.js": "__webpack_require__.p = '';",
        "app-config.js": "window.config = {};",
        "sw.js": "self.addEventListener('fetch', () => {});",
        "serve.json": "{}",
        "init-service-worker.js": "navigator.serviceWorker.getRegistrations();",
        "assets/icon-0.png": "png",
    }
    files.update({name: f'(() => {{ __webpack_require__.p = "/"; /* {name} */ }})();' for name in WORKERS})
    return files


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_tarball(path: Path, files: dict[str, str], extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in {"package/package.json": "{}", **{f"package/dist/{k}": v for k, v in files.items()}}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def test_every_rule_applies_to_a_dist_shaped_like_the_package(tmp_path: Path) -> None:
    write_files(tmp_path, fake_dist_files())
    counts = apply_reroot_rules(tmp_path)
    assert counts == {rule.name: rule.expected_count for rule in REROOT_RULES}

    index = (tmp_path / "index.html").read_text()
    assert index.count('window.PUBLIC_URL="/ohif/"') == 2
    assert 'src="/ohif/app.bundle.0f6159c501addfe9.js"' in index and 'href="/ohif/app.bundle.css"' in index
    assert 'src="/ohif/app-config.js"' in index and 'href="/ohif/manifest.json"' in index
    assert 'content="/ohif/assets/mstile.png"' in index
    assert '="/assets' not in index and 'src="/app' not in index
    assert 'href="//cdn.example/x"' in index  # protocol-relative URLs are not paths of ours
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {icon["src"][:13] for icon in manifest["icons"]} == {"/ohif/assets/"}
    assert manifest["start_url"] == BASE_PATH
    css = (tmp_path / "app.bundle.css").read_text()
    assert css.count("url(/ohif/a34f9d1faa5f3315.woff2)") == 5 and "url(//cdn.example/x.png)" in css
    bundle = (tmp_path / APP_BUNDLE).read_text()
    assert '__webpack_require__.p = "/ohif/";' in bundle
    assert "browserImportFunction('/ohif/dicom-microscopy-viewer/viewer.min.js')" in bundle
    assert "|| '/ohif/silent-refresh.html'" in bundle
    for worker in WORKERS:
        assert '__webpack_require__.p = "/ohif/";' in (tmp_path / worker).read_text()
    assert (tmp_path / "oidc-client.min.js").read_text() == "__webpack_require__.p = '';"


@pytest.mark.parametrize("rule", REROOT_RULES, ids=lambda r: r.name)
def test_a_rule_whose_pattern_is_missing_fails_and_writes_nothing(tmp_path: Path, rule: ohif_viewer.RerootRule
                                                                  ) -> None:
    write_files(tmp_path, fake_dist_files())
    for path in tmp_path.glob(rule.glob):  # a version bump that dropped or renamed this pattern
        path.write_text(re.sub(rule.pattern, "<moved>", path.read_text()))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(OhifPrepareError, match=re.escape(rule.name)):
        apply_reroot_rules(tmp_path)
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def test_a_rule_found_more_often_than_expected_fails(tmp_path: Path) -> None:
    files = fake_dist_files()
    files["extra-worker.bundle.0123456789abcdef.js"] = '__webpack_require__.p = "/";'  # a new worker
    write_files(tmp_path, files)
    with pytest.raises(OhifPrepareError, match="webpack publicPath: 9 replacements, expected 8"):
        apply_reroot_rules(tmp_path)


def test_prepare_extracts_dist_drops_files_and_marks_the_tree(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "app.tgz", fake_dist_files())
    tree = tmp_path / "tree"
    prepare_dist(tarball, tree)
    assert (tree / "index.html").is_file() and (tree / "assets" / "icon-0.png").read_text() == "png"
    assert not (tree / "app-config.js").exists() and not (tree / "sw.js").exists()
    assert not (tree / "serve.json").exists() and (tree / "init-service-worker.js").exists()
    assert not (tree / "package.json").exists()  # only package/dist is extracted
    assert is_fresh(tree)
    marker = json.loads((tree / MARKER_NAME).read_text())
    assert marker["version"] == ohif_viewer.OHIF_VERSION and marker["base_path"] == BASE_PATH
    assert marker["replacements"]["webpack publicPath"] == 8


def test_a_changed_rule_or_version_makes_the_tree_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    prepare_dist(make_tarball(tmp_path / "app.tgz", fake_dist_files()), tree)
    assert is_fresh(tree) and not is_fresh(tree, version="9.9.9")
    other_rule = ohif_viewer.RerootRule("x", "x", "y", "z", 0)
    monkeypatch.setattr(ohif_viewer, "REROOT_RULES", (*REROOT_RULES[:-1], other_rule))
    assert not is_fresh(tree)
    monkeypatch.setattr(ohif_viewer, "REROOT_RULES", REROOT_RULES)
    monkeypatch.setattr(ohif_viewer, "DROPPED_FILES", ("sw.js",))
    assert not is_fresh(tree)


@pytest.mark.parametrize("member", ["link", "parent", "absolute"])
def test_unsafe_tarball_members_are_refused(tmp_path: Path, member: str) -> None:
    info = tarfile.TarInfo({"link": "package/dist/evil", "parent": "package/dist/../../evil",
                            "absolute": "package/dist//etc/evil"}[member])
    if member == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.size = 1
    tarball = make_tarball(tmp_path / "app.tgz", fake_dist_files(), [info])
    with pytest.raises(OhifPrepareError):
        prepare_dist(tarball, tmp_path / "tree")
    assert not (tmp_path / "evil").exists()


def fake_npm(bin_dir: Path, tarball: Path, integrity: str, calls: Path) -> None:
    """An ``npm`` that 'packs' ``tarball`` into --pack-destination and reports ``integrity``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "npm"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
while [ "$1" != "--pack-destination" ]; do shift; done
cp {tarball} "$2/ohif-app.tgz"
echo '[{{"filename": "ohif-app.tgz", "integrity": "{integrity}"}}]'
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_ensure_packs_once_then_reuses_the_fresh_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = make_tarball(tmp_path / "app.tgz", fake_dist_files())
    calls = tmp_path / "npm-calls"
    fake_npm(tmp_path / "bin", tarball, sri_sha512(tarball), calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(ohif_viewer, "OHIF_INTEGRITY", sri_sha512(tarball))
    cache = tmp_path / "cache"
    root = ensure_ohif_dist(cache)
    assert root == prepared_dir(cache) and root.name == f"ohif-{ohif_viewer.OHIF_VERSION}-at-ohif"
    assert 'window.PUBLIC_URL="/ohif/"' in (root / "index.html").read_text()
    assert calls.read_text().split()[:4] == ["pack", "@ohif/app@3.13.2", "--json", "--pack-destination"]
    assert ensure_ohif_dist(cache) == root and len(calls.read_text().splitlines()) == 1  # fresh: no npm
    (root / MARKER_NAME).write_text("{}")  # stale
    assert ensure_ohif_dist(cache) == root and len(calls.read_text().splitlines()) == 2
    assert is_fresh(root) and [p.name for p in cache.iterdir() if p.name.startswith(".ohif-")] == [
        ".ohif-prepare.lock"]  # no scratch or old tree left behind


def test_npm_pack_refuses_a_tarball_with_another_integrity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = make_tarball(tmp_path / "app.tgz", fake_dist_files())
    fake_npm(tmp_path / "bin", tarball, sri_sha512(tarball), tmp_path / "calls")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(OhifPrepareError, match="integrity"):
        npm_pack(destination)  # the pinned 3.13.2 integrity, not this tarball's
    assert npm_pack(destination, integrity=sri_sha512(tarball)).name == "ohif-app.tgz"


# -- the routes' file logic -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("app.bundle.0f6159c501addfe9.js", "text/javascript; charset=utf-8"),
    ("oncoflow-mode.mjs", "text/javascript; charset=utf-8"),
    ("0ddf166f7a343eda.wasm", "application/wasm"),
    ("app.bundle.css", "text/css; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
    ("manifest.json", "application/json"),
    ("ohif-logo.svg", "image/svg+xml"),
    ("assets/favicon-16x16.png", "image/png"),
    ("a34f9d1faa5f3315.woff2", "font/woff2"),
    ("assets/favicon.ico", "image/x-icon"),
    ("ort/model.UNKNOWN", "application/octet-stream"),
])
def test_content_types(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("app.bundle.0f6159c501addfe9.js", IMMUTABLE),
    ("100.bundle.cb02411ce321d4e4.js", IMMUTABLE),
    ("0ddf166f7a343eda.wasm", IMMUTABLE),
    ("a34f9d1faa5f3315.woff2", IMMUTABLE),
    ("index.html", REVALIDATE),
    ("app-config.js", REVALIDATE),
    ("app.bundle.css", REVALIDATE),
    ("1602.css", REVALIDATE),
    ("ort/ort-wasm-simd.jsep.wasm", REVALIDATE),
])
def test_cache_control(name: str, expected: str) -> None:
    assert cache_control(name) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("viewer", False), ("oncoflow-review", False), ("segmentation", False), ("", False),
    ("viewer/1.2.840.113619", False), ("app.js", True), ("assets/favicon.ico", True), ("x.woff2", True),
])
def test_file_extension_versus_client_route(path: str, expected: bool) -> None:
    assert has_file_extension(path) is expected


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    write_files(root, {"index.html": "<html>index</html>", "app.bundle.0f6159c501addfe9.js": "bundle",
                       "assets/logo.svg": "<svg/>", MARKER_NAME: "{}"})
    (tmp_path / "secret.txt").write_text("outside")
    (root / "assets" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.parametrize("path", ["../secret.txt", "assets/../../secret.txt", "/etc/passwd", MARKER_NAME,
                                  "assets/escape.txt", "assets", "", "assets//logo.svg", "a\\..\\secret.txt"])
def test_safe_file_refuses_paths_outside_the_tree(dist: Path, path: str) -> None:
    assert safe_file(dist, path) is None


def test_safe_file_finds_files_inside(dist: Path) -> None:
    assert safe_file(dist, "assets/logo.svg") == (dist / "assets" / "logo.svg").resolve()


@pytest.fixture
def files(dist: Path, tmp_path: Path) -> ViewerFiles:
    (tmp_path / "app-config.js").write_text("window.config = {};")
    (tmp_path / "modules").mkdir()
    return ViewerFiles(lambda: dist, tmp_path / "app-config.js", tmp_path / "modules")


@pytest.mark.parametrize("route", ["", "viewer", "oncoflow-review", "segmentation", "viewer/dicomweb"])
def test_client_routes_get_index_html(files: ViewerFiles, route: str) -> None:
    answer = files.answer(route)
    assert (answer.status, answer.body, answer.content_type) == (200, b"<html>index</html>", content_type("x.html"))
    assert answer.headers["Cache-Control"] == REVALIDATE


@pytest.mark.parametrize("path", ["../secret.txt", "assets/../../secret.txt", MARKER_NAME, "assets/escape.txt",
                                  "missing.js", "../../etc", ".."])
def test_refused_and_missing_files_are_404_not_index(files: ViewerFiles, path: str) -> None:
    answer = files.answer(path)
    assert answer.status == 404 and b"index" not in answer.body


def test_files_app_config_and_conditional_requests(files: ViewerFiles, tmp_path: Path) -> None:
    bundle = files.answer("app.bundle.0f6159c501addfe9.js")
    assert (bundle.status, bundle.body, bundle.headers["Cache-Control"]) == (200, b"bundle", IMMUTABLE)
    assert files.answer("app.bundle.0f6159c501addfe9.js", bundle.headers["ETag"]).status == 304
    assert files.answer("app.bundle.0f6159c501addfe9.js", '"other"').status == 200
    config = files.answer("app-config.js")
    assert (config.status, config.body, config.headers["Cache-Control"]) == (
        200, b"window.oncoflowAuth = null;\nwindow.config = {};", REVALIDATE)
    assert files.answer("app-config.js", config.headers["ETag"]).status == 304


def test_app_config_names_the_login_server_when_login_is_on(tmp_path: Path) -> None:
    (tmp_path / "app-config.js").write_text("window.config = {};")
    auth = AuthSettings("http://127.0.0.1:8180/realms/oncoflow", keycloak_port=8180)
    with_login = ViewerFiles(lambda: None, tmp_path / "app-config.js", tmp_path, auth=auth).answer("app-config.js")
    first_line = with_login.body.split(b"\n", 1)[0].decode()
    assert first_line == ('window.oncoflowAuth = {"authority": "http://127.0.0.1:8180/realms/oncoflow", '
                          '"clientId": "ohif"};')
    without = ViewerFiles(lambda: None, tmp_path / "app-config.js", tmp_path).answer("app-config.js")
    assert with_login.headers["ETag"] != without.headers["ETag"]  # a browser never keeps the other variant


def test_oncoflow_modules_are_404_until_built(files: ViewerFiles, tmp_path: Path) -> None:
    missing = files.answer("oncoflow/oncoflow-mode.mjs")
    assert missing.status == 404 and "not built" in json.loads(missing.body)["error"]
    (tmp_path / "modules" / "oncoflow-mode.mjs").write_text("export default {};")
    built = files.answer("oncoflow/oncoflow-mode.mjs")
    assert (built.status, built.body, built.content_type) == (200, b"export default {};", content_type("a.mjs"))
    (tmp_path / "modules" / "oncoflow-mode.mjs.map").write_text("{}")
    assert files.answer("oncoflow/oncoflow-mode.mjs.map").content_type == "application/json"
    assert files.answer("oncoflow/oncoflow-mode.js").status == 404
    assert files.answer("oncoflow/../app-config.js").status == 404
    assert files.answer("oncoflow/sub/oncoflow-mode.mjs").status == 404


def test_an_unprepared_viewer_answers_503_naming_the_fix(tmp_path: Path) -> None:
    answer = ViewerFiles(lambda: None, tmp_path / "none.js", tmp_path).answer("viewer")
    assert answer.status == 503 and "oncoflow.services.ohif_viewer prepare" in json.loads(answer.body)["error"]


# -- the QIDO proxy ------------------------------------------------------------------------------------------

def test_qido_uri_splits_includefield_and_decodes_values_once() -> None:
    uri = qido_uri("studies", {"limit": "101", "includefield": "00081030%2C00080060%2C00100030",
                               "PatientName": "Test%5Eviewer*", "StudyDescription": "brain%20MRI",
                               "AccessionNumber": "A%25B"})
    assert uri == ("/dicom-web/studies?limit=101&includefield=00081030&includefield=00080060&includefield=00100030"
                   "&PatientName=Test^viewer*&StudyDescription=brain MRI&AccessionNumber=A%B")
    assert qido_uri("studies/1.2.3/series", {}) == "/dicom-web/studies/1.2.3/series"


def test_forward_qido_passes_the_answer_through() -> None:
    asked: list[str] = []

    def orthanc_get(uri: str) -> bytes:
        asked.append(uri)
        return b'[{"00081030": {"vr": "LO", "Value": ["x"]}}]'

    answer = forward_qido(orthanc_get, "studies", {"includefield": "00081030%2C00080061"})
    assert asked == ["/dicom-web/studies?includefield=00081030&includefield=00080061"]
    assert (answer.status, answer.content_type) == (200, "application/dicom+json")
    assert answer.body == b'[{"00081030": {"vr": "LO", "Value": ["x"]}}]'


def test_forward_qido_leaves_out_patients_the_caller_may_not_see() -> None:
    asked: list[str] = []
    answers = [{"0020000D": {"vr": "UI", "Value": [f"1.2.{i}"]}, "00100020": {"vr": "LO", "Value": [patient]}}
               for i, patient in enumerate(("PAT-A", "PAT-B", "PAT-A"))]
    answers.append({"0020000D": {"vr": "UI", "Value": ["1.2.9"]}})  # no PatientID: left out (fail closed)

    def orthanc_get(uri: str) -> bytes:
        asked.append(uri)
        return json.dumps(answers).encode()

    answer = forward_qido(orthanc_get, "series", {"limit": "5"}, lambda patient: patient == "PAT-A")
    assert asked == ["/dicom-web/series?limit=5&includefield=00100020"]
    assert [a["0020000D"]["Value"][0] for a in json.loads(answer.body)] == ["1.2.0", "1.2.2"]
    # inside a study the request filter has judged the study already: nothing asked for, nothing left out
    inside = forward_qido(orthanc_get, "studies/1.2.0/series", {}, lambda patient: False)
    assert asked[-1] == "/dicom-web/studies/1.2.0/series" and len(json.loads(inside.body)) == 4


@pytest.mark.parametrize(("resource", "query", "status"), [
    ("studies/1.2.3/metadata", {}, 404),  # WADO-RS: not through the QIDO proxy
    ("studies/1.2.3/series/4.5/instances/6.7/frames/1", {}, 404),
    ("../tools/find", {}, 404),
    ("studies", {"PatientName": "a%26b"}, 400),  # '&' cannot be passed to Orthanc's internal call
])
def test_forward_qido_refuses(resource: str, query: dict[str, str], status: int) -> None:
    def orthanc_get(uri: str) -> bytes:
        raise AssertionError(f"forwarded {uri}")

    assert forward_qido(orthanc_get, resource, query).status == status


class FakeOrthancException(Exception):
    pass


@pytest.mark.parametrize(("code", "status"), [(17, 404), (15, 400), (8, 400), (1, 502), ("?", 502)])
def test_orthanc_errors_become_http_statuses(code: object, status: int) -> None:
    def orthanc_get(uri: str) -> bytes:
        raise FakeOrthancException(code, "text")

    answer = forward_qido(orthanc_get, "studies", {"limit": "abc"})
    assert answer.status == status and "/dicom-web/studies?limit=abc" in json.loads(answer.body)["error"]
