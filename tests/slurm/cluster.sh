#!/usr/bin/env bash
# A real one-node SLURM cluster on this host, for the tests of the SLURM profile.
#
#   bash tests/slurm/cluster.sh start    install packages if missing, write the confs, start
#                                        munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd,
#                                        create cluster/account/user, wait for an idle node (idempotent)
#   bash tests/slurm/cluster.sh stop     cancel jobs, stop the daemons this script started (pid files only)
#   bash tests/slurm/cluster.sh status   exit 0 when the cluster is up and sacct works
#   bash tests/slurm/cluster.sh env      print `export` lines for tests (the only thing on stdout)
#   bash tests/slurm/cluster.sh purge    stop, then delete the state dir (database, spool, logs)
#
# Needs root (Debian 12, no systemd). All state (confs, spool, logs, pid files, MariaDB datadir,
# munge key) lives in $CANIDS_SLURM_STATE (default /tmp/canids-slurm). The confs are also installed
# at /etc/slurm/{slurm,slurmdbd,gres}.conf, where the Debian binaries look by default, so plain
# sbatch/squeue/sacct work from any shell and from Snakemake's subprocesses without SLURM_CONF.
# munged listens on its default socket /run/munge/munge.socket.2 for the same reason.
#
# Everything this script prints goes to stderr, except what `env` prints.
# Measured here (2 cores, 24 GiB, gVisor sandbox): package install ~18 s (once); `start` from
# installed packages ~6.4 s the very first time (MariaDB datadir + slurmdbd schema), 2.5-3 s after
# a `stop`; `start` when already up ~0.3 s; `stop` ~2.2 s (slurmctld takes ~2 s to exit).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/templates
STATE=$(realpath -m "${CANIDS_SLURM_STATE:-/tmp/canids-slurm}")
SLURM_ETC=/etc/slurm
MUNGE_SOCKET_DIR=/run/munge
NODE=$(hostname -s)
CLUSTER=canidslocal
PARTITION=debug
ACCOUNT=canids
GPU_TYPE=fake
NGPU=2
KILLWAIT=2
DBD_PORT=${CANIDS_SLURM_DBD_PORT:-6819}
DB_PORT=${CANIDS_SLURM_DB_PORT:-16306}
DB_USER=slurm
DB_PASS=canids-local-test
WAIT_S=${CANIDS_SLURM_WAIT_S:-60}
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

# pid_of NAME -> prints the pid from $STATE/run/NAME.pid when that process is alive and is NAME.
pid_of() {
    local name=$1 f=$STATE/run/$1.pid pid comm
    [[ -s $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    # /proc/PID/comm is truncated to 15 characters; the daemons' names are shorter.
    [[ $comm == "$name" ]] || return 1
    # A killed daemon whose parent (init) has not reaped it yet is a zombie: not alive.
    running "$pid" || return 1
    printf '%s\n' "$pid"
}

alive() { pid_of "$1" >/dev/null; }

# running PID: the process exists and is not a zombie (PID 1 here reaps orphans only lazily).
running() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

# wait_until SECONDS DESCRIPTION CMD... : poll CMD every 0.2 s until it succeeds.
wait_until() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${limit}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}

# stop_daemon NAME [SECONDS]: TERM the pid in NAME's pid file, KILL after SECONDS.
stop_daemon() {
    local name=$1 limit=${2:-15} pid deadline
    if ! pid=$(pid_of "$name"); then
        rm -f "$STATE/run/$name.pid"
        return 0
    fi
    local t0
    t0=$(date +%s%N)
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + limit))
    while running "$pid"; do
        if ((SECONDS >= deadline)); then
            log "$name did not stop in ${limit}s; sending KILL to pid $pid"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$STATE/run/$name.pid"
    log "stopped $name (pid $pid) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

render() { # render TEMPLATE OUT
    sed -e "s|@STATE@|$STATE|g" -e "s|@NODE@|$NODE|g" -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@CPUS@|$CPUS|g" -e "s|@REALMEM@|$REALMEM|g" \
        -e "s|@NGPU@|$NGPU|g" -e "s|@GPU_TYPE@|$GPU_TYPE|g" -e "s|@GPU_FILES@|$GPU_FILES|g" \
        -e "s|@KILLWAIT@|$KILLWAIT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@DB_USER@|$DB_USER|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1" >"$2"
}

# install_conf SRC DEST MODE: copy when different; returns 0 when DEST changed.
install_conf() {
    local src=$1 dest=$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        return 1
    fi
    install -m "$mode" -o root -g root "$src" "$dest"
    return 0
}

sql() { mariadb --no-defaults --protocol=socket --socket="$STATE/run/mysqld.sock" -u root -N -B -e "$1"; }

no_jobs() { [[ -z $(squeue -h -o '%A' 2>/dev/null) ]]; }
ctld_up() { scontrol ping 2>/dev/null | grep -q UP; }

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1; }
node_ready() { [[ $(node_state) =~ ^(idle|mix|alloc|comp)$ ]]; }

# ---------------------------------------------------------------- start steps

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (starts system daemons, writes /etc/slurm)"; }

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} (apt-get, --no-install-recommends)"
    local apt=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300
               -o Dpkg::Options::=--force-confdef
               -o Dpkg::Options::=--force-confold "${PACKAGES[@]}")
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2; then
        log "install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2
    fi
}

make_dirs() {
    mkdir -p "$STATE"/{etc,run,log,spool/slurmctld,spool/slurmd,munge,mysql}
    chmod 755 "$STATE" "$STATE"/{etc,run,log,spool}
    chmod 700 "$STATE/munge" "$STATE/spool/slurmctld"
    mkdir -p "$MUNGE_SOCKET_DIR" "$SLURM_ETC"
    chmod 755 "$MUNGE_SOCKET_DIR"
}

make_fake_gpus() {
    local i dev files=()
    for ((i = 0; i < NGPU; i++)); do
        dev=/dev/fakegpu$i
        if [[ ! -c $dev ]]; then
            rm -f "$dev"
            mknod -m 666 "$dev" c 1 3
        fi
        files+=("$dev")
    done
    if ((NGPU == 1)); then GPU_FILES=${files[0]}; else GPU_FILES="/dev/fakegpu[0-$((NGPU - 1))]"; fi
}

# Writes the confs into $STATE/etc and installs them into /etc/slurm; sets CONF_CHANGED=1 when any
# installed conf changed.
write_confs() {
    CPUS=$(nproc)
    local memtotal_kb
    memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    REALMEM=$((memtotal_kb * 8 / 10 / 1024))
    render "$TEMPLATES/slurm.conf.in" "$STATE/etc/slurm.conf"
    render "$TEMPLATES/gres.conf.in" "$STATE/etc/gres.conf"
    render "$TEMPLATES/slurmdbd.conf.in" "$STATE/etc/slurmdbd.conf"
    chmod 600 "$STATE/etc/slurmdbd.conf"
    CONF_CHANGED=0
    if install_conf "$STATE/etc/slurm.conf" "$SLURM_ETC/slurm.conf" 644; then CONF_CHANGED=1; fi
    if install_conf "$STATE/etc/gres.conf" "$SLURM_ETC/gres.conf" 644; then CONF_CHANGED=1; fi
    if install_conf "$STATE/etc/slurmdbd.conf" "$SLURM_ETC/slurmdbd.conf" 600; then CONF_CHANGED=1; fi
}

start_munge() {
    local key=$STATE/munge/munge.key
    if [[ ! -s $key ]]; then
        log "creating munge key $key"
        mungekey --create --keyfile="$key" >&2
    fi
    chown root:root "$key"
    chmod 600 "$key"
    alive munged && return 0
    if munge_ok; then
        # Any munged on the default socket will do on a single host (it both encodes and decodes).
        log "using the munged that already serves $MUNGE_SOCKET_DIR/munge.socket.2 (not started here; stop leaves it)"
        return 0
    fi
    rm -f "$MUNGE_SOCKET_DIR"/munge.socket.2*
    log "starting munged"
    munged --force --socket="$MUNGE_SOCKET_DIR/munge.socket.2" --key-file="$key" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed" </dev/null >>"$STATE/log/munged.log" 2>&1 9>&-
    wait_until 10 "munged answering" munge_ok ||
        die "munged did not come up; see $STATE/log/munged.log"
}

MARIADB_OPTS=()
start_mariadb() {
    MARIADB_OPTS=(--no-defaults --user=root --datadir="$STATE/mysql"
                  --socket="$STATE/run/mysqld.sock" --pid-file="$STATE/run/mariadbd.pid"
                  --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve
                  --log-error="$STATE/log/mariadbd.log"
                  --innodb-buffer-pool-size=128M --innodb-log-file-size=64M
                  --innodb-lock-wait-timeout=900 --max-allowed-packet=16M)
    if [[ ! -d $STATE/mysql/mysql ]]; then
        log "initialising MariaDB datadir $STATE/mysql"
        mariadb-install-db "${MARIADB_OPTS[@]:0:3}" --auth-root-authentication-method=socket \
            --skip-test-db </dev/null >>"$STATE/log/mariadb-install.log" 2>&1 9>&- ||
            die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    if ! alive mariadbd; then
        log "starting mariadbd (127.0.0.1:$DB_PORT)"
        setsid -f mariadbd "${MARIADB_OPTS[@]}" </dev/null >>"$STATE/log/mariadbd.log" 2>&1 9>&-
    fi
    wait_until "$WAIT_S" "mariadbd answering" \
        mariadb-admin --no-defaults --protocol=socket --socket="$STATE/run/mysqld.sock" -u root ping ||
        die "mariadbd did not come up; see $STATE/log/mariadbd.log"
    wait_until 10 "mariadbd pid file" alive mariadbd || die "mariadbd pid file missing"
    sql "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
         CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';
         GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';"
}

start_slurmdbd() {
    if ! alive slurmdbd; then
        log "starting slurmdbd (port $DBD_PORT)"
        setsid slurmdbd </dev/null >>"$STATE/log/slurmdbd.log" 2>&1 9>&-
    fi
    wait_until "$WAIT_S" "slurmdbd answering (sacctmgr show cluster)" sacctmgr -n show cluster ||
        die "slurmdbd did not come up; see $STATE/log/slurmdbd.log"
}

# Cluster, account and users in the accounting database; idempotent.
setup_accounting() {
    local users=(root) u
    u=$(id -un)
    [[ " ${users[*]} " == *" $u "* ]] || users+=("$u")
    if [[ -n ${SUDO_USER:-} && " ${users[*]} " != *" $SUDO_USER "* ]]; then users+=("$SUDO_USER"); fi
    for u in ${CANIDS_SLURM_USERS:-}; do
        [[ " ${users[*]} " == *" $u "* ]] || users+=("$u")
    done
    if [[ -z $(sacctmgr -n -P show cluster "$CLUSTER" format=cluster 2>/dev/null) ]]; then
        log "sacctmgr: adding cluster $CLUSTER"
        sacctmgr -i add cluster "$CLUSTER" >&2
    fi
    if [[ -z $(sacctmgr -n -P show account "$ACCOUNT" format=account 2>/dev/null) ]]; then
        log "sacctmgr: adding account $ACCOUNT"
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="canids tests" Organization=canids >&2
    fi
    for u in "${users[@]}"; do
        if [[ -z $(sacctmgr -n -P show assoc where cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user 2>/dev/null) ]]; then
            log "sacctmgr: adding user $u to account $ACCOUNT"
            sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >&2
        fi
    done
}

start_slurmctld() {
    if ! alive slurmctld; then
        log "starting slurmctld"
        setsid slurmctld </dev/null >>"$STATE/log/slurmctld.log" 2>&1 9>&-
    fi
    wait_until "$WAIT_S" "slurmctld answering (scontrol ping)" ctld_up ||
        die "slurmctld did not come up; see $STATE/log/slurmctld.log"
}

start_slurmd() {
    if ! alive slurmd; then
        log "starting slurmd"
        setsid slurmd </dev/null >>"$STATE/log/slurmd.log" 2>&1 9>&-
    fi
    local deadline=$((SECONDS + WAIT_S)) st resumed=0
    while ! node_ready; do
        st=$(node_state)
        # A node left down/drained by an earlier unclean stop: bring it back once.
        if [[ $st =~ (down|drain|drng|fail) ]] && ((resumed == 0)) && alive slurmd; then
            log "node $NODE is '$st'; resuming it"
            scontrol update NodeName="$NODE" State=RESUME >&2 || true
            resumed=1
        fi
        if ((SECONDS >= deadline)); then
            die "node $NODE not idle after ${WAIT_S}s (state '${st:-?}'); see $STATE/log/slurmd.log and slurmctld.log"
        fi
        sleep 0.2
    done
}

verify() {
    sacct -n -X -S now-1hours -o JobID >/dev/null || die "sacct failed"
    local assoc
    assoc=$(sacctmgr -n -P show assoc where cluster="$CLUSTER" account="$ACCOUNT" user="$(id -un)" format=user)
    [[ -n $assoc ]] || die "no association for $(id -un) in account $ACCOUNT"
}

is_up() {
    munge_ok && alive mariadbd && alive slurmdbd && alive slurmctld && alive slurmd || return 1
    ctld_up || return 1
    node_ready || return 1
    sacct -n -X -S now-1hours -o JobID >/dev/null 2>&1 || return 1
}

# ---------------------------------------------------------------- commands

cmd_start() {
    require_root
    local t0ns
    t0ns=$(date +%s%N)
    mkdir -p "$STATE"
    # One start/stop at a time (two test sessions may start the cluster together). Every daemon is
    # started with fd 9 closed: munged and mariadbd would otherwise inherit the lock and hold it forever.
    exec 9>"$STATE/cluster.lock"
    flock -w 300 9 || die "another cluster.sh holds $STATE/cluster.lock"
    cd /  # daemons inherit the cwd; the caller's may be a temporary directory
    install_packages
    make_dirs
    make_fake_gpus
    write_confs
    if ((CONF_CHANGED)) && { alive slurmctld || alive slurmd || alive slurmdbd; }; then
        log "configuration changed; restarting the SLURM daemons"
        stop_slurm_daemons
    elif is_up; then
        log "already up (node $NODE $(node_state), partition $PARTITION, account $ACCOUNT)"
        return 0
    fi
    start_munge
    start_mariadb
    start_slurmdbd
    setup_accounting
    start_slurmctld
    start_slurmd
    verify
    log "up in $(( ($(date +%s%N) - t0ns) / 1000000 )) ms: node $NODE $(node_state), CPUs=$CPUS RealMemory=$REALMEM MB," \
        "Gres=gpu:$GPU_TYPE:$NGPU, partition $PARTITION, account $ACCOUNT; state in $STATE"
}

stop_slurm_daemons() {
    # slurmd and slurmctld together (each takes 1-3 s to exit here), then slurmdbd.
    stop_daemon slurmd &
    stop_daemon slurmctld &
    wait
    stop_daemon slurmdbd
}

cmd_stop() {
    require_root
    [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
    mkdir -p "$STATE/run"
    exec 9>"$STATE/cluster.lock"
    flock -w 300 9 || die "another cluster.sh holds $STATE/cluster.lock"
    if alive slurmctld; then
        local ids
        ids=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ') || true
        if [[ -n ${ids// /} ]]; then
            log "cancelling jobs: $ids"
            # shellcheck disable=SC2086
            scancel $ids >&2 || true
            wait_until 20 "jobs gone" no_jobs || true
        fi
    fi
    stop_slurm_daemons
    stop_daemon mariadbd 60 &
    stop_daemon munged &
    wait
    log "stopped"
}

cmd_status() {
    local d ok=0
    if alive munged; then log "munged: running (pid $(pid_of munged))"
    elif munge_ok; then log "munged: a munged not started here answers"
    else log "munged: not running"; ok=1; fi
    for d in mariadbd slurmdbd slurmctld slurmd; do
        if alive "$d"; then log "$d: running (pid $(pid_of "$d"))"; else log "$d: not running"; ok=1; fi
    done
    ((ok == 0)) || return 1
    if is_up; then
        log "up: node $NODE $(node_state), partition $PARTITION, account $ACCOUNT"
        return 0
    fi
    log "daemons run but the cluster is not usable (scontrol ping / sinfo / sacct)"
    return 1
}

cmd_env() {
    cat <<EOF
export CANIDS_SLURM_STATE=$STATE
export CANIDS_SLURM_CLUSTER=$CLUSTER
export CANIDS_SLURM_NODE=$NODE
export CANIDS_SLURM_PARTITION=$PARTITION
export CANIDS_SLURM_ACCOUNT=$ACCOUNT
export CANIDS_SLURM_TEST_GPUS=$NGPU
export CANIDS_SLURM_TEST_GPU_TYPE=$GPU_TYPE
EOF
}

cmd_purge() {
    cmd_stop
    log "removing $STATE"
    rm -rf -- "$STATE"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    purge) cmd_purge ;;
    *) echo "usage: $0 start|stop|status|env|purge" >&2; exit 2 ;;
esac
