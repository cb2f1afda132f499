#!/usr/bin/env bash
# Serves the demo with Debian's nginx on http://127.0.0.1:8080/demo/ next to `make run`:
# a 16 MiB sample file and its manifest under /files/, the page under /demo/, the client
# under /clients/web/. Stop with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
port="${PORT:-8080}"
files="$root/examples/demo/files"
mkdir -p "$files"
if [ ! -f "$files/sample.bin" ]; then
  head -c $((16 * 1024 * 1024)) /dev/urandom > "$files/sample.bin"
fi
if [ ! -f "$files/sample.bin.manifest.json" ] || [ "$files/sample.bin" -nt "$files/sample.bin.manifest.json" ]; then
  "$root/build/swarmcoord" manifest "$files/sample.bin" --block-size 65536 > "$files/sample.bin.manifest.json"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/nginx.conf" <<CONF
daemon off;
master_process off;
$( [ "$(id -u)" = 0 ] && echo 'user root root;' )
pid $work/nginx.pid;
error_log stderr;
events {}
http {
  types { text/html html; text/javascript js mjs; application/json json; }
  default_type application/octet-stream;
  access_log /dev/stdout;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:$port;
    root $root/examples/demo;
    location = / { return 302 /demo/; }
    location ^~ /demo/ { alias $root/examples/demo/; }
    location ^~ /clients/web/ { alias $root/clients/web/; }
  }
}
CONF
echo "demo: http://127.0.0.1:$port/demo/ (coordinator: ws://127.0.0.1:8000/v1/ws from make run)"
exec /usr/sbin/nginx -p "$work/" -e stderr -c "$work/nginx.conf"
