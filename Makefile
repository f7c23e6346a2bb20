# Two commands: `make run` sets up and starts the dashboard; `make test` sets up and runs every test.
PYTHON ?= python3
# The CPU build of torch. With a GPU, install your CUDA build of torch into .venv first: it is kept.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test browser translations

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/streamlit run app.py

# Debian's Chromium for the end-to-end browser test (Playwright drives it; no browser download), and a font with
# Chinese characters (without one, Chinese text in screenshots shows as boxes).
browser:
	@command -v chromium >/dev/null && fc-list | grep -qi "WenQuanYi Micro Hei" || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei)

# pytest runs beside a real PostgreSQL server and a real Ray head (tests/cluster), started on loopback for the length
# of the run and stopped after it by scripts/services.sh (which installs Debian's postgresql if missing).
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	BIN=$(BIN) bash scripts/services.sh $(BIN)/pytest

# The catalogues (docs/translating.md): every marked string of the code into locales/lora_lab.pot, then into each
# language's .po (new ones empty, changed ones fuzzy, dropped ones obsolete) for a translator to fill in.
translations: setup
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --no-wrap \
		-o locales/lora_lab.pot app.py ui.py core pages
	$(BIN)/pybabel update -i locales/lora_lab.pot -d locales -D lora_lab --no-fuzzy-matching --ignore-obsolete \
		--no-wrap
