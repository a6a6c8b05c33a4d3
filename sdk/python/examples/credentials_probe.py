#!/usr/bin/env python3
"""An agent that looks for Kubernetes credentials and tries to use them.

It stands for agent code gone wrong (a prompt-injected tool call, a
compromised dependency): every turn it searches the places a pod's
ServiceAccount token lives and the environment, then asks the API server for
the namespace's Conversations with whatever it found, and replies with what
it saw as JSON. The end-to-end tests run it where Tether runs agents (it
must find nothing and be refused) and, as a control, in a plain pod with the
runtime's ServiceAccount (it must find the token and be let in).

With --once PATH it writes the report to PATH (a pod's termination
message, say) and exits, without Tether.
"""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tether_agent  # noqa: E402

SEARCHED = ["/var/run/secrets", "/run/secrets"]


def tokens():
    found = []
    for root in SEARCHED:
        for directory, _dirs, files in os.walk(root):
            for name in files:
                if name == "token":
                    found.append(os.path.join(directory, name))
    return sorted(found)


def report():
    found = tokens()
    token = None
    for path in found:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
            break
        except OSError:
            continue
    env = sorted(k for k in os.environ if any(w in k for w in ("TOKEN", "SERVICEACCOUNT", "SERVICE_ACCOUNT", "GATEWAY")))
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    namespace = os.environ.get("PROBE_NAMESPACE", "default")
    api = "no API server address"
    if host:
        url = f"https://{host}:{port}/apis/tether.dev/v1alpha1/namespaces/{namespace}/conversations"
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", "Bearer " + token)
        # Whatever it takes to get in: no verification of the server.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                api = response.status
        except urllib.error.HTTPError as e:
            api = e.code
        except (urllib.error.URLError, OSError) as e:
            api = f"unreachable: {e}"
    return {"tokens": found, "credentialEnv": env, "api": api}


def handle(turn):
    turn.send(json.dumps(report(), sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write(json.dumps(report(), sort_keys=True))
    else:
        tether_agent.run(handle)
