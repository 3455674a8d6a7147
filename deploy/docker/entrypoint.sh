#!/bin/sh
# Entrypoint of the ghpo images: turn `<NAME>_FILE=/path` variables into `<NAME>=<file contents>`, then
# exec the command (tini, the image's PID 1, forwards signals and reaps the verifier's worker processes).
#
# Why: the service token and the Redis URL (which carries the Redis password) are mounted as secret files
# (compose secrets, Kubernetes Secret volumes) instead of being put in plain environment variables,
# where `docker inspect` and crash dumps would show them. ghpo's settings read only environment
# variables, so the file is read here, just before the service starts. Only GHPO_* variables are
# considered; a variable set both ways is an error, not a silent choice.
set -eu

for pair in $(env | sed -n 's/^\(GHPO_[A-Za-z0-9_]*\)_FILE=.*/\1/p'); do
    name="$pair"
    # A line of some other variable's multi-line value can look like GHPO_X_FILE=...: skip it.
    path="$(printenv "${name}_FILE")" || continue
    if printenv "$name" >/dev/null; then
        echo "entrypoint: both ${name} and ${name}_FILE are set; set only one" >&2
        exit 64
    fi
    if [ ! -r "$path" ]; then
        echo "entrypoint: ${name}_FILE=${path} is not a readable file" >&2
        exit 66
    fi
    # $(cat) drops trailing newlines, which secret files written by `echo` usually end with.
    value="$(cat "$path")"
    export "$name=$value"
    unset "${name}_FILE"
done

exec "$@"
