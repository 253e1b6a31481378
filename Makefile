# drkit — `make demo` runs the end-to-end demo, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install test demo data readme-assets clean

install: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package when apt is available.
data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dataset-fashion-mnist with apt-get"; \
	    (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)); \
	  else \
	    echo "Fashion-MNIST not found at $(FMNIST) and apt-get is unavailable: run $(VENV)/bin/drkit demo --data-dir DIR (a folder with the four IDX .gz files)"; \
	  fi; \
	fi

test: install
	$(PY) -m pytest -q tests

demo: install
	$(VENV)/bin/drkit demo --out demo-out

# Regenerates the demo table and inspect grid shown in README.md (runs the demo first, writes the README block),
# and the benchmark table from benchmarks/results/.
readme-assets: demo
	mkdir -p docs
	cp demo-out/inspect_grid.png docs/inspect_grid.png
	cp demo-out/table.md docs/demo_table.md
	$(PY) benchmarks/readme_block.py README.md demo docs/demo_table.md
	$(PY) benchmarks/summary.py README.md

clean:
	rm -rf $(VENV) demo-out .pytest_cache
