#!/usr/bin/env bash
# A working demo on this machine: a broker on https://127.0.0.1:8443/ with a
# technician account "demo", and a customer client in this terminal.
# `make demo` runs the setup (venv, npm ci, pip install .) first; this script
# assumes it has been done.
#
#   scripts/demo.sh
#
# Data (CA, database, recordings, broker.log) lives in demo-data/ and is kept
# between runs. Ending the client (or Ctrl-C) also stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
VENV=$ROOT/.venv
DATA=demo-data
HOST=127.0.0.1
PORT=8443
URL="https://$HOST:$PORT/"
CA=$DATA/certs/ca.pem
LOG=$DATA/broker.log
USER_NAME=demo

BROKER=$VENV/bin/tether-broker
CLIENT=$VENV/bin/tether-client
[ -x "$BROKER" ] && [ -x "$CLIENT" ] || {
    echo "error: $BROKER or $CLIENT missing; run 'make demo'" >&2
    exit 1
}
# The installed package, never the source tree.
export PYTHONSAFEPATH=1

BROKER_PID=
# shellcheck disable=SC2329  # invoked by the traps below
stop_broker() {
    local pid=$BROKER_PID
    BROKER_PID=
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: stopping the broker (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: the broker did not stop within 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
trap stop_broker EXIT
trap 'stop_broker; exit 130' INT
trap 'stop_broker; exit 143' TERM

# --- data directory: CA, certificates, database (idempotent) ---------------
mkdir -p "$DATA"
"$BROKER" init --data "$DATA" --hostname localhost

# --- technician account with a fresh random password ------------------------
password=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')
password_note="shown only this once; the next 'make demo' sets a new one"
set +e
account_out=$(printf '%s\n' "$password" | "$BROKER" user add "$USER_NAME" \
    --role technician --display-name "Demo Technician" --org "Tether Demo" \
    --password-stdin --data "$DATA" 2>&1)
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    if ! grep -qiE 'exist|already' <<<"$account_out"; then
        echo "$account_out" >&2
        echo "error: could not create the demo account (exit $rc)" >&2
        exit 1
    fi
    # Rerun: the account exists. Reset its password if the CLI can.
    set +e
    account_out=$(printf '%s\n' "$password" | "$BROKER" user passwd "$USER_NAME" \
        --password-stdin --data "$DATA" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        password="(unchanged: the password printed when the account was first made)"
        password_note="this tether-broker cannot reset passwords; delete $DATA/ for a new account"
        account_out=
    else
        # and a new two-factor secret, since the old one was shown only once
        account_out=$("$BROKER" user totp "$USER_NAME" --data "$DATA" 2>&1) || account_out=
    fi
fi

# --- port check, then the broker in the background ---------------------------
if ! "$VENV/bin/python" - "$HOST" "$PORT" <<'EOF'
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError as e:
    sys.exit(f"error: cannot use {sys.argv[1]}:{sys.argv[2]} ({e.strerror}); is another broker running?")
finally:
    s.close()
EOF
then
    exit 1
fi

echo "demo: starting the broker, log in $LOG"
# In a session of its own, so the terminal's Ctrl-C reaches only the client: the
# client then says goodbye to a broker that is still up (no close handshake left
# waiting on a dying broker), and stop_broker stops the broker by PID and waits.
# No job control here, so the broker is no group leader and setsid does not fork:
# $! is the broker itself.
setsid "$BROKER" serve --data "$DATA" --listen "$HOST:$PORT" >"$LOG" 2>&1 </dev/null &
BROKER_PID=$!

ready=
for _ in $(seq 150); do
    if grep -q 'Listening on https://' "$LOG" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "error: the broker did not report 'Listening on https://' within 15 s" >&2
    else
        echo "error: the broker exited during start-up" >&2
    fi
    echo "---- last lines of $LOG ----" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
fi

# --- what to do ---------------------------------------------------------------
client_args=(--broker "https://$HOST:$PORT" --ca "$CA")
root_note=
if [ "$(id -u)" -eq 0 ]; then
    client_args+=(--allow-root)
    root_note="You are root, so the client runs with --allow-root: a shell you allow is a ROOT shell."
fi

cat <<EOF

==============================================================================
 Tether demo
   Web console  $URL
   Username     $USER_NAME
   Password     $password
                ($password_note)
   CA           $ROOT/$CA

 Your browser will warn about the certificate: it is signed by this demo's own
 private CA, not a public one. Accept the warning for this demo, or import the
 CA file above into the browser as a trusted certificate authority.
EOF
if grep -q 'otpauth://' <<<"$account_out"; then
    secret=$(grep -o 'secret=[A-Z2-7]*' <<<"$account_out" | head -1 | cut -d= -f2)
    echo
    echo " Two-factor sign-in (\"Authentication code\"): add this to an authenticator app"
    echo " (it is a secret; shown only this once):"
    grep 'otpauth://' <<<"$account_out" | sed 's/^/   /'
    echo " No app at hand? This prints the current code:"
    echo "   $VENV/bin/python -c 'import pyotp; print(pyotp.TOTP(\"$secret\").now())'"
fi
cat <<EOF

 1. Sign in at $URL as "$USER_NAME".
 2. Type the session code printed below into "Session code" and press Connect.
 3. Here, as the customer, answer y to allow the session.
 4. In the browser press "Open shell"; answer y here again.
 "End session" in the browser, or Ctrl-C here, ends it; the broker stops too.
${root_note:+
 $root_note}
==============================================================================

EOF
if [ ! -t 0 ]; then
    echo "demo: note: standard input is not a terminal, so the client will refuse every request." >&2
fi

# --- the customer's client, in the foreground --------------------------------
# Ctrl-C is the client's to handle (it ends the session and exits 0); this shell
# only waits for it, then stops the broker on EXIT. (A trap, not an ignore: an
# ignored SIGINT would be inherited by the client.)
trap : INT
set +e
"$CLIENT" "${client_args[@]}"
rc=$?
set -e
echo "demo: the client exited ($rc). Data and recordings are kept in $DATA/."
exit "$rc"
