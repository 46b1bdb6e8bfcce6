"""``python -m oncoflow_inference``: serve the model repository on ONCOFLOW_WORKER_BIND:ONCOFLOW_WORKER_PORT
(default 127.0.0.1).

Settings come from the environment (:func:`oncoflow.core.config.load_settings`); an invalid
one prints every problem and exits with status 2. Logs go to stdout.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub at run time


def main() -> int:
    from oncoflow.core.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"oncoflow-worker: {exc}", file=sys.stderr, flush=True)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvicorn

    from .kserve_server import create_app

    logging.getLogger("oncoflow.worker").info(
        "serving %s on %s:%d", settings.model_repository, settings.worker_bind, settings.worker_port
    )
    uvicorn.run(create_app(settings), host=settings.worker_bind, port=settings.worker_port, log_level="warning",
                access_log=False, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
