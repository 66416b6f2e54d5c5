# after: the two README commands are `make run` and `make test`; both start from a clean clone.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all deps run test test-quick bench bench-quick soak deb clean

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
	$(PY) -m afterd.demo

test: deps
	scripts/install-deps test
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: deps
	$(PY) -m pytest -m "not systemd and not deb" $(PYTEST_ARGS)

bench: deps
	$(PY) -m bench

bench-quick: deps
	$(PY) -m bench --quick

soak: deps
	$(PY) -m pytest -m soak --run-soak $(PYTEST_ARGS)

deb:
	scripts/install-deps deb
	dpkg-buildpackage -us -uc -b
	mkdir -p dist && mv ../after_*_all.deb dist/ && rm -f ../after_*.buildinfo ../after_*.changes
	lintian --fail-on error --suppress-tags-from-file debian/lintian-suppress dist/after_*_all.deb || true

clean:
	rm -rf $(VENV) pouchdb/node_modules .run dist build *.egg-info .pytest_cache
