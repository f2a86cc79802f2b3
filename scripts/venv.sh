#!/usr/bin/env bash
# Usage: scripts/venv.sh NAME  ->  prints the path of the virtual env for envs/NAME.txt.
# The env is cached outside the clone (LONGCAT_ENV_CACHE, default ~/.cache/longcat-flash-plugins),
# keyed by a hash of its requirements, and built when missing. envs/NAME.remove lists packages to
# uninstall afterwards. This package itself is (re)installed into the env on every call.
set -euo pipefail
name=$1
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/envs/$name.txt"
remove="$root/envs/$name.remove"
key=$(cat "$req" "$0" $( [ -f "$remove" ] && echo "$remove") | sha256sum | cut -c1-12)
cache=${LONGCAT_ENV_CACHE:-$HOME/.cache/longcat-flash-plugins}
venv="$cache/$name-$key"
if [ ! -f "$venv/.ready" ]; then
    echo "building the $name environment in $venv (cached for later runs)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel >&2
    "$venv/bin/pip" install -q -r "$req" >&2
    if [ -f "$remove" ]; then
        "$venv/bin/pip" uninstall -q -y $(cat "$remove") >&2
    fi
    touch "$venv/.ready"
fi
"$venv/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall "$root" >&2
echo "$venv"
