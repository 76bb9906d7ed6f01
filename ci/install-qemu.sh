#!/usr/bin/env bash
# Installs what ci/kernel-matrix needs on the host, if missing:
# - QEMU from <codename>-backports (bookworm's own QEMU 7.2 would replace
#   the machine's backports qemu-utils), through a private apt config;
# - musl-tools (musl-gcc: a dependency's build script compiles C for the
#   musl target);
# - cpio, to pack the initramfs (busybox's cpio applet here cannot create);
# - jq, to read cargo's build messages.
# Never edits /etc/apt. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=ci/lib/apt.sh
. "$here/lib/apt.sh"

export DEBIAN_FRONTEND=noninteractive
apt_install_opts=(-y --no-install-recommends -o DPkg::Lock::Timeout=300)

install_qemu() {
  if command -v qemu-system-x86_64 >/dev/null && [[ -e /usr/share/seabios/bios-256k.bin || -e /usr/share/qemu/bios-256k.bin ]]; then
    return 0
  fi
  local codename d opts want have
  codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || die "failed to install QEMU: /etc/os-release names no VERSION_CODENAME"
  apt_mirrors
  d="$KM_CACHE/apt-host"
  log "installing QEMU from $codename-backports (private apt config in $d)"
  apt_private_update "$d" "$codename" "$codename-updates" "$codename-security" "$codename-backports" ||
    die "failed to install QEMU: the archive's $codename lists could not be fetched"
  mapfile -t opts < <(apt_private_opts "$d")
  want=$(apt-cache "${opts[@]}" -t "$codename-backports" policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
  have=$(dpkg-query -W -f '${db:Status-Abbrev} ${Version}' qemu-utils 2>/dev/null | awk '$1 == "ii" { print $2 }')
  [[ -n $want && $want != "(none)" ]] || die "failed to install QEMU: $codename-backports offers no qemu-system-x86"
  if [[ -n $have && $have != "$want" ]]; then
    die "failed to install QEMU: qemu-utils $have is installed but $codename-backports offers qemu-system-x86 $want; installing it would replace qemu-utils"
  fi
  apt-get "${opts[@]}" "${apt_install_opts[@]}" -t "$codename-backports" install \
    "qemu-system-x86=$want" seabios >&2 || die "failed to install qemu-system-x86=$want from $codename-backports"
  command -v qemu-system-x86_64 >/dev/null || die "failed to install QEMU: qemu-system-x86_64 is still missing"
  apt-get "${opts[@]}" clean >&2 || true
}

# apt-get install from the system's lists; on a fresh machine they may be
# empty or stale, so on failure refresh them once and try again.
apt_install() {
  apt-get "${apt_install_opts[@]}" install "$@" >&2 && return 0
  log "apt-get install $* failed; refreshing the package lists and retrying"
  apt-get -o DPkg::Lock::Timeout=300 update >&2 && apt-get "${apt_install_opts[@]}" install "$@" >&2
}

install_musl_gcc() {
  command -v musl-gcc >/dev/null && return 0
  log "installing musl-tools"
  apt_install musl-tools || log "failed to install musl-tools; the guest build falls back to glibc +crt-static"
}

install_cpio() {
  command -v cpio >/dev/null && return 0
  log "installing cpio"
  apt_install cpio || die "failed to install cpio"
}

install_jq() {
  command -v jq >/dev/null && return 0
  log "installing jq"
  apt_install jq || die "failed to install jq (reads cargo's build messages)"
}

install_qemu
install_musl_gcc
install_cpio
install_jq
