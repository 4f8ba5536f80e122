# ssltheory: `make demo` and `make test` set everything up on a fresh machine (Python >= 3.10).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo

.PHONY: demo test lint bench clean data experiments-smoke experiments-cpu experiments-fmnist docs-figures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorboard,wandb,slurm,notebooks]'
	touch $(STAMP)

## demo: the paper's Figs. 3, 4 and 5 from the theory, a synthetic linear run and a digits DirectPred run, and
## the theory's prediction beside both (compare), into runs/demo/ (about a minute on 2 cores)
demo: $(STAMP)
	$(BIN)/ssltheory phase-portrait --eta 0,0.01,1 --out $(DEMO)/fig3-phase-portrait
	$(BIN)/ssltheory fixed-points --out $(DEMO)/fig4-fixed-points
	$(BIN)/ssltheory simulate --model modes --eta 0,0.04,0.1 --out $(DEMO)/fig5-trajectories
	$(BIN)/ssltheory train synthetic --epochs 10 --out $(DEMO)/synthetic-linear --force
	$(BIN)/ssltheory train digits --predictor directpred --batch-size 64 --epochs 10 --knn-every 5 \
		--out $(DEMO)/digits-directpred --force
	$(BIN)/ssltheory compare $(DEMO)/synthetic-linear $(DEMO)/digits-directpred --out $(DEMO)/compare
	@echo
	@echo "Demo figures (PNG, with the numbers beside them as JSON):"
	@ls -1 $(DEMO)/*/*.png

## docs-figures: the README's three figures (docs/phase_portrait.png, docs/dynamics.png, docs/compare.png), offline on
## bundled data through the command line: a phase portrait, a 10-epoch digits run, a synthetic run and compare (~2 min)
DOCS_RUNS := runs/docs-figures
docs-figures: $(STAMP)
	$(BIN)/ssltheory phase-portrait --eta 0.01 --out $(DOCS_RUNS)/phase-portrait
	$(BIN)/ssltheory train digits --predictor directpred --batch-size 64 --epochs 10 --knn-every 5 \
		--out $(DOCS_RUNS)/digits --force
	$(BIN)/ssltheory train synthetic --epochs 10 --out $(DOCS_RUNS)/synthetic --force
	$(BIN)/ssltheory compare $(DOCS_RUNS)/synthetic --out $(DOCS_RUNS)/compare
	$(BIN)/python docs/figures.py $(DOCS_RUNS)

## test: lint and the test suite
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

## experiments-smoke: every runnable paper result at smoke scale into runs/experiments/ (CPU, ~45 min)
EXPERIMENTS := fig2 fig3 fig4 fig5 fig7 fig8 fig9 table1 table2 table3 table5 table6 table7 table8 table9 \
	unigrad-methods unigrad-table2 unigrad-table3 unigrad-table4 unigrad-table9-10 theory-unified phase-diagram \
	collapse-imagenet
experiments-smoke: $(STAMP)
	for e in $(EXPERIMENTS); do $(BIN)/ssltheory experiment $$e --scale smoke || exit 1; done

## experiments-cpu: the DirectPred tables and the collapse study at cpu scale, 3 seeds, verdicts against the paper,
## and the phase diagram on digits (CPU, hours)
CPU_EXPERIMENTS := table1 table2 table3 table5 table6 table7 table8 table9 fig2 collapse-imagenet
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
experiments-cpu: $(STAMP)
	for e in $(CPU_EXPERIMENTS); do $(BIN)/ssltheory experiment $$e --scale cpu --seeds 3 --jobs $(JOBS) || exit 1; done
	$(BIN)/ssltheory experiment phase-diagram-digits --scale cpu --jobs $(JOBS)

## experiments-fmnist: the fmnist scale (issue 25): Tables 1, 3, 7, 8 and the collapse study with 3 seeds, the
## weight-decay sweeps, UniGrad's methods table and the phase diagram on Fashion-MNIST's 60,000 images (CPU,
## ~4 h on 2 cores; make data)
FMNIST_EXPERIMENTS := table1 table3 table7 table8 collapse-imagenet table3-sweep table7-sweep
experiments-fmnist: $(STAMP) data
	for e in $(FMNIST_EXPERIMENTS); do $(BIN)/ssltheory experiment $$e --scale fmnist --seeds 3 --jobs $(JOBS) || exit 1; done
	$(BIN)/ssltheory experiment unigrad-methods --scale fmnist --jobs $(JOBS)
	$(BIN)/ssltheory experiment phase-diagram-fmnist --scale fmnist --jobs $(JOBS)

## data: Fashion-MNIST's four files from Debian's package where apt-get exists (as root or through sudo), else how
## to get them; the tests pass without them and use them where they are
FMNIST := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST is in $(FMNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then apt-get install -y -q dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then sudo apt-get install -y -q dataset-fashion-mnist; \
	else echo "no apt-get here: get Fashion-MNIST with 'ssltheory train fashion-mnist --download --data-dir data' \
	(torchvision, into data/FashionMNIST/raw) or copy the four idx .gz files into a folder and pass --data-dir"; fi

## bench: speed ratios measured in one run (not part of the tests)
bench: $(STAMP)
	$(BIN)/python bench/bench_modes.py
	$(BIN)/python bench/bench_train_overhead.py
	$(BIN)/python bench/bench_live_record.py
	$(BIN)/python bench/bench_methods.py
	$(BIN)/python bench/bench_jobs.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
