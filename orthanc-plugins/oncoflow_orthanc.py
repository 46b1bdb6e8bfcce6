"""Entry script loaded by orthanc-python (``"PythonScript"`` in Orthanc's configuration).

Orthanc embeds Debian's Python 3.11; OncoFlow's virtualenv, built with the same
interpreter, is added with ``site.addsitedir`` so that its ``.pth`` files (the
editable install of this repository) are honoured. The directories come from the
``"OncoFlow": {"SitePackages": [...]}`` section that ``oncoflow up`` writes.
"""

import json
import site

import orthanc

for directory in json.loads(orthanc.GetConfiguration()).get("OncoFlow", {}).get("SitePackages", []):
    site.addsitedir(directory)

from oncoflow_plugin.plugin import register  # noqa: E402  (needs the site dirs above)

register(orthanc)
