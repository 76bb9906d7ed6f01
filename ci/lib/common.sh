# shellcheck shell=bash
# Shared helpers for ci/kernel-matrix: logging, the cache location, and
# the lock file's format.

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }
die() { printf 'kernel-matrix: %s\n' "$*" >&2; exit 2; }

# Where kernels, busybox and the private apt state are cached: outside the
# clone, so a fresh clone on the same machine reuses them.
# shellcheck disable=SC2034 # used by the scripts that source this file
KM_CACHE="${SANDSPEC_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandspec/kernels}"

# Lock rows: suite package version sha256 expected_abi [extra kernel args...]
# Comments (#) and blank lines are skipped. Prints one row per line, fields
# separated by a single tab, args joined by spaces, prefixed by the line number.
lock_rows() {
  awk '
    /^[[:space:]]*(#|$)/ { next }
    {
      if (NF < 5) { printf "%s:%d: expected at least 5 columns, found %d\n", FILENAME, NR, NF > "/dev/stderr"; bad = 1; next }
      if ($5 !~ /^([0-9]+|none|-)$/) { printf "%s:%d:5: expected Landlock ABI must be a number, none or -, found %s\n", FILENAME, NR, $5 > "/dev/stderr"; bad = 1; next }
      if (length($4) != 64 || $4 !~ /^[0-9a-f]+$/) { printf "%s:%d:4: not a SHA-256: %s\n", FILENAME, NR, $4 > "/dev/stderr"; bad = 1; next }
      extra = ""
      for (i = 6; i <= NF; i++) extra = extra (i > 6 ? " " : "") $i
      printf "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", NR, $1, $2, $3, $4, $5, extra
    }
    END { exit bad }
  ' "$1"
}

# The upstream version inside a Debian kernel version: 6.18.15-1~bpo13+1 -> 6.18.15.
upstream_version() { local v=${1#*:}; printf '%s\n' "${v%%-*}"; }

is_kernel_package() { [[ $1 == linux-image-* || $1 == linux-binary-* ]]; }
