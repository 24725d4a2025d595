# Thin front over CMake. `make test` and `make demo` each install what they
# need first, so either alone sets up a fresh Debian 12 machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

JOBS ?= 2
SAN ?= 0
FUZZ_SECONDS ?= 0          # `make fuzz`: 0 runs until interrupted
FUZZ_SMOKE_SECONDS ?= 60   # bounded run inside `make test`

ifeq ($(SAN),1)
BUILD_DIR ?= build-san
CMAKE_FLAGS += -DSLUICE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD_DIR ?= build
endif
FUZZ_DIR := build-fuzz

# Debian 12 packages the project builds, tests and runs with. Kept exact:
# `make deps` installs only what is missing, so it is a no-op when present.
DEB_PACKAGES := \
  build-essential cmake pkg-config git \
  clang llvm libclang-rt-14-dev \
  libboost1.81-dev \
  libbpf-dev bpftool \
  libnftables-dev nftables libnftnl-dev libmnl-dev \
  nlohmann-json3-dev libexpected-dev libcli11-dev libtomlplusplus-dev \
  libssl-dev openssl \
  libsqlite3-dev sqlite3 libmimalloc-dev \
  libc-ares-dev libsystemd-dev libre2-dev liburing-dev \
  catch2 \
  iproute2 dnsmasq-base e2fsprogs systemd procps curl python3

# Only `make bench` needs these: the load generator, and the peers it
# measures sluice-mcpd against (bench/mcpd/package-lock.json; nginx is
# unpacked from Debian's package into the build tree, never installed as a
# service).
BENCH_DEB_PACKAGES := wrk sqlite3 curl

.PHONY: deps deps-deb deps-npm deps-bench bpffs configure build test unit fuzz-build fuzz-smoke fuzz demo bench install clean

deps: deps-deb deps-npm

deps-deb:
	@missing=(); \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p"); \
	done; \
	if ! command -v npm >/dev/null; then missing+=(nodejs npm); fi; \
	if [ $${#missing[@]} -eq 0 ]; then echo "deps: Debian packages present"; exit 0; fi; \
	echo "deps: installing $${missing[*]}"; \
	SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends "$${missing[@]}"

# npm packages of tests/ exactly as the committed lockfile says.
deps-npm:
	@if cmp -s tests/package-lock.json tests/node_modules/.sluice-lock-stamp 2>/dev/null; then \
	  echo "deps: npm packages present"; \
	else \
	  echo "deps: npm ci in tests/"; \
	  (cd tests && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp tests/package-lock.json tests/node_modules/.sluice-lock-stamp; \
	fi

# sluice-agent pins its programs and maps in bpffs. systemd mounts it at
# boot; other inits (PID 1 on these machines is not systemd) may not, and a
# fresh machine then has a bare /sys/fs/bpf. Root only: as another user the
# kernel tests skip (or fail under SLUICE_REQUIRE_KERNEL=1) by themselves.
bpffs:
	@if [ "$$(id -u)" -eq 0 ] && [ -d /sys/fs/bpf ] && ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then \
	  echo "setup: mounting bpffs at /sys/fs/bpf"; \
	  mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs: the kernel tests will say so"; \
	fi

configure:
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

unit: build
	@cd $(BUILD_DIR) && ctest --output-on-failure --timeout 1200

test: deps bpffs
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-smoke

$(FUZZ_DIR)/Makefile:
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

fuzz-build: $(FUZZ_DIR)/Makefile
	@cmake --build $(FUZZ_DIR) -j $(JOBS)

# Bounded fuzzing inside `make test`: any crash, leak or sanitizer report fails.
fuzz-smoke: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SMOKE_SECONDS)

fuzz: deps fuzz-build
	@tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

demo: deps bpffs
	@$(MAKE) --no-print-directory build
	@tests/demo/demo.sh $(BUILD_DIR)

deps-bench:
	@missing=(); \
	for p in $(BENCH_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p"); \
	done; \
	SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "deps: installing $${missing[*]}"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi
	@if cmp -s bench/mcpd/package-lock.json bench/mcpd/node_modules/.sluice-lock-stamp 2>/dev/null; then \
	  echo "deps: bench npm packages present"; \
	else \
	  echo "deps: npm ci in bench/mcpd/"; \
	  (cd bench/mcpd && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp bench/mcpd/package-lock.json bench/mcpd/node_modules/.sluice-lock-stamp; \
	fi
	@if [ ! -x $(BUILD_DIR)/bench/nginx/usr/sbin/nginx ]; then \
	  echo "deps: unpacking Debian's nginx into $(BUILD_DIR)/bench/nginx"; \
	  mkdir -p $(BUILD_DIR)/bench/nginx-deb && cd $(BUILD_DIR)/bench/nginx-deb && \
	  { apt-get download nginx 2>/dev/null || { apt-get update -qq && apt-get download nginx; }; } && \
	  dpkg-deb -x nginx_*.deb ../nginx; \
	fi

bench: deps bpffs
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory deps-bench
	@bench/run.sh $(BUILD_DIR)

install: build
	@cmake --install $(BUILD_DIR)

clean:
	@rm -rf build build-san $(FUZZ_DIR)
