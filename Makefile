# bastion — every target creates the environment it needs from a clean clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-base lint fuzz bench bench-peers clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned (CPU build); a bare "torch" would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,fuzz]"
	touch $(STAMP)

# the base install (no extras) in its own venv: it must work and say what it skipped
BASE := .venv-base
BASE_STAMP := $(BASE)/.installed
$(BASE_STAMP): pyproject.toml
	rm -rf $(BASE)
	$(PY) -m venv $(BASE)
	$(BASE)/bin/pip install -q -e . pytest pytest-timeout
	touch $(BASE_STAMP)

test-base: $(BASE_STAMP)
	$(BASE)/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/base_install tests/base_install

EXAMPLE := examples/credit-scoring
DEMO_STORE := demo-history.sqlite3
EVIDENCE := --policy $(EXAMPLE)/bastion.toml --store $(DEMO_STORE) -q
demo: $(STAMP)
	$(BIN)/python $(EXAMPLE)/build_demo.py
	@echo "== verify the released model against its signature (exit 0 expected)"
	$(BIN)/bastion verify $(EXAMPLE)/model/credit_model.joblib --key $(EXAMPLE)/keys/release.pub --no-store
	@echo "== scan the whole project (exit 1 expected: the tampered copy is caught)"
	-$(BIN)/bastion scan $(EXAMPLE) --policy $(EXAMPLE)/bastion.toml --no-store --format html --output demo-report.html -q
	$(BIN)/bastion scan $(EXAMPLE) --policy $(EXAMPLE)/bastion.toml --no-store --format text || test $$? -eq 1
	@echo "== ML-BOM (CycloneDX 1.6)"
	$(BIN)/bastion bom $(EXAMPLE) --output demo-bom.json
	@echo "== check the new data version against the trusted manifest (exit 1 expected: tampered rows, label flips, a backdoor, personal data, a leaked test row)"
	$(BIN)/bastion data check --train $(EXAMPLE)/data/incoming/german_credit.csv --test $(EXAMPLE)/data/incoming/test.csv --target creditability --baseline-manifest $(EXAMPLE)/data/german_credit.manifest.json --policy $(EXAMPLE)/bastion.toml --no-store --format html --output demo-data-report.html -q || test $$? -eq 1
	$(BIN)/bastion data diff $(EXAMPLE)/data/german_credit.csv $(EXAMPLE)/data/incoming/german_credit.csv --policy $(EXAMPLE)/bastion.toml --no-store || test $$? -eq 1
	@echo "== probe the released model with the project's probe spec: the cheapest flips and the membership ROC in the HTML report (PRB001 is reported; the example policy waives it: a loan officer reviews declines)"
	$(BIN)/python $(EXAMPLE)/build_demo.py --probe-split demo-probe
	$(BIN)/bastion probe $(EXAMPLE)/model/credit_model.joblib --data demo-probe/test.csv --train demo-probe/train.csv --target creditability --spec $(EXAMPLE)/probe-spec.json --policy $(EXAMPLE)/bastion.toml --no-store --format html --output demo-probe-report.html -q || test $$? -eq 1
	@echo "HTML reports written to demo-report.html, demo-data-report.html and demo-probe-report.html, BOM to demo-bom.json"
	@echo "== evidence for the release gate, recorded in $(DEMO_STORE): scan, signature, data, probe, lineage"
	rm -f $(DEMO_STORE) $(DEMO_STORE)-wal $(DEMO_STORE)-shm
	@echo "   (the model folder holds the tampered copy too: the scan fails, and the gate judges each file by its digest)"
	$(BIN)/bastion scan $(EXAMPLE)/model $(EVIDENCE) -o /dev/null || test $$? -eq 1
	$(BIN)/bastion verify $(EXAMPLE)/model/credit_model.joblib --key $(EXAMPLE)/keys/release.pub $(EVIDENCE) -o /dev/null
	$(BIN)/bastion data check --train $(EXAMPLE)/data/german_credit.csv --target creditability $(EVIDENCE) -o /dev/null
	$(BIN)/bastion probe $(EXAMPLE)/model/credit_model.joblib --data $(EXAMPLE)/data/incoming/test.csv --target creditability --label-map good=1 bad=0 --immutable age_in_years personal_status_and_sex foreign_worker --monotone credit_amount=-1 duration_in_month=-1 --attacks evasion,extraction $(EVIDENCE) -o /dev/null
	$(BIN)/bastion lineage record --model $(EXAMPLE)/model/credit_model.joblib --dataset $(EXAMPLE)/data/german_credit.manifest.json --code $(EXAMPLE)/train.py --param model=logistic-regression --param split_seed=0 --deployment credit-scoring-guard --store $(DEMO_STORE)
	$(BIN)/bastion lineage show $(EXAMPLE)/model/credit_model.joblib --store $(DEMO_STORE)
	@echo "== release gate on the tampered copy (exit 1 expected: blocking scan, no signature, no lineage, no probe)"
	$(BIN)/bastion gate $(EXAMPLE)/model/tampered/credit_model.joblib --policy $(EXAMPLE)/bastion.toml --store $(DEMO_STORE) || test $$? -eq 1
	@echo "== release gate on the released model (exit 0 expected)"
	$(BIN)/bastion gate $(EXAMPLE)/model/credit_model.joblib --policy $(EXAMPLE)/bastion.toml --store $(DEMO_STORE)
	$(BIN)/bastion report compliance --framework eu-ai-act --store $(DEMO_STORE) -o demo-compliance.html
	@echo "== the runtime guard in front of the released model on a loopback port: legitimate traffic, no credential, personal data, an out-of-contract row, an extraction attempt; audit chain verified, runtime report in demo-guard-report.html"
	$(BIN)/python $(EXAMPLE)/guard_demo.py --workdir demo-guard --report demo-guard-report.html
	@echo "Compliance evidence in demo-compliance.html. Open the dashboard on the demo store:"
	@echo "  $(BIN)/bastion guard keys create --scope audit:read --note demo --keys-db demo-guard-keys.sqlite3"
	@echo "  $(BIN)/bastion ui --store $(DEMO_STORE) --keys-db demo-guard-keys.sqlite3"

# the dashboard's browser tests drive Debian's Chromium (Playwright never downloads a browser)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium) || (sudo apt-get update && sudo apt-get install -y chromium)

# the guard's shared-limits tests start Debian's redis-server themselves, on a free loopback port
REDIS := /usr/bin/redis-server
$(REDIS):
	apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server) || (sudo apt-get update && sudo apt-get install -y redis-server)

test: $(STAMP) $(CHROMIUM) $(REDIS)
	$(BIN)/ruff check src tests bench fuzz docs tools
	$(BIN)/ruff format --check src tests bench fuzz docs tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(MAKE) test-base
	$(BIN)/python fuzz/run_all.py --runs 30000

lint: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz docs
	$(BIN)/ruff format --check src tests bench fuzz docs
	$(BIN)/mypy
	$(BIN)/lint-imports

fuzz: $(STAMP)
	$(BIN)/python fuzz/run_all.py --seconds 120 --corpus .fuzz-corpus

# peers live in their own environment so their pins never touch bastion's
PEERS := bench/.venv-peers
$(PEERS)/bin/modelaudit:
	$(PY) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q modelscan picklescan fickling modelaudit

bench-peers: $(PEERS)/bin/modelaudit

bench: $(STAMP) bench-peers
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(BASE) build dist .pytest_cache .mypy_cache demo-report.html demo-data-report.html demo-probe-report.html demo-probe demo-compliance.html demo-history.sqlite3* demo-guard demo-guard-report.html
