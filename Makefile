# One command per job. `make run` sets up and serves; `make check` sets up and runs what CI runs.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run serve setup check test lint typecheck bench clean

# A .venv whose llama-cpp-python was built with other CPU flags (LLAMA_CPU_FEATURES, from the
# environment or make's command line, or another CPU) is set up again: the $(shell ...) forgets
# .runtime, and bootstrap.sh replaces the wheel.
$(VENV)/.runtime: requirements.txt scripts/bootstrap.sh scripts/llama_wheel.sh scripts/cpu_cmake_args.sh \
		$(shell LLAMA_CPU_FEATURES='$(LLAMA_CPU_FEATURES)' scripts/bootstrap.sh --stale && rm -f $(VENV)/.runtime)
	PYTHON=$(PYTHON) scripts/bootstrap.sh
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	PYTHON=$(PYTHON) scripts/bootstrap.sh dev
	touch $@

# The first-run command is for one machine: DEBUG on (a generated SECRET_KEY kept in var/)
# unless the environment says otherwise. `make serve` alone uses the environment as it is.
run: export DEBUG ?= true

setup: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py prepare_models

run: setup serve

serve:
	$(PY) manage.py welcome --host $(HOST) --port $(PORT)
	$(PY) manage.py clear_metrics
	$(PY) -m inference_site.serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	SECRET_KEY=typecheck-only $(VENV)/bin/mypy inference_site openai_api llm_backend bench examples manage.py

test: $(VENV)/.dev
	scripts/services.sh
	scripts/run_tests.sh

check: lint typecheck test

bench: $(VENV)/.dev
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
