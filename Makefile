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

# Two test processes (pytest-xdist), one test file each at a time so a file's stack starts once: the end-to-end
# tests wait on Orthanc, the worker and Keycloak half the time (30:36 against about 45 min serially on 2 cores).
ONCOFLOW_TEST_PROCESSES ?= 2
test: env
	$(PY) -m ruff check .
	cd ohif-extension && npm run --silent typecheck && npm test --silent
	$(PY) -m pytest -q -p no:cacheprovider -n $(ONCOFLOW_TEST_PROCESSES) --dist loadfile --durations=30 tests

bench: env
	$(PY) bench/turnaround.py
	$(PY) bench/registration_speed.py
	$(PY) bench/report_stage.py
	$(PY) bench/viewer_speed.py
	$(PY) bench/access_filter.py
	$(PY) bench/upload_guard.py
	$(PY) bench/ingest_rate.py
	$(PY) bench/scale_out.py
	$(PY) bench/sequence_stages.py

# 40 longitudinal phantom pairs: % change error, flag accuracy, registration target error (about 20 min); then
# 40 multi-lesion phantom patients: lesion tracking and RANO 2.0 response, truth masks and the demo panel (about
# 1 h on 2 idle CPU cores; ONCOFLOW_BENCH_PATIENTS, ONCOFLOW_BENCH_MODES=truth,panel, ONCOFLOW_BENCH_DEADLINE_UTC)
bench-longitudinal: env
	$(PY) bench/longitudinal.py
	$(PY) bench/longitudinal_lesions.py

# Three demo nnU-Nets, trained on synthetic MNI152 heads (inference/training/train_demo_model.py; the 160 cases are
# generated once and shared; 1,000 iterations each, about 20-30 min a model on 2 CPU cores, minutes on a GPU; never
# in CI): four sequences in 3-D, T1c alone in 2-D, T1c + FLAIR in 2-D. (T1c alone in 3-D collapsed to empty
# masks at this budget: README, "The SynthSeg-style demo experts".)
DEMO_REPO := inference/model_repository
DEMO_WORK := work-demo-models
demo-models: env
	$(PY) inference/training/train_demo_model.py --channels t1,t1c,t2,flair --configuration 3d_fullres \
		--dataset-id 521 --seed 0 --work $(DEMO_WORK) --out $(DEMO_REPO)/nnunet_synth_4seq/1/nnunet
	$(PY) inference/training/train_demo_model.py --channels t1c --configuration 2d --features medium \
		--dataset-id 524 --seed 1 --work $(DEMO_WORK) --out $(DEMO_REPO)/nnunet_synth_t1c/1/nnunet
	$(PY) inference/training/train_demo_model.py --channels t1c,flair --configuration 2d --features medium \
		--dataset-id 523 --seed 2 --work $(DEMO_WORK) --out $(DEMO_REPO)/nnunet_synth_2d/1/nnunet

# Six panels on held-out evaluation studies (Colin27 full heads, grown gliomas, fixed contrasts, four sequences):
# Dice per region, detection, false positives on tumour-free heads, % change error over 20 pairs, per expert and
# fused -> bench/results/panel-accuracy-*.json (about 26 + 22 min on 2 idle cores)
evaluate-panel: env
	$(PY) bench/evaluate_panel.py --patients 20 --tumour-free 4 \
		--panel default=nnunet_demo,nnunet_demo_2d,nnunet_demo_3d_seed2 \
		--panel synth=nnunet_synth_4seq,nnunet_synth_2d \
		--panel mixed=nnunet_synth_4seq,nnunet_synth_2d,nnunet_demo
	$(PY) bench/evaluate_panel.py --patients 20 --tumour-free 4 --name panel-accuracy-synth3 \
		--panel synth3=nnunet_synth_4seq,nnunet_synth_t1c,nnunet_synth_2d \
		--panel 2d_pair=nnunet_synth_t1c,nnunet_synth_2d --panel t1c_alone=nnunet_synth_t1c

lint: env
	$(PY) -m ruff check .
