#!/usr/bin/env bash
# Builds target/rpm/wala-<version>-1.<arch>.rpm from the tree with rpmbuild (Debian's `rpm`
# package has it): packaging/rpm/wala.spec runs `make build man` and `make install
# DESTDIR=<buildroot>` in this checkout, with RPM distributions' paths (docs/boot.md).
# Usage: packaging/build-rpm.sh            (CARGO_TARGET_DIR is honoured; output in target/rpm;
#                                            WALA_RPM_RELEASE sets the Release, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
# make runs inside rpmbuild's build directory with -C here: an absolute target directory.
case $target in /*) ;; *) target=$PWD/$target ;; esac
export CARGO_TARGET_DIR=$target
out_dir=target/rpm

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT

# cargo runs here, in the caller's environment, and not again inside rpmbuild (CARGO=true below):
# rpmbuild sets PKG_CONFIG_PATH, which the -sys crates' build scripts watch, so building there
# would rebuild everything, and the next `make` outside would rebuild it all again.
make --no-print-directory build man >"$top/make.log" 2>&1 || { cat "$top/make.log" >&2; exit 1; }
# The version comes from the binary (one source: Cargo.toml); RPM forbids '-' in Version.
version=$("$target/release/wala-agentd" --version | awk '{print $2}' | tr '-' '~')
[ -n "$version" ] || { echo "build-rpm: could not read the version" >&2; exit 1; }

mkdir -p "$top/BUILD" "$top/RPMS" "$top/tmp"
rpmbuild -bb --quiet \
    --define "_topdir $top" --define "_tmppath $top/tmp" \
    --define "packager wala developers <wala@example.invalid>" \
    --define "wala_src $PWD" --define "wala_version $version" --define "wala_make_args CARGO=true" \
    --define "wala_release ${WALA_RPM_RELEASE:-1}" \
    packaging/rpm/wala.spec >"$top/rpmbuild.log" 2>&1 || { cat "$top/rpmbuild.log" >&2; exit 1; }

mkdir -p "$out_dir"
rm -f "$out_dir"/wala-*.rpm
for rpm in "$top"/RPMS/*/wala-*.rpm; do
    cp "$rpm" "$out_dir/"
    echo "build-rpm: $out_dir/${rpm##*/}"
done
