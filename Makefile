# Everything runs from .venv, created on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The report tests and `make report-screenshot` drive Debian's chromium: Playwright's own browser
# download cannot run here.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install demo test check lint typecheck bench soak fuzz clean

# The venv and its pip, then the package with EXTRAS (one resolution: the test install does not
# install the plain package first).
define install_package
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.$(1)'
endef

$(STAMP): pyproject.toml
	$(call install_package,)
	touch $@

install: $(STAMP)

# Chromium is an order-only prerequisite: installed whenever it is missing, even with the stamp there.
$(TEST_STAMP): pyproject.toml | $(CHROMIUM)
	$(call install_package,[test])
	touch $(STAMP) $@

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# A 30-second conversation load test against the built-in mock: prints the summary and report path.
demo: $(STAMP)
	$(BIN)/locust -f locustfiles/chat.py --headless -u 20 -r 10 -t 30s --think-time 0.5-1.5 --stop-timeout 10 \
		--only-summary --mock-options "--ttft lognormal:250ms:0.3 --itl uniform:10ms:40ms"

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

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

# Not in CI: 30 minutes against the mock with faults on; fails when the generator's memory grows.
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes 30

# Not in CI: coverage-guided fuzzing of the SSE decoder against the reference decoder of the tests.
fuzz: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python bench/fuzz_sse.py -runs=2000000 -max_len=4096

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache

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
