# Everything a fresh Debian/Ubuntu machine needs, installed on demand (run as root).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
DEB_PACKAGES := python3-venv docker-registry skopeo umoci busybox-static tini buildah runc
PYTEST_ARGS ?=

.PHONY: all deps venv test demo clean

all: venv

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info
