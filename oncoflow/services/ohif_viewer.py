"""OHIF's prebuilt viewer (npm ``@ohif/app``), fetched once and re-rooted to be served at ``/ohif/``.

The package ships a production build (``package/dist``) meant for a site's root path.
:func:`ensure_ohif_dist` packs the pinned version with npm (npm checks the registry's
sha512 and this module checks it against :data:`OHIF_INTEGRITY`), extracts ``dist``
only, applies :data:`REROOT_RULES` and moves the result atomically into the cache as
``<cache>/ohif-<version>-at-ohif/``, next to a marker that records the version and a hash
of the rules. A marker that differs (a version bump, a changed rule) prepares it again.

Every rule names the exact number of replacements it expects in the pinned version: a
pattern that is missing, or found a different number of times, raises
:class:`OhifPrepareError`, so that a version bump fails loudly instead of half-working.
The routes that serve the tree live in the plugin (``oncoflow.api.viewer_files``).

Command line (``scripts/bootstrap.sh`` runs it)::

    python -m oncoflow.services.ohif_viewer prepare [--cache DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from oncoflow.core.config import VIEWER_BASE_PATH
from oncoflow.services.shared_cache import cache_lock, default_cache_dir

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
# The registry's sha512 of the 3.13.2 tarball (``npm view @ohif/app@3.13.2 dist.integrity``).
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
BASE_PATH = VIEWER_BASE_PATH
MARKER_NAME = ".oncoflow-ohif.json"
DIST_PREFIX = "package/dist/"
# Not served: OHIF's own app-config.js (the repository's is served instead), the Workbox service
# worker (nothing registers it, and a service worker would cache the viewer across stacks and test
# runs; init-service-worker.js stays: in a page it only unregisters old workers), the static hosts'
# rewrite files.
DROPPED_FILES = ("app-config.js", "sw.js", "_headers", "_redirects", "serve.json")
NPM_PACK_TIMEOUT_S = 600


class OhifPrepareError(RuntimeError):
    """The OHIF package could not be fetched, checked or re-rooted."""


@dataclass(frozen=True)
class RerootRule:
    """Replace ``pattern`` (a regular expression) by ``replacement`` in the files matching ``glob``.

    ``expected_count`` is the exact total number of replacements over those files in the pinned version.
    """

    name: str
    glob: str
    pattern: str
    replacement: str
    expected_count: int


def _base(path: str) -> str:
    return BASE_PATH + path


REROOT_RULES: tuple[RerootRule, ...] = (
    RerootRule("index.html PUBLIC_URL", "index.html", r'window\.PUBLIC_URL="/"',
               f'window.PUBLIC_URL="{BASE_PATH}"', 2),
    # manifest, favicons, startup images, app-config.js, init-service-worker.js, app bundle and CSS
    RerootRule("index.html asset paths", "index.html", r'\b(href|src|content)="/(?!/)', rf'\1="{BASE_PATH}', 33),
    # the app bundle and the worker bundles (decode, compute, histogram, interpolation, polySeg, ...)
    RerootRule("webpack publicPath", "*.js", r'__webpack_require__\.p = "/";',
               f'__webpack_require__.p = "{BASE_PATH}";', 8),
    RerootRule("app.bundle.css url(/...)", "app.bundle.css", r"url\(/(?!/)", f"url({BASE_PATH}", 5),
    RerootRule("manifest.json icons", "manifest.json", r'"src": "/assets/', f'"src": "{_base("assets/")}', 9),
    RerootRule("manifest.json start_url", "manifest.json", r'"start_url": "\./index\.html"',
               f'"start_url": "{BASE_PATH}"', 1),
    RerootRule("microscopy viewer import", "app.bundle.*.js",
               r"browserImportFunction\('/dicom-microscopy-viewer/",
               f"browserImportFunction('{_base('dicom-microscopy-viewer/')}", 1),
    RerootRule("OIDC silent refresh page", "app.bundle.*.js", r"\|\| '/silent-refresh\.html'",
               f"|| '{_base('silent-refresh.html')}'", 1),
)
# routerBasename needs no patch: the bundle reads window.config.routerBasename (our app-config.js sets
# '/ohif') and otherwise falls back to window.PUBLIC_URL, which the first rule sets.


def rules_sha256(rules: Sequence[RerootRule] | None = None, dropped: Sequence[str] | None = None) -> str:
    """A hash of the preparation recipe (default: :data:`REROOT_RULES`, :data:`DROPPED_FILES`).

    A change of rule or dropped file invalidates a prepared tree.
    """
    rules = REROOT_RULES if rules is None else rules
    dropped = DROPPED_FILES if dropped is None else dropped
    recipe = json.dumps({"rules": [asdict(r) for r in rules], "dropped": list(dropped), "base": BASE_PATH},
                        sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()


def marker_payload(version: str = OHIF_VERSION, rules: Sequence[RerootRule] | None = None,
                   dropped: Sequence[str] | None = None) -> dict[str, str]:
    """What the marker of a fresh tree holds."""
    return {"package": OHIF_PACKAGE, "version": version, "base_path": BASE_PATH,
            "rules_sha256": rules_sha256(rules, dropped)}


def prepared_dir(cache_dir: Path | None = None, version: str = OHIF_VERSION) -> Path:
    """Where the re-rooted tree of ``version`` lives in the cache (prepared or not)."""
    return (cache_dir or default_cache_dir()) / f"ohif-{version}-at-{BASE_PATH.strip('/')}"


def is_fresh(root: Path, version: str = OHIF_VERSION) -> bool:
    """True when ``root`` holds a tree prepared by the current recipe for ``version``."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict):
        return False
    marker.pop("replacements", None)  # recorded for people, not part of the recipe
    return marker == marker_payload(version)


def fresh_dist_dir(cache_dir: Path | None = None) -> Path | None:
    """The prepared tree when it is fresh, else ``None`` (never fetches: for the serving side)."""
    root = prepared_dir(cache_dir)
    return root if is_fresh(root) else None


def apply_reroot_rules(dist: Path, rules: Sequence[RerootRule] | None = None) -> dict[str, int]:
    """Apply ``rules`` (default :data:`REROOT_RULES`) to the files under ``dist``; returns the replacements per rule.

    Raises :class:`OhifPrepareError` when a rule's count differs from its ``expected_count``;
    no file is written unless every rule matched as expected.
    """
    rules = REROOT_RULES if rules is None else rules
    texts: dict[Path, str] = {}
    counts: dict[str, int] = {}
    for rule in rules:
        total = 0
        for path in sorted(dist.glob(rule.glob)):
            if not path.is_file():
                continue
            text = texts[path] if path in texts else path.read_text(encoding="utf-8")
            text, n = re.subn(rule.pattern, rule.replacement, text)
            if n:
                texts[path] = text
            total += n
        counts[rule.name] = total
    wrong = {r.name: (counts[r.name], r.expected_count) for r in rules if counts[r.name] != r.expected_count}
    if wrong:
        details = "; ".join(f"{name}: {found} replacements, expected {expected}"
                            for name, (found, expected) in wrong.items())
        raise OhifPrepareError(f"OHIF re-rooting to {BASE_PATH} does not fit this package ({details}): "
                               "inspect the new dist and update REROOT_RULES")
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    return counts


def sri_sha512(path: Path) -> str:
    """The file's Subresource-Integrity sha512 (npm's ``integrity`` format)."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def npm_pack(destination: Path, spec: str = f"{OHIF_PACKAGE}@{OHIF_VERSION}", integrity: str | None = None) -> Path:
    """``npm pack spec`` into ``destination``; returns the tarball, checked against ``integrity``.

    ``integrity`` defaults to :data:`OHIF_INTEGRITY`, the pinned version's.
    """
    integrity = OHIF_INTEGRITY if integrity is None else integrity
    npm = shutil.which("npm")
    if npm is None:
        raise OhifPrepareError("npm is not installed (Node 20 and npm are needed to fetch OHIF)")
    result = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", str(destination)],
                            cwd=destination, capture_output=True, text=True, timeout=NPM_PACK_TIMEOUT_S)
    if result.returncode != 0:
        raise OhifPrepareError(f"npm pack {spec} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    try:
        packed = json.loads(result.stdout)[0]
        tarball = destination / packed["filename"]
    except (ValueError, LookupError, TypeError) as exc:
        raise OhifPrepareError(f"npm pack {spec} printed no package description: {result.stdout[:500]!r}") from exc
    found = sri_sha512(tarball)
    if packed.get("integrity") != integrity or found != integrity:
        raise OhifPrepareError(f"{tarball.name}: integrity {found} (npm reported {packed.get('integrity')}), "
                               f"expected {integrity}")
    return tarball


def extract_dist(tarball: Path, destination: Path) -> int:
    """Extract the regular files under ``package/dist/`` into ``destination``; returns the file count.

    Member names are checked (no absolute path, no ``..``); links and devices are refused.
    """
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not member.name.startswith(DIST_PREFIX) or member.isdir():
                continue
            relative = PurePosixPath(member.name[len(DIST_PREFIX):])
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise OhifPrepareError(f"{tarball.name}: unsafe member name {member.name!r}")
            if not member.isfile():
                raise OhifPrepareError(f"{tarball.name}: {member.name} is not a regular file")
            target = destination.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            count += 1
    if not (destination / "index.html").is_file():
        raise OhifPrepareError(f"{tarball.name} has no {DIST_PREFIX}index.html")
    return count


def prepare_dist(tarball: Path, destination: Path, rules: Sequence[RerootRule] | None = None,
                 dropped: Sequence[str] | None = None, version: str = OHIF_VERSION) -> dict[str, int]:
    """Extract, drop, re-root and mark a tree in ``destination`` (a new directory); returns the rule counts."""
    rules = REROOT_RULES if rules is None else rules
    dropped = DROPPED_FILES if dropped is None else dropped
    destination.mkdir(parents=True)
    extract_dist(tarball, destination)
    for name in dropped:
        (destination / name).unlink(missing_ok=True)
    counts = apply_reroot_rules(destination, rules)
    (destination / MARKER_NAME).write_text(json.dumps({**marker_payload(version, rules, dropped),
                                                       "replacements": counts}, indent=1))
    return counts


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``, replacing a stale ``target`` (each step a rename)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_ohif_dist(cache_dir: Path | None = None) -> Path:
    """The re-rooted OHIF tree in the cache, fetched and prepared first when missing or stale."""
    cache_dir = cache_dir or default_cache_dir()
    target = prepared_dir(cache_dir)
    if is_fresh(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache_dir / ".ohif-prepare.lock"):
        if is_fresh(target):  # prepared by another process meanwhile
            return target
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".ohif-prepare-") as scratch:
            tarball = npm_pack(Path(scratch))
            tree = Path(scratch) / "dist"
            prepare_dist(tarball, tree)
            _replace_dir(tree, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oncoflow.services.ohif_viewer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help=f"fetch {OHIF_PACKAGE}@{OHIF_VERSION} and re-root it to {BASE_PATH}")
    prepare.add_argument("--cache", type=Path, default=None, help="cache directory (default $ONCOFLOW_CACHE "
                                                                   "or ~/.cache/oncoflow)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        root = ensure_ohif_dist(args.cache)
    except (OhifPrepareError, OSError, subprocess.SubprocessError) as exc:
        print(f"OHIF viewer not prepared: {exc}", file=sys.stderr)
        return 1
    print(f"OHIF {OHIF_VERSION} at {BASE_PATH}: {root} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
