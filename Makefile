# Corral: the two commands a new user runs are `make demo` and `make check`.
# Both start with `make deps` (idempotent): Debian packages, .venv with Corral
# installed in editable mode, and the cached guest kernel/initrd for KVM tests.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
GUEST_CACHE := $(CURDIR)/.cache/guest
DEB_PACKAGES := qemu-system-x86 qemu-utils busybox-static socat e2fsprogs iproute2 \
	openssh-server debootstrap ganeti-os-noop python3-ganeti-rapi ganeti-htools \
	procps psmisc util-linux lvm2 drbd-utils pkg-config gcc libvirt-dev \
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
PYTEST_ARGS ?=
# The fast tiers run on pytest-xdist workers: their integration tests mostly
# wait for daemons, so 4 workers beat 2 even on 2 cores (6 gain nothing).
# Tests sharing a module-scoped fixture carry @pytest.mark.xdist_group for
# --dist loadgroup; note xdist 3.8 ignores the groups under pytest 9 (such a
# fixture is then set up once per worker: slower, still correct).
# The slow tier (vclusters, TCG guests whose timing matters) runs serially.
# `make check` runs both and fails if either failed; pytest's "no tests
# selected" (exit 5, e.g. PYTEST_ARGS="-k name" matching one tier) is not a failure.
FAST_JOBS ?= 4
PYTEST := PATH=$(CURDIR)/$(VENV)/bin:$$PATH CORRAL_GUEST_CACHE=$(GUEST_CACHE) $(VPY) -m pytest -q
FAST_TIER := -m "not slow" -n $(FAST_JOBS) --dist loadgroup

.PHONY: deps deb-packages venv guest-image install demo check check-fast clean

deps: deb-packages venv guest-image

deb-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

guest-image: venv
	@$(VPY) tools/guest-image $(GUEST_CACHE) >/dev/null

install:
	$(PYTHON) -m pip install .

demo: deps
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VPY) tools/demo

check: deps
	@status=0; \
	$(PYTEST) $(FAST_TIER) test $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	$(PYTEST) -m slow --durations=20 test $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

check-fast: deps
	$(PYTEST) $(FAST_TIER) test $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache build *.egg-info
