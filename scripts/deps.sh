#!/usr/bin/env bash
# Installs what building and testing wala needs on Debian 12, when it is missing.
# As root it installs with apt-get; otherwise it prints the exact command and stops.
# Usage: scripts/deps.sh [build|test]
set -euo pipefail

want=${1:-test}
# Building: the -sys crates need pkg-config, libssl and libudev headers, and a C compiler.
packages=(pkg-config libssl-dev libudev-dev gcc)
if [ "$want" = test ]; then
  # Tests use real tools: useradd, mkfs, loop devices, sshd's key generator, visudo, and the DVD
  # image writers the in-process DVD reader is checked against (genisoimage, mkudffs, pycdlib).
  packages+=(passwd util-linux e2fsprogs openssh-client sudo udev fdisk xfsprogs ntfs-3g dosfstools btrfs-progs cryptsetup-bin iptables nftables)
  packages+=(genisoimage udftools python3-pycdlib)
  # Package checks (tests/boot/check.sh): rpmbuild and rpm, rpmlint, lintian.
  packages+=(rpm rpmlint lintian)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing packages; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found. wala needs Rust 1.85 or newer (Debian 12's own rustc is too old);" >&2
  echo "      install it with rustup, then run this command again." >&2
  exit 1
fi
