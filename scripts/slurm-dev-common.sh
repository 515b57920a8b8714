# Shared by slurm-dev-cluster.sh and slurm-dev-cluster-stop.sh (sourced, not run).
# A PID is "alive" if /proc/PID/stat exists and the process is not a zombie
# (the minimal init here can be slow to reap, so kill -0 is not enough), and
# its argv[0] basename is the expected daemon name.
pid_alive_as() { # pid name
    local pid=$1 name=$2 stat state argv0
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state == Z || $state == X ]] && return 1
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1) || return 1
    [[ $(basename -- "$argv0") == "$name" ]]
}
