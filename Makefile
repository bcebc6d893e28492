# Two commands set up a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint bench clean wordnet

# WordNet's dict files (Debian's wordnet-base) feed cc3m_caption, concept_balance and
# `curate metaclip build-metadata`: installed where apt-get and root allow, else a hint.
WORDNET_DIR ?= /usr/share/wordnet
wordnet:
	@if [ -f $(WORDNET_DIR)/index.noun ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" -eq 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base; \
	else echo "note: WordNet not found at $(WORDNET_DIR): 'sudo apt-get install wordnet-base' (or set WORDNET_DIR) for cc3m_caption, concept_balance and curate metaclip build-metadata"; fi

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

quickstart: $(STAMP) wordnet
	$(BIN)/curate run pipelines/quickstart.yaml

test: $(STAMP) wordnet
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check curate tests benchmarks

clean:
	rm -rf $(VENV) runs data .pytest_cache
