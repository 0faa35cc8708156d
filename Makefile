# The two commands of the README. Both create .venv on first use.
#   make demo   set up, run the whole pipeline locally on MovieLens-1M, serve
#               it on 127.0.0.1 and print recommendations for a real user
#   make test   set up and run the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo demo-lastfm test

setup:
	@scripts/setup_env.sh

demo: setup
	@scripts/demo.sh movielens-1m

demo-lastfm: setup
	@scripts/demo.sh lastfm-2k

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)
