"""The smallest Iceberg REST catalog that serves reads: GET /v1/config and
GET /v1/{prefix}/namespaces/{ns}/tables/{table}, backed by a pyiceberg SqlCatalog.
usage: rest_server.py <port> <sqlite-uri> <warehouse> [prefix]"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, unquote, parse_qs
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError

port, uri, warehouse = int(sys.argv[1]), sys.argv[2], sys.argv[3]
prefix = sys.argv[4] if len(sys.argv) > 4 else ""
catalog = SqlCatalog("chronoflow", uri=uri, warehouse=warehouse)

class Handler(BaseHTTPRequestHandler):
    def send(self, code, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        print("GET", self.path, dict(self.headers), file=sys.stderr, flush=True)
        parts = url.path.strip("/").split("/")
        if parts == ["v1", "config"]:
            overrides = {"prefix": prefix} if prefix else {}
            return self.send(200, {"defaults": {}, "overrides": overrides,
                                   "endpoints": ["GET /v1/{prefix}/namespaces/{namespace}/tables/{table}"]})
        rest = parts[1:]
        if prefix:
            if rest[:1] != [prefix]:
                return self.send(404, {"error": {"message": "unknown prefix", "type": "NotFoundException", "code": 404}})
            rest = rest[1:]
        if parts[0] == "v1" and len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "tables":
            namespace = tuple(unquote(rest[1]).split("\x1f"))
            try:
                table = catalog.load_table(namespace + (unquote(rest[3]),))
            except NoSuchTableError as e:
                return self.send(404, {"error": {"message": str(e), "type": "NoSuchTableException", "code": 404}})
            metadata = json.loads(table.metadata.model_dump_json(exclude_none=True, by_alias=True))
            return self.send(200, {"metadata-location": table.metadata_location, "metadata": metadata, "config": {}},
                             [("ETag", '"' + table.metadata_location + '"')])
        self.send(404, {"error": {"message": f"no route {url.path}", "type": "NotFoundException", "code": 404}})

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
