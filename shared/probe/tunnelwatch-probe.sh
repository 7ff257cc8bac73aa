# tunnelwatch node probe, format version 1. Read-only: it changes nothing on the node.
#
# Run by the VMSS run-command extension as root through `/bin/bash -c`, with the parameters
# prepended as `export NAME=value` lines (unquoted by the extension, which is why every value
# is checked again here against a strict pattern and refused when it does not match):
#   TW_TARGETS   up to 1,000 IPv4 addresses to test on TCP 10250, separated by commas (or spaces)
#   TW_API_HOST  the API server FQDN or IPv4 address, tested on TW_API_PORT
#   TW_API_PORT  1-65535 (443)
#   TW_MODE      triage | deep (deep adds ufw status and the rulesets in force)
#
# Output (stdout only; the service keeps the last 4,096 bytes, so a cut start is detected by
# the missing BEGIN, and END carries the number of records between the markers):
#   TWPROBE 1 BEGIN <mode>
#   <key>\t<field>...        one record per line, no tab or newline inside a field
#   TWPROBE 1 END <records>
# Records: error, note, tool, host, addr, os, component, nc, ncgz, reach, api, tls, tunnel,
# ufw, ruleset, toolarge (see shared/probe/output.py and docs/probe.md). `nc`/`api`/`tunnel`
# records carry connection-test lines in the netcat framing (`target=<ip>:<port>` ...
# `<ip>:<port> exit=<n>`). Of the 10250 targets only those NOT open get `nc` lines (`ncgz`
# when packed), as many as fit; one `reach` record counts them all: targets received, their
# digest, tested, open, named (failures with lines here), all|cut. Blobs are gzip + base64.
# The deep blobs are printed last, under a size guard: whatever would push the output past
# ~4,000 bytes becomes a `toolarge` record.
#
# No eval, no temp files, every external command under `timeout -k 2` (a command that ignores
# SIGTERM is killed 2 s later), and each step only starts
# while the time budget (55 s) allows it: the whole run stays under about 60 s, also when
# every one of 1,000 targets times out (4 batches of 250 parallel connects of at most 4 s).

set -u
set +o history
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C
tw_n=0
tw_bytes=0
tw_batch=250  # parallel connects per batch: 1,000 targets are 4 batches
tw_max_targets=1000
tw_budget=55 # seconds of SECONDS after which no new step starts
tw_limit=4000 # bytes of output the size guard allows (the service keeps the last 4,096)

# One record; fields lose any tab, CR or newline so a value can never forge a record.
tw_rec() {
    local out="$1" f
    shift
    for f in "$@"; do
        f="${f//$'\t'/ }"
        f="${f//$'\n'/ }"
        f="${f//$'\r'/ }"
        out+=$'\t'"$f"
    done
    printf '%s\n' "$out"
    tw_n=$((tw_n + 1))
    tw_bytes=$((tw_bytes + ${#out} + 1))
}

# A tool is there when PATH leads to an executable file (bash's lookup alone would also
# return a file it cannot execute, as a last resort).
tw_have() {
    local p
    p="$(command -v "$1" 2>/dev/null)" || return 1
    [[ -f "$p" && -x "$p" ]]
}

# True while a step of about $1 seconds still fits in the time budget.
tw_time() { ((SECONDS + $1 <= tw_budget)); }

# gzip + base64 on one line of stdin; empty output when a tool is missing or fails.
tw_pack() {
    if tw_have gzip && tw_have base64; then
        timeout -k 2 20 gzip -c -n 2>/dev/null | timeout -k 2 20 base64 -w0 2>/dev/null
    else
        cat >/dev/null
    fi
}

# Printable ASCII only, at most 80 characters: for names read from certificates.
tw_clean() {
    local v="${1//[^ -~]/?}"
    printf '%s' "${v:0:80}"
}

tw_octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
tw_ipv4="^${tw_octet}\.${tw_octet}\.${tw_octet}\.${tw_octet}\$"
tw_fqdn='^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$'

# --- the reduction of an iptables-save dump (POSIX awk: mawk on Ubuntu, gawk on Azure Linux) --
# Drops only `-A` rules that provably cannot match a TCP packet (SYN or ACK) from any source
# to one of this node's addresses (`addrs`, space-separated; empty: unknown) on port 10250,
# arriving on any interface:
#   - a protocol other than tcp (`-p udp`, `-p 17` ...) not negated;
#   - a `-d` prefix not negated that holds none of the node's addresses (only when known);
#   - a `--dport` (tcp) or `--dports` (multiport) not negated whose ports all miss 10250;
#   - any rule of a chain the packet cannot reach: not a hook of the INPUT path (raw/mangle/
#     nat PREROUTING, mangle/filter/security/nat INPUT) and named by no kept rule of a
#     reachable chain (any word of the rule that names a chain counts as a jump to it).
# A run of dropped rules of a declared chain becomes `# tw-skip <chain> <count>`, so rule
# numbers stay right; an unreachable chain loses its declaration too (ufw's are kept: they
# say ufw manages the node). Anything unexpected (an unknown line, an undeclared chain) turns
# the reduction off: the dump is then printed unchanged. Last line: `# tw-reduced K D C`
# (rules kept, rules dropped, chain declarations dropped), or `# tw-reduced off <why>`.
tw_reduce_awk='
function ip4(s,   p, n, i, v) {
    if (s !~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/) return -1
    n = split(s, p, ".")
    v = 0
    for (i = 1; i <= 4; i++) {
        if (p[i] + 0 > 255) return -1
        v = v * 256 + p[i]
    }
    return v
}
function misses_node(v,   k, len, net, pw, i) {
    if (naddr == 0) return 0
    len = 32
    k = index(v, "/")
    if (k > 0) {
        len = substr(v, k + 1)
        v = substr(v, 1, k - 1)
        if (len !~ /^[0-9]+$/ || len + 0 > 32) return 0
        len = len + 0
    }
    net = ip4(v)
    if (net < 0) return 0
    pw = 2 ^ (32 - len)
    for (i = 1; i <= naddr; i++) if (int(node[i] / pw) == int(net / pw)) return 0
    return 1
}
function misses_port(v,   it, n, i, k, lo, hi) {
    n = split(v, it, ",")
    if (n < 1) return 0
    for (i = 1; i <= n; i++) {
        k = index(it[i], ":")
        if (k > 0) {
            lo = substr(it[i], 1, k - 1)
            hi = substr(it[i], k + 1)
            if (lo == "") lo = "0"
            if (hi == "") hi = "65535"
        } else {
            lo = it[i]
            hi = it[i]
        }
        if (lo !~ /^[0-9]+$/ || hi !~ /^[0-9]+$/) return 0
        if (lo + 0 > hi + 0) return 0
        if (lo + 0 <= 10250 && 10250 <= hi + 0) return 0
    }
    return 1
}
function not_tcp(v) {
    v = tolower(v)
    if (v ~ /^[0-9]+$/) return (v + 0 >= 1 && v + 0 <= 255 && v + 0 != 6)
    return (v in other_proto)
}
# 1 when the rule (quoted arguments already removed) cannot match the packet.
function cannot_match(s,   w, n, i, neg, mod) {
    n = split(s, w, " ")
    i = 3
    neg = 0
    while (i <= n) {
        if (w[i] == "!") { neg = 1; i++; continue }
        if (w[i] == "-f") { neg = 0; i++; continue }
        if (w[i] != "-s" && w[i] != "-d" && w[i] != "-i" && w[i] != "-o" && w[i] != "-p") break
        if (i + 1 > n) return 0
        if (!neg && w[i] == "-d" && misses_node(w[i + 1])) return 1
        if (!neg && w[i] == "-p" && not_tcp(w[i + 1])) return 1
        neg = 0
        i += 2
    }
    mod = ""
    for (; i <= n; i++) {
        if (w[i] == "-j" || w[i] == "-g") return 0
        if (w[i] == "-m" && i < n) { mod = w[i + 1]; i++; continue }
        if (i == n || w[i - 1] == "!") continue
        if ((mod == "tcp" && w[i] == "--dport") || (mod == "multiport" && w[i] == "--dports")) {
            if (w[i + 1] != "!" && misses_port(w[i + 1])) return 1
        }
    }
    return 0
}
BEGIN {
    naddr = split(addrs, raw, " ")
    k = 0
    for (i = 1; i <= naddr; i++) if (ip4(raw[i]) >= 0) node[++k] = ip4(raw[i])
    naddr = k
    split("udp icmp igmp ggp ipencap st egp igp pup hmp xns-idp rdp iso-tp4 dccp xtp ddp " \
          "idpr-cmtp ipv6 ipv6-route ipv6-frag idrp rsvp gre esp ah skip ipv6-icmp icmpv6 " \
          "ipv6-nonxt ipv6-opts rspf vmtp eigrp ospf ax.25 ipip etherip encap pim ipcomp vrrp " \
          "l2tp isis sctp fc mobility-header mh udplite mpls-in-ip manet hip shim6 wesp rohc",
          names, " ")
    for (i in names) other_proto[names[i]] = 1
    hooks["raw", "PREROUTING"] = 1
    hooks["mangle", "PREROUTING"] = 1
    hooks["mangle", "INPUT"] = 1
    hooks["nat", "PREROUTING"] = 1
    hooks["nat", "INPUT"] = 1
    hooks["filter", "INPUT"] = 1
    hooks["security", "INPUT"] = 1
    off = ""
    table = ""
}
{
    line[NR] = $0
    kind[NR] = "x"
    if ($0 ~ /^#/ || $0 ~ /^[ \t]*$/) { kind[NR] = "#"; next }
    if ($0 ~ /^\*/) { table = substr($1, 2); kind[NR] = "*"; next }
    if ($0 == "COMMIT") { kind[NR] = "C"; table = ""; next }
    if (table == "") { if (off == "") off = "line " NR " outside a table"; next }
    if ($0 ~ /^:/) {
        kind[NR] = ":"
        name = substr($1, 2)
        ctab[NR] = table
        cname[NR] = name
        declared[table, name] = 1
        builtin[table, name] = ($2 != "-")
        if ($2 != "-" || name ~ /^ufw6?-/) keepdecl[table, name] = 1
        next
    }
    if ($1 != "-A" || NF < 2) { if (off == "") off = "unexpected line " NR; next }
    if (!((table, $2) in declared)) { if (off == "") off = "undeclared chain at line " NR; next }
    kind[NR] = "A"
    rtab[NR] = table
    rchain[NR] = $2
    s = $0
    gsub(/"([^"\\]|\\.)*"/, "Q", s)
    gsub(/\t/, " ", s)
    if (s ~ /["\\]/) cut[NR] = 0
    else cut[NR] = cannot_match(s)
}
END {
    if (off != "") {
        for (r = 1; r <= NR; r++) print line[r]
        print "# tw-reduced off " off
        exit 0
    }
    for (r = 1; r <= NR; r++) {
        if (kind[r] != "A" || cut[r]) continue
        # Every word naming a chain of this table may be a jump (-j, -g) to it.
        n = split(line[r], w, " ")
        jumps[r] = ""
        for (i = 3; i <= n; i++) if ((rtab[r], w[i]) in declared) jumps[r] = jumps[r] " " w[i]
    }
    for (key in hooks) reach[key] = 1
    changed = 1
    while (changed) {
        changed = 0
        for (r = 1; r <= NR; r++) {
            if (kind[r] != "A" || cut[r] || jumps[r] == "" || !((rtab[r], rchain[r]) in reach)) continue
            n = split(jumps[r], to, " ")
            for (i = 1; i <= n; i++) if (!((rtab[r], to[i]) in reach)) { reach[rtab[r], to[i]] = 1; changed = 1 }
            jumps[r] = ""
        }
    }
    kept = 0
    dropped = 0
    chains = 0
    run = 0
    runchain = ""
    for (r = 1; r <= NR; r++) {
        if (kind[r] == "A") {
            t = rtab[r]
            c = rchain[r]
            if (!cut[r] && ((t, c) in reach)) {
                if (run > 0) { print "# tw-skip " runchain " " run; run = 0 }
                print line[r]
                kept++
                continue
            }
            dropped++
            if (!((t, c) in reach) && !((t, c) in keepdecl)) continue
            if (run > 0 && runchain != c) { print "# tw-skip " runchain " " run; run = 0 }
            runchain = c
            run++
            continue
        }
        if (run > 0) { print "# tw-skip " runchain " " run; run = 0 }
        if (kind[r] == ":" && !((ctab[r], cname[r]) in reach) && !((ctab[r], cname[r]) in keepdecl)) {
            chains++
            continue
        }
        print line[r]
    }
    if (run > 0) print "# tw-skip " runchain " " run
    print "# tw-reduced " kept " " dropped " " chains
}
'

# --- parameters, checked before any use --------------------------------------------------
tw_mode="${TW_MODE-}"
tw_errors=()
if [[ "$tw_mode" != triage && "$tw_mode" != deep ]]; then
    tw_errors+=("TW_MODE" "not triage or deep; probing nothing")
    tw_mode="-"
fi

tw_targets=()
tw_raw="${TW_TARGETS-}"
if [[ -n "$tw_raw" ]]; then
    # The length on its own: a bound such as {1,16000} in the pattern makes the regex library
    # build a huge automaton (seconds of CPU, and a heap that slows every later fork).
    if ((${#tw_raw} > 16000)) || [[ ! "$tw_raw" =~ ^[0-9.,\ ]+$ ]]; then
        tw_errors+=("TW_TARGETS" "characters other than digits, dots, commas, spaces (or too long)")
    else
        tw_raw="${tw_raw//,/ }"
        # Only digits, dots and spaces are left: word splitting is safe, globbing is off.
        set -f
        IFS=' ' read -r -a tw_split <<<"$tw_raw" || true
        set +f
        tw_bad=0
        for tw_t in "${tw_split[@]}"; do
            if [[ "$tw_t" =~ $tw_ipv4 ]]; then
                tw_targets+=("$tw_t")
            else
                tw_bad=$((tw_bad + 1))
            fi
        done
        ((tw_bad > 0)) && tw_errors+=("TW_TARGETS" "$tw_bad values not IPv4 addresses, skipped")
        if ((${#tw_targets[@]} > tw_max_targets)); then
            tw_errors+=("TW_TARGETS" "more than $tw_max_targets targets; probing none")
            tw_targets=()
        fi
    fi
fi
# The digest of the target list as received, in order (shared/probe/output.py computes the
# same from what the worker sent): the `reach` record is only ever read against that list.
# Per address a: h = (a * 2654435761) mod 2^32, h ^= h >> 16; digest = sum of h mod 2^32.
tw_digest=0
for tw_t in "${tw_targets[@]}"; do
    [[ "$tw_t" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || continue
    tw_h=$((10#${BASH_REMATCH[1]} << 24 | 10#${BASH_REMATCH[2]} << 16 | 10#${BASH_REMATCH[3]} << 8))
    tw_h=$((((tw_h | 10#${BASH_REMATCH[4]}) * 2654435761) & 0xffffffff))
    tw_digest=$(((tw_digest + (tw_h ^ (tw_h >> 16))) & 0xffffffff))
done
printf -v tw_digest '%08x' "$tw_digest"

tw_api_host="${TW_API_HOST-}"
tw_last="${tw_api_host%.}"
tw_last="${tw_last##*.}"
if [[ -n "$tw_api_host" && ! "$tw_api_host" =~ $tw_ipv4 ]] &&
    { ((${#tw_api_host} > 253)) || [[ ! "$tw_api_host" =~ $tw_fqdn || ! "$tw_last" =~ [A-Za-z] ]]; }; then
    tw_errors+=("TW_API_HOST" "not an FQDN or IPv4 address; API check skipped")
    tw_api_host=""
fi
tw_api_port="${TW_API_PORT-443}"
if [[ ! "$tw_api_port" =~ ^[1-9][0-9]{0,4}$ ]] || ((tw_api_port > 65535)); then
    tw_errors+=("TW_API_PORT" "not a port 1-65535; API check skipped")
    tw_api_host=""
fi

tw_line="TWPROBE 1 BEGIN $tw_mode"
printf '%s\n' "$tw_line"
tw_bytes=$((${#tw_line} + 1))
for ((i = 0; i < ${#tw_errors[@]}; i += 2)); do
    tw_rec error "${tw_errors[i]}" "${tw_errors[i + 1]}"
done

# --- tools and identity ----------------------------------------------------------------------
tw_nc=""
if tw_have nc && [[ "$(timeout -k 2 3 nc -h 2>&1)" == *OpenBSD* ]]; then
    tw_nc=openbsd # its -z -v -w wording is what the netcat parser reads; others use /dev/tcp
fi
tw_tools=()
for tw_t in timeout gzip base64 awk crictl ufw iptables-legacy-save iptables-nft-save nft \
    openssl ip; do
    tw_have "$tw_t" && tw_tools+=("$tw_t")
done
tw_rec tool "nc=${tw_nc:-none}" "${tw_tools[*]}"

# The kernel's name, read by bash itself (Azure Linux images may lack the hostname binary).
tw_host=""
read -r tw_host 2>/dev/null </proc/sys/kernel/hostname || tw_host="$(timeout -k 2 3 hostname 2>/dev/null)"
tw_rec host "$tw_host"
tw_node_addrs="" # the node's own addresses, for the reduction's `-d` test
if tw_have ip; then
    tw_addrs="$(timeout -k 2 3 ip -4 -o addr show scope global 2>/dev/null)"
    while read -r _ tw_if _ tw_cidr _; do
        [[ -n "${tw_cidr-}" ]] || continue
        tw_rec addr "$tw_if" "$tw_cidr"
        [[ "${tw_cidr%/*}" =~ $tw_ipv4 ]] && tw_node_addrs+="${tw_cidr%/*} "
    done <<<"$tw_addrs"
fi
tw_os_id="" tw_os_ver=""
if [[ -r /etc/os-release ]]; then
    while IFS='=' read -r tw_k tw_v; do # read, never source: the file is data here
        tw_v="${tw_v#\"}"
        tw_v="${tw_v%\"}"
        case "$tw_k" in
        ID) tw_os_id="$tw_v" ;;
        VERSION_ID) tw_os_ver="$tw_v" ;;
        esac
    done </etc/os-release
fi
tw_rec os "${tw_os_id:-unknown}" "${tw_os_ver:-unknown}" "$(uname -r 2>/dev/null)"

# --- tunnel components (crictl) --------------------------------------------------------------
# Container names of the three tunnel agents: konnectivity-agent (pods konnectivity-agent-*),
# tunnel-front (pods tunnelfront-*), openvpn-client (pods aks-link-*). The pod name, read from
# the kubelet's labels, says which component a container belongs to; anything else is skipped.
tw_tunnelfront="" tw_akslink=""
if [[ "$tw_mode" != "-" ]]; then
    if tw_have crictl; then
        tw_ids="$(timeout -k 2 5 crictl ps -a -q --name '^(konnectivity-agent|tunnel-front|openvpn-client)$' 2>/dev/null)"
        tw_rc=$?
        if ((tw_rc != 0)); then
            tw_rec error crictl "crictl ps failed with status $tw_rc"
        fi
        tw_count=0
        while read -r tw_id; do
            [[ "$tw_id" =~ ^[0-9a-f]{6,64}$ ]] || continue
            tw_count=$((tw_count + 1))
            ((tw_count > 8)) && break
            if ! tw_time 3; then
                tw_rec error crictl "time budget spent; containers after the first $((tw_count - 1)) not inspected"
                break
            fi
            # One id per call: with several, newer crictl runs the template once on a list.
            tw_c="$(timeout -k 2 3 crictl inspect -o go-template --template \
                '{{.status.metadata.name}}|{{.status.state}}|{{.status.metadata.attempt}}|{{.status.exitCode}}|{{.status.reason}}|{{.status.finishedAt}}|{{index .status.labels "io.kubernetes.pod.name"}}|{{index .status.labels "io.kubernetes.pod.namespace"}}' \
                "$tw_id" 2>/dev/null)"
            if [[ -z "$tw_c" ]]; then
                tw_rec error crictl "crictl inspect of container ${tw_id:0:12} failed"
                continue
            fi
            IFS='|' read -r tw_cname tw_state tw_att tw_exit tw_reason tw_fin tw_pod tw_ns <<<"$tw_c"
            [[ "${tw_ns-}" == kube-system ]] || continue
            case "${tw_pod-}" in
            konnectivity-agent-*) tw_comp=konnectivity-agent ;;
            tunnelfront-*) tw_comp=tunnelfront tw_tunnelfront=1 ;;
            aks-link-*) tw_comp=aks-link tw_akslink=1 ;;
            *) continue ;; # not a tunnel pod (a customer container of the same name)
            esac
            [[ "${tw_reason-}" == "<no value>" ]] && tw_reason=""
            tw_rec component "$tw_comp" "${tw_state:-?}" "${tw_att:-?}" "${tw_exit:-?}" \
                "${tw_reason:--}" "${tw_fin:--}" "${tw_cname:-?}" "$tw_pod"
        done <<<"$tw_ids"
    else
        tw_rec component - absent
    fi
fi

# --- connection tests ------------------------------------------------------------------------
# One connect: its output (tabs and CRs blanked, at most 1,000 characters) in tw_out, its
# status in tw_rc. OpenBSD nc when present, bash /dev/tcp otherwise; both under `timeout`.
tw_connect() {
    local host="$1" port="$2" wait="$3" numeric=()
    [[ "$host" =~ $tw_ipv4 ]] && numeric=(-n) # an address needs no DNS; a name does
    if [[ "$tw_nc" == openbsd ]]; then
        tw_out="$(timeout -k 2 $((wait + 2)) nc -z -v "${numeric[@]}" -w "$wait" "$host" "$port" 2>&1)"
        tw_rc=$?
    else
        tw_out="$(timeout -k 2 "$wait" bash -c 'exec 3<>"/dev/tcp/$1/$2"' tw "$host" "$port" 2>&1)"
        tw_rc=$?
    fi
    tw_out="${tw_out//$'\t'/ }"
    tw_out="${tw_out//$'\r'/ }"
    tw_out="${tw_out:0:1000}"
}

# One target's lines in the netcat framing (the API server, tunnel-front's port).
tw_probe() {
    tw_connect "$1" "$2" "$3"
    printf 'target=%s:%s\n%s%s:%s exit=%s\n' "$1" "$2" "${tw_out:+$tw_out$'\n'}" "$1" "$2" "$tw_rc"
}

# One kubelet port as ONE line, written at once (well under PIPE_BUF, so parallel jobs never
# mix): `O <ip>` when the connect succeeded (exit status 0, which `nc -z` and `/dev/tcp`
# return only once the connection is made), else `F <ip>` and the target's netcat-framed
# lines, tab-separated.
tw_kubelet() {
    local framed
    tw_connect "$1" 10250 2
    if ((tw_rc == 0)); then
        printf 'O %s\n' "$1"
        return
    fi
    framed="target=$1:10250"$'\t'"${tw_out:+${tw_out//$'\n'/$'\t'}$'\t'}$1:10250 exit=$tw_rc"
    printf 'F %s\t%s\n' "$1" "$framed"
}

# Each line of $2 as a record of key $1.
tw_recs() {
    local l
    while IFS= read -r l; do
        [[ -n "$l" ]] && tw_rec "$1" "$l"
    done <<<"$2"
}

# The kubelet ports of the targets, in parallel batches. Open ones are only counted; the
# lines of the others wait in tw_fail (one element per target) for tw_reach, which prints
# them as far as they fit after everything else.
tw_open=0 tw_tested=0 tw_fail=()
declare -A tw_done=()
if [[ "$tw_mode" != "-" && ${#tw_targets[@]} -gt 0 ]]; then
    for ((i = 0; i < ${#tw_targets[@]}; i += tw_batch)); do
        if ! tw_time 6; then
            tw_rec error TW_TARGETS "time budget spent; targets from number $((i + 1)) on not tested"
            break
        fi
        tw_res="$(
            for tw_t in "${tw_targets[@]:i:tw_batch}"; do tw_kubelet "$tw_t" & done
            wait
        )"
        while IFS= read -r tw_l; do
            [[ "$tw_l" =~ ^([OF])\ ([0-9.]{7,15})($'\t'(.*))?$ ]] || continue
            tw_t="${BASH_REMATCH[2]}"
            [[ -n "${tw_done[$tw_t]-}" ]] && continue # a target listed twice is counted once
            tw_done[$tw_t]=1
            tw_tested=$((tw_tested + 1))
            if [[ "${BASH_REMATCH[1]}" == O ]]; then
                tw_open=$((tw_open + 1))
            else
                tw_fail+=("${BASH_REMATCH[4]}")
            fi
        done <<<"$tw_res"
    done
fi

# The targets' records: the lines of the targets that are not open (plain `nc` records when
# they fit, else one `ncgz` blob of as many targets as fit), then the `reach` summary, which
# always arrives. Room: what is left of the 4,000 bytes (at most 1,000 in deep mode, whose
# rulesets come after), less END and the summary.
tw_reach() {
    local room nf=${#tw_fail[@]} k=0 size=0 one tabs full="" off=(0) lo hi mid blob best="" named state i
    room=$((tw_limit - tw_bytes - 24 - 64))
    [[ "$tw_mode" == deep ]] && ((room > 1000)) && room=1000
    for ((i = 0; i < nf; i++)); do
        tabs="${tw_fail[i]//[^$'\t']/}"
        one=$((${#tw_fail[i]} + 3 * (${#tabs} + 1) + 1)) # "nc<TAB>" and a newline per line
        ((k == i && size + one <= room)) && size=$((size + one)) && k=$((i + 1))
        full+="${tw_fail[i]//$'\t'/$'\n'}"$'\n'
        off+=("${#full}")
    done
    named=$k
    if ((k < nf)) && tw_have gzip && tw_have base64; then
        # The largest prefix of targets whose packed lines fit: all of them, else a bisection.
        lo=$k hi=$((nf + 1)) mid=$nf
        for ((i = 0; i < 14 && lo + 1 < hi; i++)); do
            tw_time 2 || break
            blob="$(printf '%s' "${full:0:off[mid]}" | tw_pack)"
            if [[ -n "$blob" ]] && ((${#blob} + 6 <= room)); then
                lo=$mid best="$blob"
            else
                hi=$mid
            fi
            mid=$(((lo + hi) / 2))
        done
        [[ -n "$best" ]] && named=$lo
    fi
    if [[ -n "$best" ]]; then
        tw_rec ncgz "$best"
    else
        for ((i = 0; i < named; i++)); do tw_recs nc "${tw_fail[i]//$'\t'/$'\n'}"; done
    fi
    state=all
    ((named < nf)) && state=cut
    tw_rec reach "${#tw_targets[@]}" "$tw_digest" "$tw_tested" "$tw_open" "$named" "$state"
}

if [[ "$tw_mode" != "-" && -n "$tw_api_host" ]]; then
    if tw_time 5; then
        tw_recs api "$(tw_probe "$tw_api_host" "$tw_api_port" 3)"
    else
        tw_rec error api "time budget spent; the API server was not tested"
    fi
fi

# TLS to the API server offering ALPN `konnectivity,h2`, as the konnectivity agent does (its
# --alpn-proto plus the h2 gRPC adds). What the peer answers: the TCP connect, the handshake,
# the protocol it chose, its certificate's subject and issuer CN and whether the certificate
# is issued for the name dialled. A TLS-inspecting middlebox shows itself there.
tw_tls() {
    local host="$1" port="$2" out rc tcp=failed hs=failed alpn=- subj=- iss=- name=unknown x l sni=()
    [[ "$host" =~ $tw_ipv4 ]] || sni=(-servername "$host")
    out="$(timeout -k 2 8 openssl s_client -connect "$host:$port" "${sni[@]}" -alpn konnectivity,h2 </dev/null 2>&1)"
    rc=$?
    if [[ "$out" == *"CONNECTED("* ]]; then
        tcp=open
    elif ((rc == 124 || rc == 137)); then
        tcp=timeout
    fi
    if [[ "$out" =~ ALPN\ protocol:\ ([!-~]{1,40}) ]]; then
        alpn="${BASH_REMATCH[1]}"
    fi
    if [[ "$out" == *"-----BEGIN CERTIFICATE-----"* && "$out" != *"Cipher is (NONE)"* ]]; then
        hs=ok
        x="$(printf '%s\n' "$out" | timeout -k 2 3 openssl x509 -noout -subject -issuer -nameopt RFC2253 2>/dev/null)"
        while IFS= read -r l; do
            [[ "$l" =~ ^(subject|issuer)=(.*,)?CN=([^,]*) ]] || continue
            if [[ "${BASH_REMATCH[1]}" == subject ]]; then
                subj="$(tw_clean "${BASH_REMATCH[3]}")"
            else
                iss="$(tw_clean "${BASH_REMATCH[3]}")"
            fi
        done <<<"$x"
        if [[ "$host" =~ $tw_ipv4 ]]; then
            x="$(printf '%s\n' "$out" | timeout -k 2 3 openssl x509 -noout -checkip "$host" 2>/dev/null)"
        else
            x="$(printf '%s\n' "$out" | timeout -k 2 3 openssl x509 -noout -checkhost "$host" 2>/dev/null)"
        fi
        case "$x" in
        *"does NOT match"*) name=no ;;
        *"does match"*) name=yes ;;
        esac
    fi
    tw_rec tls "$host:$port" "$tcp" "$hs" "$alpn" "${subj:--}" "${iss:--}" "$name"
}

if [[ "$tw_mode" != "-" && -n "$tw_api_host" ]]; then
    if ! tw_have openssl; then
        tw_rec note tls "openssl is not on the node: the TLS/ALPN handshake was not tested"
    elif tw_time 11; then
        tw_tls "$tw_api_host" "$tw_api_port"
    else
        tw_rec error tls "time budget spent; the TLS/ALPN handshake was not tested"
    fi
    if [[ -n "$tw_tunnelfront" ]] && tw_time 5; then
        tw_recs tunnel "$(tw_probe "$tw_api_host" 9000 3)" # tunnel-front's own egress port
    fi
    if [[ -n "$tw_akslink" ]]; then
        tw_rec note aks-link "UDP 1194 to the API server cannot be proven by a connect: not tested here (the NSG check covers it)"
    fi
fi

if [[ "$tw_mode" != "-" && ${#tw_targets[@]} -gt 0 ]]; then
    tw_reach
fi

# --- deep: ufw and the rulesets in force, printed last under the size guard -----------------
tw_dkey=() tw_dval=()
tw_deep() { # key, first field, blob, extra fields ...
    tw_dkey+=("$1" "$2")
    tw_dval+=("$3" "${*:4}")
}

# One backend's dump, reduced for the kubelet port, as a pending ruleset record.
# A dump that failed or timed out is an error, never an empty ruleset (that would read as
# "nothing blocks"). Tables iptables-nft says it cannot show (native nft rules in them) are
# listed in tw_hidden for tw_nft, which then reads them with nft.
tw_hidden=""
tw_dump() {
    local backend="$1" cmd="$2" dump stats kept=- dropped=- chains=- rc line
    dump="$(timeout -k 2 15 "$cmd" 2>/dev/null)"
    rc=$?
    if ((rc != 0)); then
        if ((rc == 124 || rc == 137)); then
            tw_rec error "ruleset $backend" "$cmd timed out after 15 s; the ruleset is not reported"
        else
            tw_rec error "ruleset $backend" "$cmd failed with status $rc; the ruleset is not reported"
        fi
        return
    fi
    if [[ "$backend" == nft ]]; then
        while IFS= read -r line; do
            [[ "$line" =~ ^#\ Table\ .([A-Za-z_]+).\ (is|contains)\ incompatible ]] &&
                tw_hidden+=" ${BASH_REMATCH[1]}"
        done <<<"$dump"
    fi
    if tw_have awk && [[ -n "$dump" ]]; then
        dump="$(printf '%s\n' "$dump" | timeout -k 2 15 awk -v addrs="$tw_node_addrs" "$tw_reduce_awk" 2>/dev/null)"
        stats="${dump##*$'\n'}"
        if [[ "$stats" =~ ^#\ tw-reduced\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)$ ]]; then
            kept="${BASH_REMATCH[1]}" dropped="${BASH_REMATCH[2]}" chains="${BASH_REMATCH[3]}"
        elif [[ "$stats" != "# tw-reduced off "* ]]; then
            tw_rec error "ruleset $backend" "the reduction failed; the dump is not reported"
            return
        fi
    fi
    tw_deep ruleset "$backend" "$(printf '%s' "$dump" | tw_pack)" "$kept" "$dropped" "$chains"
}

# Native nftables tables (not iptables-nft's) of family ip, inet or netdev with a base chain
# on the ingress, prerouting or input hook, as one `nft -j list ruleset`-shaped JSON document.
tw_nft() {
    local tables kw fam tab one body doc=""
    if ! tables="$(timeout -k 2 5 nft list tables 2>/dev/null)"; then
        tw_rec error "ruleset nftables" "nft list tables failed; native nftables tables not read"
        return
    fi
    while read -r kw fam tab _; do
        [[ "$kw" == table && ("$fam" == ip || "$fam" == inet || "$fam" == netdev) ]] || continue
        # iptables-nft's own tables are read by iptables-nft-save, unless it said it cannot
        if [[ "$fam" == ip && "$tab" =~ ^(filter|nat|mangle|raw|security)$ && " $tw_hidden " != *" $tab "* ]]; then
            continue
        fi
        if [[ ! "$tab" =~ ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$ ]]; then
            tw_rec error "ruleset nftables" "a table name with unexpected characters was not read"
            continue
        fi
        if ! tw_time 7; then # one table: 5 s, and 2 more for a kill
            tw_rec error "ruleset nftables" "time budget spent; table $fam $tab and the ones after it not read"
            break
        fi
        if ! one="$(timeout -k 2 5 nft -j list table "$fam" "$tab" 2>/dev/null)"; then
            tw_rec error "ruleset nftables" "nft -j list table $fam $tab failed; that table is not reported"
            continue
        fi
        [[ "$one" =~ \"hook\":\ ?\"(input|prerouting|ingress)\" ]] || continue
        [[ "$one" =~ ^\{\"nftables\":\ ?\[(.*)\]\}$ ]] || continue
        body="${BASH_REMATCH[1]}"
        if [[ -n "$doc" ]]; then
            [[ "$body" =~ ^\{\"metainfo\":\ ?\{[^}]*\}\},\ ?(.*)$ ]] && body="${BASH_REMATCH[1]}"
            doc+=", $body"
        else
            doc="$body"
        fi
    done <<<"$tables"
    [[ -n "$doc" ]] && tw_deep ruleset nftables "$(printf '{"nftables": [%s]}' "$doc" | tw_pack)"
}

# `ufw status verbose` as a pending ufw record; the service reads it as whole, so a status
# that failed or timed out (partial output) is an error, never a short listing. The output is
# kept byte for byte (its closing blank line too): the status follows it in the same capture.
tw_ufw() {
    local out rc
    out="$(timeout -k 2 15 ufw status verbose 2>&1; printf '\n%s' "$?")"
    rc="${out##*$'\n'}"
    out="${out%$'\n'*}"
    if ((rc == 124 || rc == 137)); then
        tw_rec error ufw "ufw status verbose timed out after 15 s; ufw is not reported"
    elif ((rc != 0)); then
        tw_rec error ufw "ufw status verbose failed with status $rc: $(tw_clean "${out%%$'\n'*}")"
    else
        tw_deep ufw - "$(printf '%s' "$out" | tw_pack)"
    fi
}

if [[ "$tw_mode" == deep ]]; then
    if ! tw_have ufw; then
        tw_rec ufw absent
    elif tw_time 15; then
        tw_ufw
    else
        tw_rec error ufw "time budget spent; ufw status not read"
    fi
    # Legacy tables exist only when listed here; reading the file loads no kernel module
    # (a /proc file has size 0: `-s` cannot tell, reading a line can).
    if tw_have iptables-legacy-save && read -r _ 2>/dev/null </proc/net/ip_tables_names; then
        if tw_time 15; then tw_dump legacy iptables-legacy-save; else
            tw_rec error "ruleset legacy" "time budget spent; ruleset not read"
        fi
    fi
    if tw_have iptables-nft-save; then
        if tw_time 15; then tw_dump nft iptables-nft-save; else
            tw_rec error "ruleset nft" "time budget spent; ruleset not read"
        fi
    fi
    if tw_have nft; then
        if tw_time 10; then tw_nft; else
            tw_rec error "ruleset nftables" "time budget spent; native nftables tables not read"
        fi
    fi
    # Size guard: the largest blobs give way to `toolarge` records until everything fits.
    tw_end=24 # "TWPROBE 1 END <n>\n" and a margin
    while :; do
        tw_total=$((tw_bytes + tw_end))
        tw_big=-1
        for ((i = 0; i < ${#tw_dval[@]}; i += 2)); do
            tw_total=$((tw_total + ${#tw_dkey[i]} + ${#tw_dkey[i + 1]} + ${#tw_dval[i]} + ${#tw_dval[i + 1]} + 8))
            if [[ "${tw_dkey[i]}" != toolarge ]] && { ((tw_big < 0)) || ((${#tw_dval[i]} > ${#tw_dval[tw_big]})); }; then
                tw_big=$i
            fi
        done
        ((tw_total <= tw_limit || tw_big < 0)) && break
        tw_dval[tw_big + 1]="${tw_dkey[tw_big]} ${tw_dkey[tw_big + 1]} ${#tw_dval[tw_big]}"
        tw_dkey[tw_big]=toolarge
        tw_dval[tw_big]=""
    done
    for ((i = 0; i < ${#tw_dval[@]}; i += 2)); do
        if [[ "${tw_dkey[i]}" == toolarge ]]; then
            read -r tw_k tw_b tw_size <<<"${tw_dval[i + 1]}"
            tw_rec toolarge "$tw_k" "$tw_b" "$tw_size"
        elif [[ "${tw_dkey[i]}" == ufw ]]; then
            tw_rec ufw "${tw_dval[i]}"
        else
            read -r -a tw_extra <<<"${tw_dval[i + 1]}"
            tw_rec ruleset "${tw_dkey[i + 1]}" "${tw_dval[i]}" "${tw_extra[@]}"
        fi
    done
fi

printf 'TWPROBE 1 END %s\n' "$tw_n"
