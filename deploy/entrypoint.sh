#!/bin/sh
# The image's entrypoint: runs its command (by default `locust -f locustfiles/chat.py`) with the NLX
# API key read from the file NLX_API_KEY_FILE names, when it names one: a compose or Kubernetes secret
# mounted as a file keeps the key out of the image, the compose file and every command line.
set -eu
if [ -n "${NLX_API_KEY_FILE:-}" ]; then
    if [ ! -r "$NLX_API_KEY_FILE" ]; then
        echo "loadtest: error: NLX_API_KEY_FILE=$NLX_API_KEY_FILE is not a readable file: mount the secret there or unset it" >&2
        exit 2
    fi
    NLX_API_KEY="$(cat "$NLX_API_KEY_FILE")"
    export NLX_API_KEY
fi
exec "$@"
