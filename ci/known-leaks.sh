#!/bin/sh
# ci/known-leaks.sh REPORT.json LEAKS.txt
#
# A peer gate that fails only on leaks: real holes of that backend, which
# no expectation file may excuse (the gate stays red for the backend's own
# CI). sandspec's CI still has to tell "the peer has the holes we know of"
# from "the harness or a driver regressed", so this exits 0 only when every
# failing case of REPORT failed on a leak the harness itself observed AND
# is listed in LEAKS.txt (one case id per line, # comments). Anything else
# (an error, an xpass, a non-leak failure, an unlisted leak) exits 1.
# Listed leaks that did not show up are printed, not failed on: some
# leaks (survivors, races) are not seen on every run.
set -eu
[ $# -eq 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
report=$1 leaks=$2
[ -f "$report" ] || { echo "failed to read $report: no such file" >&2; exit 2; }
[ -f "$leaks" ] || { echo "failed to read $leaks: no such file" >&2; exit 2; }
known=$(grep -v '^#' "$leaks" | sed '/^$/d' | sort -u)
bad=$(jq -r '.cases[]
  | select(.status == "error" or .status == "xpass"
      or (.status == "fail" and ([.failures[]? | select(.leak == true)] | length) == 0))
  | "\(.status) \(.id)"' "$report")
leaked=$(jq -r '.cases[] | select(.status == "fail") | .id' "$report" | sort -u)
unlisted=$(printf '%s\n' "$leaked" | while read -r id; do
  [ -z "$id" ] || printf '%s\n' "$known" | grep -qxF "$id" || echo "$id"; done)
missing=$(printf '%s\n' "$known" | while read -r id; do
  [ -z "$id" ] || printf '%s\n' "$leaked" | grep -qxF "$id" || echo "$id"; done)
[ -z "$missing" ] || printf 'known leak not seen this run (flaky, or fixed upstream?): %s\n' $missing
if [ -n "$bad" ] || [ -n "$unlisted" ]; then
  [ -z "$bad" ] || printf 'not a known leak: %s\n' "$bad" >&2
  [ -z "$unlisted" ] || printf 'a leak not in %s: %s\n' "$leaks" $unlisted >&2
  exit 1
fi
printf 'red as known: %s leaks (%s), nothing else failed\n' "$(printf '%s\n' "$leaked" | sed '/^$/d' | wc -l)" "$leaks"
