# wala: build, test and install.
#   make build                       release binaries (cargo, --locked)
#   make man                         man pages generated from the binaries' --help (help2man)
#   make test                        scripts/test.sh (Rust checks and tests) and tests/boot/check.sh
#   make install DESTDIR= PREFIX=/usr
#   make deb                         target/debian/wala_<version>_<arch>.deb (packaging/build-deb.sh)
#   make rpm                         target/rpm/wala-<version>-1.<arch>.rpm (packaging/build-rpm.sh)
# The units name the binaries by their installed path; with SBINDIR other than /usr/sbin the
# installed copies are rewritten to match.

PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMDGENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DRACUTMODDIR ?= $(PREFIX)/lib/dracut/modules.d/90wala
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
RELEASE_DIR := $(CARGO_TARGET_DIR)/release
MAN_DIR := $(CARGO_TARGET_DIR)/man
BINS := $(RELEASE_DIR)/wala-provision $(RELEASE_DIR)/wala-agentd $(RELEASE_DIR)/wala-crypto
MANPAGES := $(MAN_DIR)/wala-provision.8 $(MAN_DIR)/wala-agentd.8 $(MAN_DIR)/waagent.8
UNITS := $(wildcard systemd/*.service systemd/*.slice)
UDEV_RULES := $(wildcard systemd/udev/*.rules)
INSTALL ?= install

export CARGO_TARGET_DIR

.PHONY: all build man test install deb rpm clean-man FORCE

all: build man

build: $(BINS)

# Always ask cargo: it rebuilds only what changed, and make never installs a stale binary. Three
# cargo runs, not one: cargo unifies the library's features over the packages of one run, and
# only wala-crypto, the short-lived helper, turns on the library's `https` (native-tls): built
# apart, wala-provision and wala-agentd link no TLS or crypto library (docs/security.md).
$(BINS) &: FORCE
	$(CARGO) build --release --locked -p wala-provision
	$(CARGO) build --release --locked -p wala-agentd
	$(CARGO) build --release --locked -p wala-crypto

man: $(MANPAGES)

$(MANPAGES) &: $(BINS) packaging/gen-man.sh
	packaging/gen-man.sh $(RELEASE_DIR) $(MAN_DIR)

clean-man:
	rm -f $(MANPAGES)

test:
	scripts/test.sh
	tests/boot/check.sh

install: $(BINS) $(MANPAGES)
	$(INSTALL) -d $(DESTDIR)$(SBINDIR)
	$(INSTALL) -m 0755 $(RELEASE_DIR)/wala-provision $(DESTDIR)$(SBINDIR)/wala-provision
	$(INSTALL) -m 0755 $(RELEASE_DIR)/wala-agentd $(DESTDIR)$(SBINDIR)/wala-agentd
	$(INSTALL) -m 0755 $(RELEASE_DIR)/wala-crypto $(DESTDIR)$(SBINDIR)/wala-crypto
	ln -sfn wala-agentd $(DESTDIR)$(SBINDIR)/waagent
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for u in $(UNITS); do \
		sed 's|/usr/sbin/|$(SBINDIR)/|g' $$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; \
	done
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDGENERATORDIR)
	ln -sfn $(SBINDIR)/wala-provision $(DESTDIR)$(SYSTEMDGENERATORDIR)/wala-provision-generator
	$(INSTALL) -d $(DESTDIR)$(UDEVRULESDIR)
	for r in $(UDEV_RULES); do \
		$(INSTALL) -m 0644 $$r $(DESTDIR)$(UDEVRULESDIR)/ || exit 1; \
	done
	$(INSTALL) -d $(DESTDIR)$(TMPFILESDIR)
	$(INSTALL) -m 0644 systemd/tmpfiles.d/wala.conf $(DESTDIR)$(TMPFILESDIR)/wala.conf
	$(INSTALL) -d $(DESTDIR)$(DRACUTMODDIR)
	$(INSTALL) -m 0755 dracut/modules.d/90wala/module-setup.sh $(DESTDIR)$(DRACUTMODDIR)/
	$(INSTALL) -m 0755 dracut/modules.d/90wala/wala-initrd-relabel.sh $(DESTDIR)$(DRACUTMODDIR)/
	$(INSTALL) -m 0644 dracut/modules.d/90wala/wala-provision-initrd.service $(DESTDIR)$(DRACUTMODDIR)/
	$(INSTALL) -d $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	$(INSTALL) -m 0644 config/logrotate.waagent $(DESTDIR)$(SYSCONFDIR)/logrotate.d/wala
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/waagent.conf ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/waagent.conf"; \
	else \
		$(INSTALL) -m 0644 config/waagent.conf $(DESTDIR)$(SYSCONFDIR)/waagent.conf; \
	fi
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 $(MANPAGES) $(DESTDIR)$(MANDIR)/man8/

deb:
	packaging/build-deb.sh

rpm:
	packaging/build-rpm.sh
