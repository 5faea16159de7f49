# Shared by the bench scripts (sourced): a work directory and the processes
# started, both removed on exit; free ports; waiting for a URL to answer.
work=$(mktemp -d)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url [curl args...]
	local url=$1; shift
	for _ in $(seq 1 150); do
		curl -sf -o /dev/null "$@" "$url" && return 0
		sleep 0.2
	done
	echo "no answer from $url" >&2
	return 1
}
