#!/usr/bin/env bash
# Stop the Slurm dev cluster started by scripts/slurm-dev-cluster.sh.
#
# Only the daemons named by the PID files in the state folder are signalled,
# and only after /proc/PID/cmdline confirms the PID is that daemon (never
# pkill by name). Waits for them to exit, then removes the PID files.
# The state folder itself (configs, job state, logs) is kept; delete it
# (rm -rf "${JOBCTL_SLURM_DIR:-/tmp/jobctl-slurm}") for a fresh cluster.
#
#   JOBCTL_SLURM_DIR   state folder (default /tmp/jobctl-slurm)
set -euo pipefail

DIR="${JOBCTL_SLURM_DIR:-/tmp/jobctl-slurm}"
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac
DIR="${DIR%/}"

say() { printf '%s\n' "$*" >&2; }

# shellcheck source=scripts/slurm-dev-common.sh
. "$(dirname -- "$0")/slurm-dev-common.sh"

stop_one() { # name
    local name=$1 file="$DIR/run/$1.pid" pid end
    [[ -f $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    if ! pid_alive_as "$pid" "$name"; then
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    end=$((SECONDS + 20))
    while pid_alive_as "$pid" "$name"; do
        if ((SECONDS >= end)); then
            say "slurm-dev-cluster-stop: $name (pid $pid) ignored SIGTERM for 20 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            end=$((SECONDS + 10))
            sleep 0.2
            while pid_alive_as "$pid" "$name"; do
                ((SECONDS < end)) || { say "slurm-dev-cluster-stop: $name (pid $pid) did not exit"; return 1; }
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    rm -f "$file"
    STOPPED+=("$name")
}

[[ -d $DIR/run ]] || { echo "slurm dev cluster not running (no $DIR/run)"; exit 0; }
STOPPED=()
rc=0
# slurmd first (it tells slurmctld it goes away), then slurmctld, then munged.
for d in slurmd slurmctld munged; do
    stop_one "$d" || rc=1
done
rm -f "$DIR/run/munged.daemon.pid"
if ((rc)); then
    say "slurm-dev-cluster-stop: some daemons did not stop"
    exit 1
fi
if ((${#STOPPED[@]})); then
    echo "slurm dev cluster stopped (${STOPPED[*]}; state kept in $DIR)"
else
    echo "slurm dev cluster not running (state: $DIR)"
fi
