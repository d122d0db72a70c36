# Homeward: one-word entry points. `make run` runs the whole system; `make test` runs the tests.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV := uv
RUN := $(UV) run --frozen

.PHONY: bootstrap up down status run test lint schemas e2e bench chaos clean image containers compose-check manifests

bootstrap:          ## install what this machine lacks (apt, uv, Python workspace)
	@scripts/bootstrap.sh

up: bootstrap       ## start Kafka, PostgreSQL and the mail server (idempotent)
	@$(RUN) homeward-stack up

down:               ## stop everything started by `make up` / `make run`
	@$(RUN) homeward stop
	@$(RUN) homeward-stack down

status:             ## show what is running
	@$(RUN) homeward-stack status

run: bootstrap      ## the main job: the whole system and the Coming Home scenario
	@$(RUN) homeward run

test: bootstrap     ## every test, against the real Kafka and PostgreSQL
	@$(RUN) pytest

lint: bootstrap     ## ruff and mypy
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy

# Containers (docs/operations.md, "Containers in CI"). `make test` runs these too, as tests marked
# `containers`; these targets run one part alone. Each installs what it needs (podman, runc,
# mmdebstrap, hadolint, kustomize, kubernetes-validate) or says why it cannot.
image: bootstrap    ## build the production image (docker, else podman from a local base) and lint it
	@scripts/containers/image.sh

containers: bootstrap  ## every container check: image smoke test, e2e from the image, testcontainers, compose, manifests
	@$(RUN) pytest -m containers

compose-check: bootstrap  ## docker-compose.yml up with a scenario, checked, then down -v (other host ports)
	@$(RUN) pytest tests/test_containers.py -k compose

manifests: bootstrap   ## kustomize build + kubernetes-validate --strict + Strimzi fields, base and overlays
	@scripts/containers/check-manifests.sh

schemas:            ## regenerate the committed JSON Schemas and AsyncAPI document
	@$(RUN) python -m homeward.contracts.schema --write

bench: bootstrap    ## benchmarks against same-run baselines: every stage, national size (about an hour on 2 cores today); pick with BENCH="e2e --placements 2000"
	@$(RUN) python -m benchmarks $(BENCH)

chaos: bootstrap    ## the fault campaign on a private stack (kill -9s, Kafka/PostgreSQL restarts, SMTP stop, bad records): 100k events; pick with CHAOS="--events 5000 --seed 7"
	@$(RUN) python -m chaos $(CHAOS)

clean: down
	rm -rf .local
