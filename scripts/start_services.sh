#!/bin/sh
# start_services.sh ENV [SERVICE]: start the pipeline (the older interface; see dsa110ctl(1)).
#   ENV      development, production or testing
#   SERVICE  hdf5_watcher, ms_processor, variability_analyzer, service_manager (the manager
#            alone) or all (default); watcher, processor, analyzer also work
# Under systemd this is 'systemctl start dsa110d@SERVICE'; otherwise a background daemon with
# its pid file under the state directory and its log in <log_dir>/SERVICE.log.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $(basename -- "$0") ENV [SERVICE]" >&2
    exit 2
fi
. "$(dirname -- "$0")/dsa110ctl.sh"
exec "$DSA110CTL" start "$@"
