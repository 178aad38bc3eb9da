"""A minimal Iceberg REST catalog for tests/iceberg_tables.rs: GET /v1/config and loadTable
(GET /v1/{prefix}/namespaces/{namespace}/tables/{table}), over a pyiceberg SqlCatalog. Binds a
free port and prints it on the first line of stdout.

usage: rest_server.py <sqlite-uri> <catalog-name> <warehouse> <prefix>"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, unquote
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError

uri, name, warehouse, prefix = sys.argv[1:5]
catalog = SqlCatalog(name, uri=uri, warehouse=warehouse)


class Handler(BaseHTTPRequestHandler):
    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, kind, message):
        self.send(code, {"error": {"message": message, "type": kind, "code": code}})

    def do_GET(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts == ["v1", "config"]:
            return self.send(200, {"defaults": {}, "overrides": {"prefix": prefix}})
        if parts[:2] != ["v1", prefix]:
            return self.error(404, "NotFoundException", f"no route {self.path}")
        rest = parts[2:]
        if len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "tables":
            namespace = tuple(unquote(rest[1]).split("\x1f"))
            try:
                table = catalog.load_table(namespace + (unquote(rest[3]),))
            except NoSuchTableError as e:
                return self.error(404, "NoSuchTableException", str(e))
            metadata = json.loads(table.metadata.model_dump_json(exclude_none=True, by_alias=True))
            return self.send(200, {"metadata-location": table.metadata_location, "metadata": metadata, "config": {}})
        self.error(404, "NotFoundException", f"no route {self.path}")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
