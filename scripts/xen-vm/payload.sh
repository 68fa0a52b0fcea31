# How results leave a machine that has only a console: gzipped tars in base64 between two
# markers, the end one carrying the md5 of the packed bytes. Sourced by lib.sh inside the
# emulated machine (busybox is enough) and by run.sh on the host.

# send_back PATH...: the files or directories PATH (relative to /out), packed, to the console
# between two markers, the end one carrying the md5 of the packed bytes. Sent as soon as each
# part is done, so that a machine stopped at its time limit still gives back what it finished.
send_back() {
    local tgz
    tgz=$(mktemp)
    tar czf "$tgz" -C /out "$@"
    {
        echo "XVM-PAYLOAD-BEGIN"
        base64 "$tgz"
        echo "XVM-PAYLOAD-END $(md5sum <"$tgz" | cut -d' ' -f1)"
    } >/dev/console
    rm -f "$tgz"
}

# receive_payloads LOG DEST: unpacks into DEST every payload of the console log LOG that
# arrived whole (its md5 matches); a damaged one is reported and skipped. Sets RECEIVED to
# how many were unpacked.
receive_payloads() {
    local log=$1 dest=$2 tmp b
    tmp=$(mktemp -d)
    RECEIVED=0
    tr -d '\r' <"$log" | awk -v dir="$tmp" '
        /^XVM-PAYLOAD-BEGIN/ { n++; f = sprintf("%s/%03d.b64", dir, n); inside = 1; next }
        /^XVM-PAYLOAD-END / { if (inside) { print $2 > (f ".md5"); close(f); close(f ".md5") } inside = 0; next }
        inside { print > f }'
    for b in "$tmp"/*.b64; do
        [ -f "$b.md5" ] || continue
        base64 -d <"$b" >"${b%.b64}.tgz" 2>/dev/null
        if [ "$(md5sum <"${b%.b64}.tgz" | cut -d' ' -f1)" != "$(cat "$b.md5")" ]; then
            echo "payload $(basename "$b" .b64) of $log came back damaged" >&2
            continue
        fi
        tar xzf "${b%.b64}.tgz" -C "$dest" && RECEIVED=$((RECEIVED + 1))
    done
    rm -rf "$tmp"
}
