# Home Pocket server. `make run` and `make test` are all a newcomer needs (README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
PYTEST_ARGS ?=

.PHONY: run test test-distributed check-deploy bench cluster clean venv venv-dev schema

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"' \
		|| { echo "Python 3.11 or newer is needed ($(PYTHON))."; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "Cannot create a virtualenv: on Debian run 'apt-get install python3-venv'."; exit 1; }
	@$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime: $(VENV)/bin/python requirements.txt
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt pyproject.toml
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

## The whole server in the embedded mode: SQLite, local objects, Celery worker and beat, on $(HOST):$(PORT).
run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

## The whole suite in the embedded mode.
test: venv-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## The same suite against PostgreSQL and Redis on this machine and moto's S3 server (started here).
test-distributed: venv-dev
	$(PY) -m tests.harness.distributed -- $(PY) -m pytest $(PYTEST_ARGS)

## A local cluster for people: nginx (Debian's package) on $(CLUSTER_PORT) in front of two nodes with their
## signers, a Celery worker and beat, on PostgreSQL, Redis and moto's S3 (docs/cluster.md). Ctrl-C stops it.
CLUSTER_PORT ?= 8080
cluster: venv-dev
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is needed: apt-get install -y nginx"; exit 1; }
	$(PY) -m tests.harness.distributed -- $(PY) -m tests.harness.cluster --port $(CLUSTER_PORT)

## Django's deployment checks with production-like settings (CI runs it).
check-deploy: venv
	DEBUG=0 SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	AUDIT_HASH_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))') \
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/homepocket REDIS_URL=redis://127.0.0.1:6379/0 \
	S3_BUCKET=homepocket S3_ENDPOINT_URL=http://127.0.0.1:9000 \
	SECURE_SSL_REDIRECT=1 SECURE_HSTS_SECONDS=31536000 SECURE_HSTS_INCLUDE_SUBDOMAINS=1 SECURE_HSTS_PRELOAD=1 \
	SESSION_COOKIE_SECURE=1 CSRF_COOKIE_SECURE=1 TRUST_X_FORWARDED_PROTO=1 ALLOWED_HOSTS=homepocket.example \
	$(PY) manage.py check --deploy --fail-level WARNING

## The OpenAPI schema, validated.
schema: venv
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

## ASGI server comparison (docs/PERFORMANCE.md).
bench: venv-dev
	$(PY) bench/asgi_servers.py

clean:
	rm -rf $(VENV) var/test-*
