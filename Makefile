# tunnelwatch: the two commands a new user needs are `make demo` and `make test`.
# Each installs what it needs: a .venv with the Python packages, Azurite from the npm
# registry, and (as root) the Debian packages the node tests drive for real (iptables, ufw,
# netcat-openbsd, nftables).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite

.PHONY: demo test lint typecheck pytest bench sysdeps venv clean infra-check

demo: sysdeps $(STAMP) $(AZURITE)
	@$(BIN)/python -m examples.demo

test: sysdeps $(STAMP) $(AZURITE) lint typecheck pytest

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (tunnelwatch targets Python 3.11, what Flex Consumption runs); set PYTHON=..." >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# Azurite (Blob/Queue/Table emulator) from the npm registry, pinned in package.json.
$(AZURITE): package.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js (Debian: apt-get install nodejs npm)" >&2; exit 2; }
	npm install --no-audit --no-fund --silent
	@touch $@

# Debian packages for the namespace tests. Installs only what is missing, and only as root;
# without root the namespace tests skip with a reason (and fail when CI=true).
sysdeps:
	@missing=""; \
	command -v iptables-restore >/dev/null || missing="$$missing iptables"; \
	command -v iptables-legacy-restore >/dev/null || missing="$$missing iptables"; \
	command -v ufw >/dev/null || missing="$$missing ufw"; \
	command -v nc.openbsd >/dev/null || missing="$$missing netcat-openbsd"; \
	command -v ncat >/dev/null || missing="$$missing ncat"; \
	command -v busybox >/dev/null || missing="$$missing busybox"; \
	command -v nc.traditional >/dev/null || missing="$$missing netcat-traditional"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v mawk >/dev/null || missing="$$missing mawk"; \
	command -v gawk >/dev/null || missing="$$missing gawk"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: missing$$missing; namespace tests will skip (run as root to install them)"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Compile infra/ with the Bicep compiler, and, when `az` is logged in, ask Azure what a
# subscription deployment would change (nothing is deployed). Not part of `make test`: it needs
# the Azure CLI with Bicep, which cannot be installed on the build machines. Run it once before
# the first `azd up` (docs/deploy.md). INFRA_LOCATION defaults to $AZURE_LOCATION; extra
# parameters in INFRA_PARAMS, for example INFRA_PARAMS="vnetEnabled=true enableNodeProbes=true".
INFRA_ENV      ?= $(or $(AZURE_ENV_NAME),tunnelwatch-check)
INFRA_LOCATION ?= $(AZURE_LOCATION)
INFRA_PARAMS   ?=
infra-check:
	@command -v az >/dev/null 2>&1 || { echo "error: infra-check needs the Azure CLI (az) with Bicep: install az (https://learn.microsoft.com/cli/azure/install-azure-cli), then run 'az bicep install'" >&2; exit 2; }
	az bicep build -f infra/main.bicep --stdout >/dev/null
	@echo "infra/main.bicep compiles"
	@if ! az account show >/dev/null 2>&1; then \
	  echo "note: not logged in to Azure (az login): what-if skipped"; \
	elif [ -z "$(INFRA_LOCATION)" ]; then \
	  echo "error: what-if needs a region: INFRA_LOCATION=<region> (or AZURE_LOCATION)" >&2; exit 2; \
	else \
	  echo "what-if in subscription $$(az account show --query id -o tsv), $(INFRA_LOCATION):"; \
	  az deployment sub what-if --location "$(INFRA_LOCATION)" -f infra/main.bicep \
	    -p environmentName=$(INFRA_ENV) location=$(INFRA_LOCATION) $(INFRA_PARAMS); \
	fi

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
