# Two commands on a fresh machine (see README.md):
#   make demo   -- installs, then runs the main job
#   make test   -- installs, then lint, type and import-layer checks, the docs build, the tests
VENV ?= .venv
PY := $(VENV)/bin/python
export KIOSK_SHARED ?= $(abspath ../shared)

LOCK := packaging/lock/requirements.txt packaging/lock/torch-build.txt packaging/lock/select.awk \
	packaging/lock/sync.py

$(VENV)/.kiosk-installed: pyproject.toml packaging/install.sh $(LOCK)
	bash packaging/install.sh $(VENV)

.PHONY: install lint test test-fast docs demo lock
install: $(VENV)/.kiosk-installed

# Re-resolves the lock (packaging/lock/) after a change to pyproject.toml's dependencies or
# packaging/lock/requirements.in, keeping the locked versions that still fit; then `make
# install` installs it. LOCK_ARGS=--upgrade takes the newest version of everything,
# LOCK_ARGS="--upgrade-package numpy" of one package; LOCK_ARGS=--check only checks that
# the lock is up to date. See docs/install/locking.md.
lock:
	VENV=$(VENV) bash packaging/lock.sh $(LOCK_ARGS)

# The main job: the project's deployment benchmark. Enroll six people from the first
# second of their clips, run five-second trials on the rest and on strangers (and each
# enrolled clip again against a recognizer without that person), with the finetuned CLIP
# and the MobileFaceNet gallery side by side, and write TP/FP/TN/FN, accuracy, FPR and
# FNR of both (out/simulation.json) and one report with plots (out/simulation.html).
# CLIP stands on RN50.pt when the model directory has it, else on an untrained RN50
# (every output then says UNTRAINED). The models come from $KIOSK_MODEL_DIR, else the
# shared folder's models/.
demo: install
	mkdir -p out
	KIOSK_MODEL_DIR="$${KIOSK_MODEL_DIR:-$(KIOSK_SHARED)/models}" \
	$(VENV)/bin/kiosk trials simulate --recognizer clip --recognizer gallery --pretrained auto \
		--leave-one-out --json out/simulation.json --report out/simulation.html

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The suite on TEST_WORKERS processes (pytest-xdist), each test handed to the next free one,
# the slow ones first (tests/conftest.py); TEST_WORKERS=0 runs it in this process alone.
TEST_WORKERS ?= 2
test: lint docs
	$(PY) -m pytest -n $(TEST_WORKERS) --maxschedchunk 1

# The unit tests alone: no ../shared data, no Qt, no torch (tests/conftest.py marks them).
test-fast: install
	$(PY) -m pytest -m unit -q

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning.
docs: install
	$(VENV)/bin/mkdocs build --strict -d site
