# LeadPulse: `make run` starts it on the embedded default, `make test` runs the whole suite.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
PORT    ?= 8000
HOST    ?= 127.0.0.1
REDIS_URL ?= redis://127.0.0.1:6379/0
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432

LOCK    := requirements.lock
PIP_VERSION := 26.3

.PHONY: run test fuzz test-faults test-newest lint install lock services redis postgres chromium bench clean

# Installs exactly what requirements.lock pins (hash-checked, for every platform), then LeadPulse itself with the
# locked setuptools, resolving and fetching nothing else.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# Re-resolve pyproject.toml's ranges (product and dev extras) to the newest releases and pin them with hashes.
lock: install
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 --no-header --quiet --upgrade -o $(LOCK)
	$(BIN)/python tests/lock_stamp.py $(LOCK)

# The suite on the newest releases pyproject.toml admits, in a venv of its own: what a fresh unlocked install gets.
test-newest: services
	$(PYTHON) -m venv .venv-newest
	.venv-newest/bin/python -m pip install -q --upgrade pip
	.venv-newest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	.venv-newest/bin/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Start Redis / PostgreSQL when installed but stopped; say clearly what is missing otherwise (probed with the venv's
# clients, so after the install even under make -j).
redis: $(VENV)/.installed
	@if ! $(BIN)/python -c "import redis,sys; redis.Redis(host='127.0.0.1', port=6379, socket_connect_timeout=1).ping()" 2>/dev/null; then \
	  if command -v redis-server >/dev/null; then \
	    echo "starting redis-server"; mkdir -p /tmp/leadpulse-redis; \
	    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/leadpulse-redis --logfile /tmp/leadpulse-redis/redis.log; \
	  else echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)"; exit 1; fi; \
	  for i in $$(seq 1 50); do $(BIN)/python -c "import redis; redis.Redis(host='127.0.0.1', port=6379).ping()" 2>/dev/null && exit 0; sleep 0.1; done; \
	  echo "Redis did not come up on 127.0.0.1:6379"; exit 1; \
	fi

postgres: $(VENV)/.installed
	@if ! $(BIN)/python -c "import psycopg; psycopg.connect('host=$(PG_HOST) port=$(PG_PORT) user=postgres dbname=postgres', connect_timeout=2).close()" 2>/dev/null; then \
	  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then \
	    echo "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; \
	  else echo "PostgreSQL is not answering on $(PG_HOST):$(PG_PORT) and no local cluster is installed (apt-get install postgresql)"; exit 1; fi; \
	  for i in $$(seq 1 100); do $(BIN)/python -c "import psycopg; psycopg.connect('host=$(PG_HOST) port=$(PG_PORT) user=postgres dbname=postgres').close()" 2>/dev/null && exit 0; sleep 0.2; done; \
	  echo "PostgreSQL did not come up on $(PG_HOST):$(PG_PORT)"; exit 1; \
	fi

services: install redis postgres

# The console's browser tests (tests/test_console_browser.py) drive Debian's chromium through Playwright, never a browser
# Playwright would download: installed here when missing.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the console's browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	      { echo "could not install chromium with apt-get (run as root, or install Debian's chromium package yourself)"; exit 1; }; \
	  else echo "$(CHROMIUM) is missing and apt-get is not available: install Chromium (Debian's chromium package) for the console's browser tests"; exit 1; fi; \
	fi

run: install redis
	@echo "LeadPulse on http://$(HOST):$(PORT)/ (SQLite file leadpulse.db unless DATABASE_URL is set)"
	@echo "Get an API credential in another terminal:  $(BIN)/leadpulse bootstrap --org Acme --unit Main"
	HOST=$(HOST) PORT=$(PORT) REDIS_URL=$(REDIS_URL) $(BIN)/leadpulse dev

# The whole suite in two xdist workers, the fault scenarios (tests/faults) among it at FAULTS_SCALE=short: one worker
# runs them one after another on private servers of their own (tests/conftest.py hands it the whole directory) while
# the other runs the rest; they take that worker about two and a half minutes (three on a heavily loaded machine).
test: services lint chromium
	FAULTS_SCALE=short $(BIN)/python -m pytest -n 2

# The fault suite alone, on private PostgreSQL and Redis servers of its own. FAULTS_SCALE=long (the default here): at
# least 50,000 events through every kind of fault at random points, worker kills repeated, ending with a table of the
# recovery times measured; about 20 minutes on two cores, so CI runs it on a schedule (.ci/faults).
# FAULTS_SCALE=short: what make test runs, each scenario with at least 1,500 events, two to three minutes.
FAULTS_SCALE ?= long
test-faults: install
	FAULTS_SCALE=$(FAULTS_SCALE) $(BIN)/python -m pytest tests/faults -v

# The fuzz of tests/test_fuzz_openapi.py with many examples per operation (make test runs a few): ~10 minutes.
FUZZ_EXAMPLES ?= 100
fuzz: services
	LEADPULSE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz_openapi.py

bench: services
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ingest.py --batch 500 --connections 8
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/import_csv.py
	$(BIN)/python bench/decay.py
	$(BIN)/python bench/levels.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/console.py

clean:
	rm -rf $(VENV) .venv-newest *.egg-info .pytest_cache
