# The two commands of the README: `make demo` and `make test`. Both set up what they need.
.PHONY: bootstrap demo test lint reliability bench

PY := .venv/bin/python

bootstrap:
	@./tools/bootstrap.sh

demo: bootstrap
	$(PY) tools/demo.py

test: bootstrap lint
	$(PY) -m pytest -q

lint: bootstrap
	.venv/bin/ruff check bzlogger tests tools
	.venv/bin/mypy bzlogger

# The long loops (about an hour); SCALE=0.1 for a quick run. See docs/reliability.md.
# First the other slow tests (BLE recovery 20x per fault, GATT morning, daemon day),
# then the campaigns, which print the summary table.
reliability: bootstrap
	$(PY) -m pytest -q -m slow tests --ignore=tests/reliability
	$(PY) tools/reliability.py --scale $(or $(SCALE),1)

bench: bootstrap
	$(PY) tools/bench_store.py
	$(PY) tools/bench_match.py
