# skulab: `make app` to set up and start the labeller, `make test` to set up and run every test.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8501

.PHONY: app test lint format serve bench browser clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Set up, create the catalogue in ./data if missing, and start the labeller app on
## 127.0.0.1 (.streamlit/config.toml); `make app ADDRESS=0.0.0.0` opens it to the network.
ADDRESS ?=
app: $(STAMP)
	$(BIN)/python -m db init
	$(BIN)/streamlit run labeller/app.py --server.port $(PORT) $(if $(ADDRESS),--server.address $(ADDRESS))

## Set up (incl. Chromium for the browser tests) and run the whole test suite.
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## Debian's Chromium for the real-browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Start the prediction API on the active run.
serve: $(STAMP)
	$(BIN)/python -m inference serve

## Run the benchmarks (slow; numbers go to BENCHMARKS.md by hand).
bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
