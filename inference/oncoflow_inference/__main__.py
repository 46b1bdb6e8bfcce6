"""``python -m oncoflow_inference``: serve the model repository on 127.0.0.1:ONCOFLOW_WORKER_PORT."""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub at run time


def main() -> int:
    from oncoflow.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    import uvicorn

    from .kserve_server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, _ = settings.worker_url.rpartition(":")
    uvicorn.run(create_app(settings), host=host or "127.0.0.1", port=settings.worker_port, log_level="warning",
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
