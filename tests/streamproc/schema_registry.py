"""A small Confluent-compatible Schema Registry for tests, over real HTTP on loopback.

It answers the calls that Confluent's serializers and ``SchemaRegistryClient`` make:
register a schema under a subject, look a schema up by id (``format=serialized`` gives the
stored Protobuf form, which is what the serializers register), and a subject's version.
It is a test double for the registry only; the clients, serializers and the worker's
decoding under test are the real ones.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class SchemaRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, dict] = {}
        self.subjects: dict[str, list[int]] = {}
        self.lookups = 0
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def _send(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                    self._send(200, reg.register(parts[1], body))
                elif len(parts) == 2 and parts[0] == "subjects":  # lookup_schema
                    sid = reg.find(body)
                    if sid is None:
                        self._send(404, {"error_code": 40403, "message": "Schema not found"})
                    else:
                        self._send(200, reg.entry(sid, parts[1]))
                else:
                    self._send(404, {"error_code": 404, "message": "not found"})

            def do_GET(self) -> None:
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
                    reg.lookups += 1
                    sid = int(parts[2])
                    if sid not in reg.schemas:
                        self._send(404, {"error_code": 40403, "message": "Schema not found"})
                    else:
                        self._send(200, reg.schemas[sid])
                elif len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
                    versions = reg.subjects.get(parts[1], [])
                    v = len(versions) if parts[3] == "latest" else int(parts[3])
                    if not 0 < v <= len(versions):
                        self._send(404, {"error_code": 40402, "message": "Version not found"})
                    else:
                        self._send(200, reg.entry(versions[v - 1], parts[1], v))
                else:
                    self._send(404, {"error_code": 404, "message": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def find(self, body: dict) -> int | None:
        for sid, s in self.schemas.items():
            if s["schema"] == body["schema"]:
                return sid
        return None

    def register(self, subject: str, body: dict) -> dict:
        sid = self.find(body)
        if sid is None:
            sid = len(self.schemas) + 1
            self.schemas[sid] = {
                "schema": body["schema"],
                "schemaType": body.get("schemaType", "AVRO"),
                "references": body.get("references", []),
            }
        versions = self.subjects.setdefault(subject, [])
        if sid not in versions:
            versions.append(sid)
        return {"id": sid}

    def entry(self, sid: int, subject: str, version: int | None = None) -> dict:
        versions = self.subjects.get(subject, [])
        v = version or (versions.index(sid) + 1 if sid in versions else 1)
        return {"id": sid, "subject": subject, "version": v, **self.schemas[sid]}

    def __enter__(self) -> SchemaRegistry:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
