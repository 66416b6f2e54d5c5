# after: the two README commands are `make run` and `make test`; both start from a clean clone.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# `make test` runs the suite in two processes (most tests wait on servers, workers and
# containers, not on the CPU); tests/conftest.py keeps the container tests together.
PYTEST_PARALLEL ?= -n 2 --dist loadgroup
BENCH_ARGS ?=

.PHONY: all deps bench-deps run test test-quick bench bench-quick soak deb clean

all: test

$(VENV)/.stamp: requirements-dev.txt pyproject.toml
	scripts/install-deps run
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

pouchdb/node_modules/.stamp: pouchdb/package.json pouchdb/package-lock.json
	scripts/install-deps run
	# --ignore-scripts: sqlite3 would compile from source; LevelDB and in-memory need no scripts.
	cd pouchdb && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.stamp pouchdb/node_modules/.stamp

run: deps
	$(PY) scripts/demo.py

test: deps
	scripts/install-deps test
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-quick: deps
	$(PY) -m pytest -m "not systemd and not deb" $(PYTEST_ARGS)

# The bench's peers (APScheduler, Huey, Celery: pinned in bench/requirements.txt) go into the
# same venv, by this target only: after does not depend on them. Celery's broker is Debian's
# redis-server, installed here if missing; the bench starts its own on a loopback port.
# AFTER_BENCH_COUCHDB_URL runs the bench against that CouchDB instead of a pouchdb-server
# of its own (docs/benchmarks.md).
$(VENV)/.bench-stamp: $(VENV)/.stamp bench/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench-deps: deps $(VENV)/.bench-stamp
	scripts/install-deps bench

bench: bench-deps
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: bench-deps
	$(PY) -m bench --quick $(BENCH_ARGS)

soak: deps
	$(PY) -m pytest -m soak --run-soak $(PYTEST_ARGS)

deb:
	# Builds dist/after_<version>_all.deb in a copy of the tree (what git tracks plus
	# new unignored files), so the checkout and its parent folder stay clean:
	# dpkg-buildpackage writes its results next to the source, here build/deb/.
	scripts/install-deps deb
	rm -rf build/deb && mkdir -p build/deb/src dist
	git ls-files -z --cached --others --exclude-standard \
	  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C build/deb/src
	# Debian's own interpreters only: a python3.11 earlier on PATH (pyenv, a venv) lacks the
	# Debian build modules and would build against the wrong site-packages.
	cd build/deb/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	rm -f dist/after_*_all.deb && mv build/deb/after_*_all.deb dist/
	# Errors and warnings both fail; each accepted warning is overridden, with its reason,
	# in debian/after.lintian-overrides.
	lintian --fail-on error,warning --tag-display-limit 0 dist/after_*_all.deb
	rm -rf build/deb

clean:
	rm -rf $(VENV) pouchdb/node_modules .run dist build *.egg-info .pytest_cache
