# The README's two commands: `make demo` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages that the integration and system tests drive for real (a TLS redis-server,
# wsclean, aoflagger, promtool, scdoc/man, the .deb built and booted under systemd-nspawn, and the web
# console in a headless Chromium through its WebDriver).
DEB_TEST_DEPS := redis-server redis-sentinel openssl wsclean aoflagger prometheus scdoc man-db dpkg-dev debhelper \
                 dh-virtualenv systemd-container debootstrap util-linux strace chromium \
                 chromium-driver
DEB_TEST_CMDS := redis-server redis-sentinel openssl wsclean aoflagger promtool scdoc man dpkg-buildpackage dh \
                 dh_virtualenv systemd-nspawn debootstrap setpriv nsenter strace chromium chromedriver

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file to a worker
# (--dist loadfile keeps a module's tests and its module-scoped fixtures together; each worker
# has its own embedded server, tmp dirs and ports). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: demo test lint typecheck unit integration system bench man clean test-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "dsa110d needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dsa110d demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench $(wildcard examples)
	$(BIN)/ruff format --check src tests bench $(wildcard examples)
	$(BIN)/mypy

# Installs what is missing when run as root on Debian; otherwise names what to install.
test-deps:
	@missing=""; for c in $(DEB_TEST_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian test dependencies (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_TEST_DEPS) >/dev/null; \
	  else \
	    echo "the tests need:$$missing; run: sudo apt-get install $(DEB_TEST_DEPS)"; exit 1; \
	  fi; \
	fi

test: lint test-deps
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

unit: $(STAMP)
	$(BIN)/python -m pytest -m unit

integration: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m integration

system: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m system

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.report

# The man pages from their scdoc sources (debian/rules builds them the same way).
man:
	mkdir -p build/man
	for page in dsa110d.8 dsa110ctl.1 dsa110d.yaml.5; do scdoc < man/$$page.scd > build/man/$$page; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
