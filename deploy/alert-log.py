#!/usr/bin/env python3
"""Alertmanager webhook receiver for `make observe`: one line per alert.

Every receiver of the shipped alertmanager.yml (pagerduty, ticket, heartbeat)
points here, at /<receiver>; each notification's alerts are appended to the
log file given as the second argument, so a newcomer sees what would page,
what would ticket, and what Alertmanager held back.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            note = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        receiver = self.path.strip("/") or note.get("receiver", "?")
        stamp = time.strftime("%H:%M:%S")
        with open(sys.argv[2], "a", encoding="utf-8") as log:
            for a in note.get("alerts", []):
                labels, ann = a.get("labels", {}), a.get("annotations", {})
                log.write(
                    f"{stamp} {receiver:9} {a.get('status', '?'):8} {labels.get('alertname', '?')} "
                    f"severity={labels.get('severity', '')} {ann.get('summary', '')} {ann.get('runbook_url', '')}\n"
                )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    HTTPServer((host, int(port)), Handler).serve_forever()
