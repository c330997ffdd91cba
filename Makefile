# Salvage — plain GNU make. `make` builds ./salvage; `make check` installs what
# is missing, builds and runs every test; `make demo` runs the sample recovery.
# Project flags live in SALVAGE_* so `make CFLAGS=...` (sanitizers, coverage)
# keeps the Lua and library headers.

CC      ?= cc
CFLAGS  ?= -O2 -g
LDFLAGS ?=
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
WERROR  ?=
SANITIZE ?=

PKGS := lua5.4 libmariadb libcurl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SALVAGE_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-Isrc -I$(BUILD) $(PKG_CFLAGS) $(if $(WERROR),-Werror)
ifneq ($(SANITIZE),)
SALVAGE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SALVAGE_LDFLAGS += -fsanitize=address,undefined
endif
SALVAGE_LIBS := $(PKG_LIBS) -lreadline -lm -lpthread

# Layers: pure C in src/<area>/ (no lua.h), bindings src/l<area>.c (their shared
# helpers in src/lutil.c, not a module), host src/*.c.
PURE_SRCS    := $(sort $(wildcard src/*/*.c))
BINDING_SRCS := $(filter-out src/lutil.c,$(sort $(wildcard src/l*.c)))
HOST_SRCS    := src/host.c src/repl.c src/lutil.c
STDLIB_LUA   := $(sort $(shell find lua/stdlib -name '*.lua' 2>/dev/null))

CORE_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(PURE_SRCS) $(BINDING_SRCS) $(HOST_SRCS)) \
	$(BUILD)/gen/stdlib.o $(BUILD)/gen/preload.o

CTEST_SRCS := $(sort $(wildcard tests/c/test_*.c))
CTESTS     := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(CTEST_SRCS))

MODULES := $(patsubst src/l%.c,$(BUILD)/lua/salvage/%.so,$(BINDING_SRCS))

.PHONY: all deps dberr deb man check test demo demo-kvm bench fuzz modules install clean asan-check
all: salvage

salvage: $(BUILD)/salvage
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/salvage: $(BUILD)/src/main.o $(BUILD)/libsalvage.a
	$(CC) $(CFLAGS) $(SALVAGE_LDFLAGS) $(LDFLAGS) -Wl,-E -o $@ $^ $(SALVAGE_LIBS)

$(BUILD)/libsalvage.a: $(CORE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c $(wildcard src/*.h src/*/*.h) | $(BUILD)/gen/preload.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SALVAGE_CFLAGS) -c -o $@ $<

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c src/host.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SALVAGE_CFLAGS) -Wno-overlength-strings -c -o $@ $<

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	cc -O1 -o $@ $<

$(BUILD)/gen/stdlib.c: $(BUILD)/tools/embed $(STDLIB_LUA) Makefile
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ $(STDLIB_LUA)

$(BUILD)/gen/preload.c: $(BINDING_SRCS) tools/genpreload.sh
	@mkdir -p $(dir $@)
	sh tools/genpreload.sh $@ $(BINDING_SRCS)

# C unit tests (cmocka) link the core library, never main.c.
$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libsalvage.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SALVAGE_CFLAGS) $(SALVAGE_LDFLAGS) $(LDFLAGS) -Wl,-E -o $@ $< $(BUILD)/libsalvage.a $(SALVAGE_LIBS) -lcmocka

ctests: $(CTESTS)

# Each binding as a loadable module for stock lua5.4: lua5.4 -e 'package.cpath="build/lua/?.so;"..package.cpath'
modules: $(MODULES)
# Binding code other bindings call (the binding helpers, the salvage.stream box) goes into every module.
BINDING_SHARED := src/lutil.c src/lstream.c
$(BUILD)/lua/salvage/%.so: src/l%.c $(PURE_SRCS) $(BINDING_SHARED)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SALVAGE_CFLAGS) -fPIC -shared -o $@ $< $(filter-out $<,$(BINDING_SHARED)) $(PURE_SRCS) $(PKG_LIBS)

deps:
	@sh tools/deps.sh

# The man page: man/salvage.1.in with every command's own --help, made at build
# time from the binary just built, so it can never be stale.
man: $(BUILD)/salvage.1
$(BUILD)/salvage.1: man/salvage.1.in tools/genman.sh $(BUILD)/salvage
	sh tools/genman.sh $(BUILD)/salvage man/salvage.1.in > $@.tmp && mv $@.tmp $@

# MariaDB's error names, regenerated from libmariadb-dev's headers (commit the result).
dberr:
	sh tools/gendberr.sh src/db/dberr.c

check: deps
	$(MAKE) all ctests modules
	sh tests/run

test: all ctests modules
	sh tests/run

asan-check: deps
	$(MAKE) BUILD=build-asan CC=clang SANITIZE=1 build-asan/salvage
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	SALVAGE=$(CURDIR)/build-asan/salvage SALVAGE_SUITES="lua cram" sh tests/run

demo: deps
	$(MAKE) all
	./salvage demo

demo-kvm: deps
	$(MAKE) all
	./salvage demo --kvm

bench: deps
	$(MAKE) all
	@for b in bench/*.sh; do echo "== $$b"; sh $$b || exit 1; done

FUZZ_SECONDS ?= 20
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
fuzz: deps
	@mkdir -p build-fuzz
	@set -e; for f in $(FUZZ_SRCS); do \
		n=$$(basename $$f .c); \
		clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc -o build-fuzz/$$n $$f $(PURE_SRCS); \
		mkdir -p build-fuzz/corpus-$$n; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
		if ./build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus-$$n \
			$$( [ -d fuzz/seeds/$$n ] && echo fuzz/seeds/$$n ) > build-fuzz/$$n.log 2>&1; then \
			grep -E '^stat::number_of_executed_units|^Done' build-fuzz/$$n.log | tail -1; \
		else \
			tail -40 build-fuzz/$$n.log; echo "fuzz: $$n FAILED (log: build-fuzz/$$n.log)"; exit 1; \
		fi; \
	done

# Layout read by salvage.examples and salvage.demo (bin/../share/salvage).
SHARE := $(DESTDIR)$(PREFIX)/share/salvage
install: all man
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/examples $(SHARE)/cloudstack $(SHARE)/cloudstack-sim \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 salvage $(DESTDIR)$(PREFIX)/bin/salvage
	install -m 644 scripts/examples/*.lua $(SHARE)/examples/
	install -m 644 data/cloudstack/*.sql data/cloudstack/README.md $(SHARE)/cloudstack/
	install -m 644 tests/cloudstack-sim/simulator.py tests/cloudstack-sim/README.md $(SHARE)/cloudstack-sim/
	install -m 644 NOTICE $(SHARE)/NOTICE
	install -m 644 $(BUILD)/salvage.1 $(DESTDIR)$(PREFIX)/share/man/man1/salvage.1
	install -m 644 tools/salvage.bash-completion $(DESTDIR)$(PREFIX)/share/bash-completion/completions/salvage

# The Debian package, built by the ordinary tools (debian/, debhelper) in a copy
# of the tree so that this build directory is left alone; lintian must report
# no error, and the unpacked package must run `salvage demo` from its own data.
# Result: build-deb/salvage_<version>_<arch>.deb (install: dpkg -i; apt-get -f install)
DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
deb: deps
	rm -rf build-deb && mkdir -p build-deb/salvage-$(DEB_VERSION)
	git ls-files -co --exclude-standard | grep -v '^build' | tar -cf - -T - | tar -xf - -C build-deb/salvage-$(DEB_VERSION)
	cd build-deb/salvage-$(DEB_VERSION) && dpkg-buildpackage -us -uc -b
	lintian --fail-on error build-deb/salvage_$(DEB_VERSION)_*.deb
	@echo "deb: salvage demo from the unpacked package (dpkg -x)"
	dpkg -x build-deb/salvage_$(DEB_VERSION)_*.deb build-deb/root
	build-deb/root/usr/bin/salvage demo > build-deb/demo.log 2>&1 || { tail -30 build-deb/demo.log; exit 1; }
	@tail -1 build-deb/demo.log
	@ls build-deb/*.deb

clean:
	rm -rf build build-asan build-fuzz build-deb salvage
