#!/usr/bin/env python3
"""Row 6 of bench/run: time from an admin approval to the callback's
arrival at a local receiver (DTR-26), over N sequential approvals.

Usage: callback_latency.py ISSUER ADMIN_TOKEN CLIENT SECRET N RECEIVER_PORT

The dtr server must already be running with a client whose
deferred_client_notification_endpoint is http://127.0.0.1:RECEIVER_PORT/cb
(dev_mode) and a policy that sends scope `payments` to review. Prints one
line: `RESULT n=.. p50_ms=.. p99_ms=.. max_ms=..`.
"""
import base64
import http.client
import http.server
import json
import sys
import threading
import time
import urllib.parse

issuer, admin_token, client, secret, n, port = sys.argv[1:7]
n, port = int(n), int(port)
host, srv_port = urllib.parse.urlsplit(issuer).netloc.split(":")

arrived = threading.Event()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()
        arrived.set()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()

conn = http.client.HTTPConnection(host, int(srv_port))
basic = "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()


def call(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


# Create the deferrals first, so each approval is long past the callback
# delay of its deferred response (DTR-27) and only the sender is measured.
for _ in range(n):
    status, _ = call(
        "POST",
        "/token",
        "grant_type=client_credentials&scope=payments&completion_mode=deferred",
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic},
    )
    assert status == 400, status
admin = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
status, body = call("GET", f"/admin/deferrals?state=pending&limit={n}", headers=admin)
ids = [d["id"] for d in json.loads(body)]
time.sleep(1.0)

lat = []
for i in ids:
    arrived.clear()
    t0 = time.perf_counter()
    status, _ = call("POST", f"/admin/deferrals/{i}/approve", "{}", admin)
    assert status == 200, status
    if not arrived.wait(5.0):
        print(f"bench: callback for {i} did not arrive within 5 s", file=sys.stderr)
        continue
    lat.append((time.perf_counter() - t0) * 1000)

lat.sort()
if not lat:
    print("RESULT n=0 p50_ms=- p99_ms=- max_ms=-")
    sys.exit(1)
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"RESULT n={len(lat)} p50_ms={p(0.50):.2f} p99_ms={p(0.99):.2f} max_ms={lat[-1]:.2f}")
server.shutdown()
