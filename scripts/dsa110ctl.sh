# Sourced by the *_services.sh scripts: run dsa110ctl from this checkout's .venv, else from PATH.
_repo=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if [ -x "$_repo/.venv/bin/dsa110ctl" ]; then
    DSA110CTL="$_repo/.venv/bin/dsa110ctl"
elif command -v dsa110ctl >/dev/null 2>&1; then
    DSA110CTL=$(command -v dsa110ctl)
else
    echo "$(basename -- "$0"): dsa110ctl not found (run 'make' in $_repo, or install the dsa110d package)" >&2
    exit 2
fi
