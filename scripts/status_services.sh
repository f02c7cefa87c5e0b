#!/bin/sh
# status_services.sh [SERVICE]: every daemon and service, or one service (the older interface).
# The environment is $DSA110_ENV, as for start_services.sh.
set -eu
if [ $# -gt 1 ]; then
    echo "usage: $(basename -- "$0") [SERVICE]" >&2
    exit 2
fi
. "$(dirname -- "$0")/dsa110ctl.sh"
exec "$DSA110CTL" status "$@"
