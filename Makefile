# OncoFlow. `make up` and `make test` install whatever is missing first (scripts/bootstrap.sh).
# Ports and state come from the environment: ONCOFLOW_HTTP_PORT (8042), ONCOFLOW_DICOM_PORT (4242),
# ONCOFLOW_WORKER_PORT (8000), ONCOFLOW_HOME (./var).
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: env up down status test bench bench-longitudinal demo-models evaluate-panel lint

env:
	@scripts/bootstrap.sh

up: env
	@$(PY) -m oncoflow.services.cli up

down:
	@if [ -x $(PY) ]; then $(PY) -m oncoflow.services.cli down; else echo "nothing to stop (no .venv)"; fi

status:
	@$(PY) -m oncoflow.services.cli status

test: env
	$(PY) -m ruff check .
	cd ohif-extension && npm run --silent typecheck && npm test --silent
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: env
	$(PY) bench/turnaround.py
	$(PY) bench/registration_speed.py
	$(PY) bench/report_stage.py
	$(PY) bench/viewer_speed.py
	$(PY) bench/access_filter.py
	$(PY) bench/upload_guard.py
	$(PY) bench/ingest_rate.py
	$(PY) bench/scale_out.py

# 40 longitudinal phantom pairs: % change error, flag accuracy, registration target error (about 20 min)
bench-longitudinal: env
	$(PY) bench/longitudinal.py

# The default panel's three demo nnU-Nets (about 10-15 min each on 2 cores; never in CI).
DEMO_REPO := inference/model_repository
demo-models: env
	$(PY) inference/training/train_demo_model.py --seed 0 --out $(DEMO_REPO)/nnunet_demo/1/nnunet
	$(PY) inference/training/train_demo_model.py --configuration 2d --seed 1 --out $(DEMO_REPO)/nnunet_demo_2d/1/nnunet
	$(PY) inference/training/train_demo_model.py --seed 2 --work work-demo-model-seed2 \
		--out $(DEMO_REPO)/nnunet_demo_3d_seed2/1/nnunet

# Held-out phantom Dice of the demo experts alone and fused by each strategy -> bench/results/panel-accuracy.json
evaluate-panel: env
	$(PY) inference/training/evaluate_panel.py

lint: env
	$(PY) -m ruff check .
