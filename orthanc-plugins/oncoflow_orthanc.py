"""Entry script loaded by orthanc-python (``"PythonScript"`` in Orthanc's configuration).

Orthanc embeds Debian's Python 3.11; OncoFlow's virtualenv, built with the same
interpreter, is added with ``site.addsitedir`` so that its ``.pth`` files (the
editable install of this repository) are honoured, and put after the standard library and
ahead of Debian's dist-packages. The directories come from the ``"OncoFlow":
{"SitePackages": [...]}`` section that ``oncoflow up`` writes.
"""

import faulthandler
import json
import site
import sys

import orthanc

faulthandler.enable()  # a crash in native code (torch, chromadb) leaves the Python stacks in Orthanc's log

# The virtualenv goes after the standard library and before Debian's dist-packages: Debian's own
# python3-* packages (e.g. cryptography 38) must not shadow the locked versions, and stray
# backports in the virtualenv (a PyPI ``argparse``) must not shadow the standard library.
system_path = list(sys.path)
for directory in json.loads(orthanc.GetConfiguration()).get("OncoFlow", {}).get("SitePackages", []):
    site.addsitedir(directory)
added = [p for p in sys.path if p not in system_path]
first_debian = next((i for i, p in enumerate(system_path) if "-packages" in p), len(system_path))
sys.path[:] = system_path[:first_debian] + added + system_path[first_debian:]

from oncoflow_plugin.plugin import register  # noqa: E402  (needs the site dirs above)

register(orthanc)
