# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs, runs the main job: the daily loop (Airflow DAG ->
#               Kubeflow pipeline on kfp.local -> GX, DVC, MLflow, gate, BentoML) over the demo world's
#               days, then one request to the ranking service; all state in .state/, offline
#   make test   same set-up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= small
DATA ?= data/$(PROFILE)
RUN ?= artifacts/$(PROFILE)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: venv demo model lock test test-fast lint compare results online-loop online-ab rehearsal bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[all]" 2> >(grep -v "is ignored: it is neither" >&2)
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/cscnn demo --landing data/demo

# The foundation's single-model path (synth -> train -> evaluate -> embed), without the daily loop.
model: venv
	$(BIN)/cscnn data synth --profile $(PROFILE) --out $(DATA)
	$(BIN)/cscnn train --data $(DATA) --profile $(PROFILE) --variant cscnn --out $(RUN)/cscnn
	$(BIN)/cscnn evaluate --data $(DATA) --model $(RUN)/cscnn --out $(RUN)/metrics.json
	$(BIN)/cscnn embed --data $(DATA) --model $(RUN)/cscnn --out $(RUN)/embeddings

# dvc.yaml's stages on the `small` world (a few minutes on 2 cores), renewing dvc.lock: commit it. A test fails
# when a stage's command, code or parameters changed since the committed lock.
lock: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

# All three tiers (tests/conftest.py) on two workers, one test file per worker at a time, the longest first.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The inner loop: tests/unit, the library in this process.
test-fast: venv
	$(BIN)/python -m pytest -n 2 tests/unit

lint: venv
	$(BIN)/ruff check src tests benchmarks dags kfp_pipelines bento
	$(BIN)/ruff format --check src tests benchmarks dags kfp_pipelines bento

# docs/results/: the comparison on each world (5 seeds; resumable: finished runs are kept in
# docs/results/<world>.runs/ and skipped, so an interrupted `make results` goes on where it stopped).
RESULT_VARIANTS ?= no_image,attributes,cnn,se,cbam,cscnn
compare: venv
	$(BIN)/cscnn data synth --profile $(PROFILE) --out $(DATA)
	$(BIN)/cscnn compare --data $(DATA) --profile $(PROFILE) --out docs/results/$(PROFILE).md

results: venv
	$(BIN)/cscnn data synth --profile capacity --out data/capacity
	$(BIN)/cscnn compare --data data/capacity --profile capacity --variants $(RESULT_VARIANTS) --out docs/results/capacity.md
	test -d data/photos || $(BIN)/cscnn data photo-amazon --out data/photos-raw --import-to data/photos
	$(BIN)/cscnn compare --data data/photos --profile small --variants $(RESULT_VARIANTS) --out docs/results/photos.md
	$(BIN)/cscnn data synth --profile small --out data/small
	$(BIN)/cscnn compare --data data/small --profile small --variants $(RESULT_VARIANTS) --out docs/results/small.md
	$(BIN)/cscnn data synth --profile regions --out data/regions
	$(BIN)/cscnn compare --data data/regions --profile regions --variants $(RESULT_VARIANTS) --out docs/results/regions.md

# docs/online.md: the daily loop on its own traffic (simulated users through the real service), and the A/B
# experiments of CSCNN against no image and the plain CNN.
online-loop: venv
	$(BIN)/cscnn online-loop --work data/online-loop $(if $(SET),--set $(SET),)

online-ab: venv
	$(BIN)/python benchmarks/online_ab.py

# infra/README.md "Cluster mode": S3 (moto), mlflow server, a git remote on localhost; the daily pipeline for
# three days with no shared folder, the ranking service, one request; the embedded run's decisions beside it.
rehearsal: venv
	$(BIN)/cscnn rehearsal --work data/rehearsal

bench: venv
	$(BIN)/python benchmarks/train_throughput.py --profile $(PROFILE) --data $(DATA)

clean:
	rm -rf data artifacts .state

# The ranking service in the foreground (bento/README.md): the registry champion of CSCNN_STATE, or local
# folders with CSCNN_MODEL_DIR=/abs/checkpoint CSCNN_TABLE_DIR=/abs/table; PORT=3000 and HOST=127.0.0.1 (this
# machine only) by default; the container binds 0.0.0.0 on purpose (infra/Dockerfile, the Deployment).
.PHONY: serve
serve: venv
	BENTOML_DO_NOT_TRACK=True MLFLOW_DISABLE_TELEMETRY=true CSCNN_STATE=$${CSCNN_STATE:-$(CURDIR)/.state} \
		$(BIN)/bentoml serve service:RankingService --working-dir bento --host $${HOST:-127.0.0.1} --port $${PORT:-3000}
