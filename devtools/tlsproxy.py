"""A TLS-terminating TCP proxy on loopback, to try (and test) TLS against the embedded
broker, which speaks plaintext only.

Clients connect with TLS to ``listen``; bytes go on in plaintext to ``target``. Start the
broker with its advertised address set to the proxy (``EmbeddedBroker(advertise=...)``)
so that every connection a Kafka client makes, not only the bootstrap one, goes through
TLS. :func:`make_certificates` writes a CA and a server certificate for 127.0.0.1 with the
``openssl`` command line.

Example::

    ca, cert, key = make_certificates(Path("tls"))
    with TlsProxy(("127.0.0.1", 9093), ("127.0.0.1", 9092), cert, key):
        ...  # clients: security.protocol=SSL, ssl.ca.location=ca
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path


def make_certificates(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key), PEM, valid for a day."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=stratastream-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", f"/CN={host}")  # fmt: skip
    (d / "san.cnf").write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.cnf")  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


class TlsProxy:
    """Runs in a thread of its own; a context manager."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], cert: Path,
                 key: Path) -> None:  # fmt: skip
        self.listen, self.target = listen, target
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)
        self.connections = 0  # TLS connections accepted (a test can see they went through)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, *self.listen, ssl=self.ctx)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
