#!/bin/sh
# stop_services.sh [SERVICE]: stop one service, or everything (the older interface).
# The environment (for the state directory) is $DSA110_ENV, as for start_services.sh.
set -eu
if [ $# -gt 1 ]; then
    echo "usage: $(basename -- "$0") [SERVICE]" >&2
    exit 2
fi
. "$(dirname -- "$0")/dsa110ctl.sh"
exec "$DSA110CTL" stop "$@"
