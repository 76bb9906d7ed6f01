#!/bin/sh
# CI gate: run the sandspec corpus against one backend and fail on
# regressions.
#
#   ci/conformance.sh DRIVER [EXPECT]
#
# DRIVER  a registry name (conformance/drivers/NAME/driver.yaml, or a
#         built-in: reference, reference-proto, none), or a command line
#         speaking the protocol (anything with a space or a slash, e.g.
#         "python3 ci/my-driver.py"): it is passed as --driver-cmd.
# EXPECT  the backend's expectation file (known failures, with reasons).
#         Default: conformance/expectations/DRIVER.yaml when it exists.
#
# Exit status: 0 when every case passed, was skipped (with a reason) or is
# a listed known failure; 1 on a regression (a new failure, an error, or a
# listed failure that now passes: the expectation file is stale); 2 when
# the run could not start (bad driver, bad expectation file).
#
# Environment:
#   SANDSPEC        the sandspec binary (default: `sandspec` on PATH, else
#                   target/release/sandspec, else target/debug/sandspec)
#   SANDSPEC_OUT    where reports go (default: target/conformance); writes
#                   NAME.junit.xml and NAME.json there
#   SANDSPEC_SETUP  0 to skip the driver's `setup` (default: run it)
#   SANDSPEC_BASELINE  a previous NAME.json: print what changed since
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
fi
driver=$1
expect=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${SANDSPEC_OUT:-$root/target/conformance}

bin=${SANDSPEC:-}
if [ -z "$bin" ]; then
    if command -v sandspec >/dev/null 2>&1; then
        bin=$(command -v sandspec)
    elif [ -x "$root/target/release/sandspec" ]; then
        bin=$root/target/release/sandspec
    elif [ -x "$root/target/debug/sandspec" ]; then
        bin=$root/target/debug/sandspec
    else
        echo "conformance.sh: failed to find sandspec: set SANDSPEC, put it on PATH or cargo build --release" >&2
        exit 2
    fi
fi

case $driver in
    *" "* | */*)
        select="--driver-cmd"
        label=$(printf '%s' "$driver" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-60)
        ;;
    *)
        select="--driver"
        label=$driver
        if [ -z "$expect" ] && [ -f "$root/conformance/expectations/$driver.yaml" ]; then
            expect=$root/conformance/expectations/$driver.yaml
        fi
        setup=$root/conformance/drivers/$driver/setup
        if [ "${SANDSPEC_SETUP:-1}" != 0 ] && [ -x "$setup" ]; then
            echo "== setup $driver"
            "$setup" || { echo "conformance.sh: failed to set up driver $driver" >&2; exit 2; }
        fi
        ;;
esac

mkdir -p "$out"
json=$out/$label.json
junit=$out/$label.junit.xml
echo "== sandspec run $select $driver${expect:+ --expect $expect}"
status=0
if [ -n "$expect" ]; then
    "$bin" run "$select" "$driver" --expect "$expect" --junit "$junit" --json "$json" || status=$?
else
    "$bin" run "$select" "$driver" --junit "$junit" --json "$json" || status=$?
fi

if [ -n "${SANDSPEC_BASELINE:-}" ] && [ -f "$json" ]; then
    echo "== changes since $SANDSPEC_BASELINE"
    "$bin" report --diff "$SANDSPEC_BASELINE" "$json" || true
fi

case $status in
    0) echo "== $driver: no regression (reports: $json, $junit)" ;;
    1) echo "== $driver: REGRESSION: see the failing cases above (reports: $json, $junit)" >&2 ;;
    *) echo "== $driver: the run could not start (exit $status)" >&2 ;;
esac
exit "$status"
