# tunnelwatch node probe, format version 1. Read-only: it changes nothing on the node.
#
# Run by the VMSS run-command extension as root through `/bin/bash -c`, with the parameters
# prepended as `export NAME=value` lines (unquoted by the extension, which is why every value
# is checked again here against a strict pattern and refused when it does not match):
#   TW_TARGETS   IPv4 addresses to test on TCP 10250, separated by commas (or spaces)
#   TW_API_HOST  the API server FQDN or IPv4 address, tested on TW_API_PORT
#   TW_API_PORT  1-65535 (443)
#   TW_MODE      triage | deep (deep adds ufw status and the rulesets in force)
#
# Output (stdout only; the service keeps the last 4,096 bytes, so a cut start is detected by
# the missing BEGIN, and END carries the number of records between the markers):
#   TWPROBE 1 BEGIN <mode>
#   <key>\t<field>...        one record per line, no tab or newline inside a field
#   TWPROBE 1 END <records>
# Records: error, tool, host, addr, os, nc, ncgz, api, component, ufw, ruleset (see
# shared/probe/output.py). `nc`/`api` records carry connection-test lines in the netcat
# framing (`target=<ip>:<port>` ... `<ip>:<port> exit=<n>`). Blobs are gzip + base64.
#
# No eval, no temp files, every external command under `timeout`; the whole run stays within
# about 60 s (200 targets in batches of 50 at 2-3 s each, plus the bounded commands below).

set -u
set +o history
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C
tw_n=0
tw_batch=50

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
}

tw_have() { command -v "$1" >/dev/null 2>&1; }

# gzip + base64 on one line of stdin; empty output when a tool is missing or fails.
tw_pack() {
    if tw_have gzip && tw_have base64; then
        timeout 10 gzip -c -n 2>/dev/null | timeout 10 base64 -w0 2>/dev/null
    else
        cat >/dev/null
    fi
}

tw_octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
tw_ipv4="^${tw_octet}\.${tw_octet}\.${tw_octet}\.${tw_octet}\$"
tw_fqdn='^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$'

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
    if [[ ! "$tw_raw" =~ ^[0-9.,\ ]{1,4000}$ ]]; then
        tw_errors+=("TW_TARGETS" "characters other than digits, dots, commas, spaces")
    else
        tw_raw="${tw_raw//,/ }"
        # Only digits, dots and spaces are left: word splitting is safe, globbing is off.
        set -f
        IFS=' ' read -r -a tw_split <<<"$tw_raw" || true
        set +f
        for tw_t in "${tw_split[@]}"; do
            if [[ "$tw_t" =~ $tw_ipv4 ]]; then
                tw_targets+=("$tw_t")
            else
                tw_errors+=("TW_TARGETS" "not an IPv4 address, skipped")
            fi
        done
        if ((${#tw_targets[@]} > 200)); then
            tw_errors+=("TW_TARGETS" "more than 200 targets; probing none")
            tw_targets=()
        fi
    fi
fi

tw_api_host="${TW_API_HOST-}"
if [[ -n "$tw_api_host" ]] && { ((${#tw_api_host} > 253)) || [[ ! "$tw_api_host" =~ $tw_fqdn ]]; }; then
    tw_errors+=("TW_API_HOST" "not an FQDN or IPv4 address; API check skipped")
    tw_api_host=""
fi
tw_api_port="${TW_API_PORT-443}"
if [[ ! "$tw_api_port" =~ ^[1-9][0-9]{0,4}$ ]] || ((tw_api_port > 65535)); then
    tw_errors+=("TW_API_PORT" "not a port 1-65535; API check skipped")
    tw_api_host=""
fi

printf 'TWPROBE 1 BEGIN %s\n' "$tw_mode"
for ((i = 0; i < ${#tw_errors[@]}; i += 2)); do
    tw_rec error "${tw_errors[i]}" "${tw_errors[i + 1]}"
done

# --- tools and identity ----------------------------------------------------------------------
tw_nc=""
if tw_have nc && [[ "$(timeout 3 nc -h 2>&1)" == *OpenBSD* ]]; then
    tw_nc=openbsd # its -z -v -w wording is what the netcat parser reads; others use /dev/tcp
fi
tw_tools=()
for tw_t in timeout gzip base64 crictl ufw iptables-legacy-save iptables-nft-save openssl ip; do
    tw_have "$tw_t" && tw_tools+=("$tw_t")
done
tw_rec tool "nc=${tw_nc:-none}" "${tw_tools[*]}"

tw_rec host "$(timeout 3 hostname 2>/dev/null || true)"
if tw_have ip; then
    tw_addrs="$(timeout 3 ip -4 -o addr show scope global 2>/dev/null)"
    while read -r _ tw_if _ tw_cidr _; do
        [[ -n "${tw_cidr-}" ]] && tw_rec addr "$tw_if" "$tw_cidr"
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

# --- connection tests ------------------------------------------------------------------------
# One target's lines, printed in ONE write (well under PIPE_BUF) so parallel jobs never mix.
tw_probe() {
    local host="$1" port="$2" wait="$3" out rc numeric=()
    [[ "$host" =~ $tw_ipv4 ]] && numeric=(-n) # an address needs no DNS; a name does
    if [[ "$tw_nc" == openbsd ]]; then
        out="$(timeout $((wait + 2)) nc -z -v "${numeric[@]}" -w "$wait" "$host" "$port" 2>&1)"
        rc=$?
    else
        out="$(timeout "$wait" bash -c 'exec 3<>"/dev/tcp/$1/$2"' tw "$host" "$port" 2>&1)"
        rc=$?
    fi
    out="${out//$'\t'/ }"
    printf 'target=%s:%s\n%s%s:%s exit=%s\n' "$host" "$port" "${out:+$out$'\n'}" "$host" "$port" "$rc"
}

if [[ "$tw_mode" != "-" && ${#tw_targets[@]} -gt 0 ]]; then
    tw_lines=""
    for ((i = 0; i < ${#tw_targets[@]}; i += tw_batch)); do
        tw_lines+="$(
            for tw_t in "${tw_targets[@]:i:tw_batch}"; do tw_probe "$tw_t" 10250 2 & done
            wait
        )"$'\n'
    done
    if ((${#tw_lines} > 2000)); then
        # Many targets: one compressed record keeps triage output under the 4,096-byte tail.
        tw_rec ncgz "$(printf '%s' "$tw_lines" | tw_pack)"
    else
        while IFS= read -r tw_l; do
            [[ -n "$tw_l" ]] && tw_rec nc "$tw_l"
        done <<<"$tw_lines"
    fi
fi

if [[ "$tw_mode" != "-" && -n "$tw_api_host" ]]; then
    tw_api_lines="$(tw_probe "$tw_api_host" "$tw_api_port" 3)"
    while IFS= read -r tw_l; do
        [[ -n "$tw_l" ]] && tw_rec api "$tw_l"
    done <<<"$tw_api_lines"
fi

# --- tunnel components (crictl) --------------------------------------------------------------
if [[ "$tw_mode" != "-" ]]; then
    if tw_have crictl; then
        tw_ids="$(timeout 10 crictl ps -a -q --name '^(konnectivity-agent|tunnelfront|aks-link)' 2>/dev/null)"
        tw_rc=$?
        if ((tw_rc != 0)); then
            tw_rec error crictl "crictl ps failed with status $tw_rc"
        fi
        tw_count=0
        while read -r tw_id; do
            [[ "$tw_id" =~ ^[0-9a-f]{6,64}$ ]] || continue
            tw_count=$((tw_count + 1))
            ((tw_count > 8)) && break
            tw_c="$(timeout 5 crictl inspect -o go-template --template \
                '{{.status.metadata.name}}|{{.status.state}}|{{.status.metadata.attempt}}|{{.status.exitCode}}|{{.status.reason}}|{{.status.finishedAt}}' \
                "$tw_id" 2>/dev/null)"
            IFS='|' read -r tw_name tw_state tw_att tw_exit tw_reason tw_fin <<<"$tw_c"
            tw_rec component "${tw_name:-?}" "${tw_state:-?}" "${tw_att:-?}" "${tw_exit:-?}" \
                "${tw_reason:--}" "${tw_fin:--}"
        done <<<"$tw_ids"
    else
        tw_rec component - absent
    fi
fi

# --- deep: ufw and the rulesets in force -----------------------------------------------------
if [[ "$tw_mode" == deep ]]; then
    if tw_have ufw; then
        tw_rec ufw "$(timeout 15 ufw status verbose 2>&1 | tw_pack)"
    else
        tw_rec ufw absent
    fi
    # Legacy tables exist only when listed here; reading the file loads no kernel module.
    if tw_have iptables-legacy-save && [[ -s /proc/net/ip_tables_names ]]; then
        tw_rec ruleset legacy "$(timeout 15 iptables-legacy-save 2>/dev/null | tw_pack)"
    fi
    if tw_have iptables-nft-save; then
        tw_rec ruleset nft "$(timeout 15 iptables-nft-save 2>/dev/null | tw_pack)"
    fi
fi

printf 'TWPROBE 1 END %s\n' "$tw_n"
