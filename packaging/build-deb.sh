#!/usr/bin/env bash
# Builds target/debian/wala_<version>_<arch>.deb from the tree, with no tool beyond dpkg-dev:
# `make install DESTDIR=<staging>`, Debian's paths for units and udev rules, compressed man pages,
# control fields (Depends computed by dpkg-shlibdeps when present), the default configuration
# under /usr/share/wala (no conffiles), maintainer scripts, md5sums, then `dpkg-deb --build`.
# Usage: packaging/build-deb.sh            (CARGO_TARGET_DIR is honoured; output in target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_DIR=$target
out_dir=target/debian
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

# Debian 12 keeps units and udev rules under /lib (the /usr move came later); override for newer.
make --no-print-directory install DESTDIR="$root" PREFIX=/usr \
    SYSTEMDUNITDIR="${DEB_SYSTEMDUNITDIR:-/lib/systemd/system}" \
    SYSTEMDGENERATORDIR="${DEB_SYSTEMDGENERATORDIR:-/lib/systemd/system-generators}" \
    UDEVRULESDIR="${DEB_UDEVRULESDIR:-/lib/udev/rules.d}" >"$stage/make.log" ||
    { cat "$stage/make.log" >&2; exit 1; }

version=$("$root/usr/sbin/wala-agentd" --version | awk '{print $2}')
[ -n "$version" ] || { echo "build-deb: could not read the version" >&2; exit 1; }

# The configuration and the logrotate file are not conffiles: /etc/waagent.conf belongs to the
# admin (and to waagent's package, which leaves it behind as its own conffile), and one logrotate
# file must cover /var/log/waagent.log. The package carries the defaults; postinst installs them
# where none exists (docs/migration.md).
install -d "$root/usr/share/wala"
mv "$root/etc/waagent.conf" "$root/usr/share/wala/waagent.conf"
mv "$root/etc/logrotate.d/wala" "$root/usr/share/wala/logrotate"
rmdir "$root/etc/logrotate.d" "$root/etc"

# Man pages: gzip -9n as Debian policy asks.
gzip -9n "$root"/usr/share/man/man8/*.8

# Documentation and copyright.
install -d "$root/usr/share/doc/wala"
install -m 0644 docs/boot.md README.md "$root/usr/share/doc/wala/"
gzip -9n "$root/usr/share/doc/wala/boot.md"
cat >"$root/usr/share/doc/wala/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: wala

Files: *
Copyright: wala developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# A native package carries its changelog (Debian policy 12.7; lintian: no-changelog): one entry
# for this build, dated by the last commit so that two builds of one tree give the same file.
when=$(git log -1 --format=%ct 2>/dev/null) || when=
[ -n "$when" ] || when=$(date +%s)
cat >"$stage/changelog" <<CHANGELOG
wala ($version) unstable; urgency=medium

  * Built from the wala tree (packaging/build-deb.sh).

 -- wala developers <wala@example.invalid>  $(LC_ALL=C date -u -R -d "@$when")
CHANGELOG
gzip -9n <"$stage/changelog" >"$root/usr/share/doc/wala/changelog.gz"

# Runtime library dependencies.
shlibs="libc6, libssl3, libudev1"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    mkdir -p "$stage/src/debian"
    printf 'Source: wala\n\nPackage: wala\nArchitecture: any\n' >"$stage/src/debian/control"
    computed=$(cd "$stage/src" && dpkg-shlibdeps -O -e"$root/usr/sbin/wala-provision" \
        -e"$root/usr/sbin/wala-agentd" -e"$root/usr/sbin/wala-crypto" 2>"$stage/shlibdeps.log" | sed -n 's/^shlibs:Depends=//p') || true
    if [ -n "$computed" ]; then
        shlibs=$computed
    else
        echo "build-deb: dpkg-shlibdeps failed, using '$shlibs':" >&2
        cat "$stage/shlibdeps.log" >&2
    fi
fi

install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@SHLIBS@/$shlibs/" packaging/debian/control.in >"$root/DEBIAN/control"
install -m 0755 packaging/debian/preinst packaging/debian/postinst packaging/debian/prerm \
    packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb="$out_dir/wala_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "build-deb: $deb"
