# The Ingress of the local cluster (sourced by cluster.sh). No ingress
# controller can be built here, so nginx from Debian runs inside the
# namespace, configured from an Ingress object as ingress-nginx would be:
# its host and paths, WebSocket upgrades, and the proxy timeouts from its
# nginx.ingress.kubernetes.io annotations. It listens on the node address,
# port 80.

# ingress NAMESPACE NAME: (re)configure and (re)start nginx for the Ingress.
ingress() {
	local ns=$1 name=$2 json
	json=$(kubectl_ns -n "$ns" get ingress "$name" -o json)
	local host backend port read send
	host=$(jq -r '.spec.rules[0].host' <<<"$json")
	backend=$(jq -r '.spec.rules[0].http.paths[0].backend.service.name' <<<"$json")
	port=$(jq -r '.spec.rules[0].http.paths[0].backend.service.port.name // .spec.rules[0].http.paths[0].backend.service.port.number' <<<"$json")
	read=$(jq -r '.metadata.annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] // "60"' <<<"$json")
	send=$(jq -r '.metadata.annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] // "60"' <<<"$json")
	local svc ip svcport
	svc=$(kubectl_ns -n "$ns" get service "$backend" -o json)
	ip=$(jq -r '.spec.clusterIP' <<<"$svc")
	svcport=$(jq -r --arg p "$port" '.spec.ports[] | select(.name == $p or (.port|tostring) == $p) | .port' <<<"$svc")
	local locations=""
	for path in $(jq -r '.spec.rules[0].http.paths[].path' <<<"$json"); do
		locations+="
    location $path {
      proxy_pass http://$ip:$svcport;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_read_timeout ${read}s;
      proxy_send_timeout ${send}s;
      proxy_buffering off;
    }"
	done
	mkdir -p "$STATE/nginx/tmp"
	cat >"$STATE/nginx/nginx.conf" <<CFG
daemon off;
worker_processes 1;
pid $STATE/nginx/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $STATE/nginx/tmp/body;
  proxy_temp_path $STATE/nginx/tmp/proxy;
  fastcgi_temp_path $STATE/nginx/tmp/fastcgi;
  uwsgi_temp_path $STATE/nginx/tmp/uwsgi;
  scgi_temp_path $STATE/nginx/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen $NODE_IP:80;
    server_name $host;$locations
  }
}
CFG
	stop nginx
	start nginx nginx -c "$STATE/nginx/nginx.conf"
	wait_for nginx 10 in_ns curl -s -o /dev/null "http://$NODE_IP/"
	echo "    http://$NODE_IP/ (Host: $host) -> Service $ns/$backend ($ip:$svcport), timeouts ${read}s/${send}s"
}
