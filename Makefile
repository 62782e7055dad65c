# Everything runs from .venv, created on first use with the newest of PYTHONS that is at least
# MIN_PYTHON, or with `make PYTHON=/path/to/python3.x` (checked the same way).
PYTHONS := python3.13 python3.12 python3.11 python3
MIN_PYTHON := 3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The report tests and `make report-screenshot` drive Debian's chromium: Playwright's own browser
# download cannot run here.
CHROMIUM := /usr/bin/chromium
# The two-host test (tests/test_netns.py) joins two network namespaces with `ip`.
IP := /bin/ip
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install demo test check lint typecheck bench soak fuzz clean smoke-newest

# $(call newest_python,NAMES): "NAME VERSION" of the newest of NAMES that runs and is at least
# MIN_PYTHON; else "none" and what was found instead ("none (python3 is 3.9.2)"). A name that does not
# run (missing, or a pyenv shim of a version not selected) is passed over.
newest_python = $(shell for p in $(1); do v=$$("$$p" --version 2>&1) && echo "$$p $$v"; done | awk \
	-v min=$(MIN_PYTHON) 'BEGIN { split(min, m, ".") } \
	$$2 == "Python" { \
		split($$3, v, "."); \
		if (v[1] + 0 < m[1] + 0 || (v[1] + 0 == m[1] + 0 && v[2] + 0 < m[2] + 0)) { \
			old = old (old == "" ? "" : ", ") $$1 " is " $$3; next \
		} \
		key = v[1] * 1000000 + v[2] * 1000 + v[3]; \
		if (key > best) { best = key; pick = $$1 " " $$3 } \
	} \
	END { print (pick != "" ? pick : "none" (old == "" ? "" : " (" old ")")) }')

python_candidates = $(or $(PYTHON),$(PYTHONS))
no_python = no Python $(MIN_PYTHON) or newer among $(python_candidates)$(if $(2), $(2)): install \
	Python $(MIN_PYTHON) or newer, or name one with make PYTHON=/path/to/python3.x
checked_python = $(if $(filter none,$(firstword $(1))),$(error $(call no_python,,$(wordlist 2,999,$(1)))),$(1))

# The Python that creates .venv, "NAME VERSION": looked for once, and only when .venv is to be made.
VENV_PYTHON = $(eval VENV_PYTHON := $$(call checked_python,$$(call newest_python,$(python_candidates))))$(VENV_PYTHON)

# Order-only below: the stamps are not remade because the venv's interpreter is newer than them.
$(BIN)/python:
	@echo "make: creating $(VENV) with $(word 1,$(VENV_PYTHON)) (Python $(word 2,$(VENV_PYTHON)))"
	$(word 1,$(VENV_PYTHON)) -m venv $(VENV)

# The venv's pip, then the package with EXTRAS (one resolution: the test install does not install the
# plain package first).
define install_package
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.$(1)'
endef

$(STAMP): pyproject.toml | $(BIN)/python
	$(call install_package,)
	touch $@

install: $(STAMP)

# Chromium is an order-only prerequisite: installed whenever it is missing, even with the stamp there.
$(TEST_STAMP): pyproject.toml | $(BIN)/python $(CHROMIUM) $(IP)
	$(call install_package,[test])
	touch $(STAMP) $@

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

$(IP):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2

# A 30-second conversation load test against the built-in mock: prints the summary and report path.
demo: $(STAMP)
	$(BIN)/locust -f locustfiles/chat.py --headless -u 20 -r 10 -t 30s --think-time 0.5-1.5 --stop-timeout 10 \
		--only-summary --mock-options "--ttft lognormal:250ms:0.3 --itl uniform:10ms:40ms"

# The tests in two shards side by side, then the timing ones alone (tests/sharding.py).
test: $(TEST_STAMP)
	$(BIN)/python -m tests.sharding -q
	$(smoke_on_newest)

# When this machine has a Python newer (major.minor) than .venv's, a smoke test on it, in a venv of its
# own: the install, a short run against the mock, the fast tests. The test run above covers .venv's.
NEWEST_VENV := .venv-newest
SMOKE_TESTS := tests/test_options.py tests/test_settings.py tests/test_sse.py tests/test_thresholds.py \
	tests/test_metrics.py
NEWEST_PYTHON = $(eval NEWEST_PYTHON := $$(call newest_python,$(PYTHONS)))$(NEWEST_PYTHON)
newest_version = $(if $(filter none,$(firstword $(NEWEST_PYTHON))),0,$(word 2,$(NEWEST_PYTHON)))
# "yes" when version $(1) is newer than .venv's Python, by major.minor.
newer_than_venv = $(shell $(BIN)/python -c 'import sys; \
	sys.exit(tuple(int(n) for n in sys.argv[1].split(".")[:2]) <= sys.version_info[:2])' $(1) && echo yes)
# Installed again when pyproject.toml changes, or when the newest Python is another one.
NEWEST_STAMP = $(NEWEST_VENV)/.installed-$(newest_version)

define smoke_newest
	@echo "make: smoke test on $(word 1,$(NEWEST_PYTHON)) (Python $(newest_version)), newer than $(VENV)'s, in $(NEWEST_VENV)"
	test $(NEWEST_STAMP) -nt pyproject.toml || { $(word 1,$(NEWEST_PYTHON)) -m venv --clear $(NEWEST_VENV) \
		&& $(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip \
		&& $(NEWEST_VENV)/bin/python -m pip install --quiet -e '.[test]' && touch $(NEWEST_STAMP); }
	$(NEWEST_VENV)/bin/locust -f locustfiles/chat.py --headless -u 2 -r 2 -t 3s --only-summary \
		--report-dir $(NEWEST_VENV)/reports
	$(NEWEST_VENV)/bin/python -m pytest -q -m 'not timing' $(SMOKE_TESTS)
endef

smoke_on_newest = $(if $(call newer_than_venv,$(newest_version)),$(smoke_newest),@echo "make: no Python \
	newer than $(VENV)'s ($$($(BIN)/python --version)) here: no smoke test on a newer one")

smoke-newest: | $(BIN)/python
	$(smoke_on_newest)

lint: $(TEST_STAMP)
	$(BIN)/ruff check loadtest tests locustfiles bench
	$(BIN)/ruff format --check loadtest tests locustfiles bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Benchmarks that print numbers: the SSE parser, then the load generator's own overhead against the mock
# (about 2 minutes; `$(BIN)/python bench/capacity.py` without --quick steps up to 600 streams, under 10).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/parser.py
	$(BIN)/python bench/capacity.py --quick

# Not in CI: 30 minutes against the mock with faults on, a local run and a master with one worker side
# by side; fails when a process's memory grows faster than bench/soak.py's BOUNDS (MB a minute).
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes 30

# Not in CI: coverage-guided fuzzing of the SSE decoder against the reference decoder of the tests.
fuzz: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python bench/fuzz_sse.py -runs=2000000 -max_len=4096

clean:
	rm -rf $(VENV) $(NEWEST_VENV) reports .pytest_cache .mypy_cache .ruff_cache

# A full-page PNG of reports/latest/report.html, re-rendered, in headless Chromium (after a 20-second
# demo run when there is no run yet): reports/screenshot.png.
.PHONY: report-screenshot
report-screenshot: $(TEST_STAMP)
	test -e reports/latest/summary.json || $(BIN)/locust -f locustfiles/chat.py --headless -u 20 -r 2 -t 20s \
		--think-time 0.2-1 --stop-timeout 30 --only-summary \
		--threshold 'ttft.p95<800ms' --threshold 'error_rate<1%' \
		--mock-options "--ttft lognormal:250ms:0.3 --itl uniform:10ms:40ms" \
		|| test -e reports/latest/summary.json
	$(BIN)/loadtest report reports/latest/summary.json
	$(BIN)/python tests/browser.py reports/latest/report.html reports/screenshot.png
