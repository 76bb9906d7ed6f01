#!/bin/sh
# Sets up every shipped driver and gates on each with its expectation file:
# what .ci/run calls so that CI really gates on sandlock, praisonai-sandbox
# and bubblewrap (issue 4). Needs root for bubblewrap's apt-get (unless it
# is installed) and the package registries for the venvs.
#
#   ci/peers.sh            # all of them
#   ci/peers.sh bwrap ...  # some of them
#
# SANDSPEC (the binary) and SANDSPEC_OUT are passed on to conformance.sh.
# Exit status: 0 when every gate is green, 1 when any is not, 2 when a
# setup failed.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
drivers=${*:-sandlock praisonai-sandlock praisonai-subprocess bwrap reference-proto}

for d in $drivers; do
    echo "== setup $d"
    "$root/conformance/drivers/$d/setup" || { echo "peers.sh: failed to set up $d" >&2; exit 2; }
done

# The peers' protocol-level tests, now that every peer must be there.
echo "== cargo test --test drivers_peers (SANDSPEC_REQUIRE_PEERS=1)"
(cd "$root" && SANDSPEC_REQUIRE_PEERS=1 cargo test --test drivers_peers)

status=0
for d in $drivers; do
    SANDSPEC_SETUP=0 "$root/ci/conformance.sh" "$d" || status=1
done
exit "$status"
