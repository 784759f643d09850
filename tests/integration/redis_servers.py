"""Redis servers a test starts itself on free 127.0.0.1 ports: AOF, TLS, ACL and a 3-master cluster.

Everything destructive (kill, restart, maxmemory, SCRIPT FLUSH, FLUSHALL, ACL) happens on these,
never on the shared server of the machine.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process in the foreground, so the test can SIGKILL and restart it."""

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        port: int | None = None,
        tls: TlsFiles | None = None,
        env: dict[str, str] | None = None,
    ):
        self.env = env  # the server's environment (e.g. its locale), else this process's
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), *self.tls.server_args()]
        return [
            REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"), "--protected-mode", "no", *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.admin().ping():
                    return self
            except redis.AuthenticationError:  # up, and asking for the password it was started with
                return self
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()  # one that is still starting must not outlive the test that gave up on it
                logfile = self.dir / "redis.log"
                log = logfile.read_text()[-2000:] if logfile.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not start: {log}")
            time.sleep(0.05)

    def admin(self, **kwargs: Any) -> redis.Redis:
        kw: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "socket_timeout": 5}
        if self.tls:
            kw.update(ssl=True, ssl_ca_certs=str(self.tls.ca), ssl_cert_reqs="required")
        kw.update(kwargs)
        return redis.Redis(**kw)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync; what survives is what the AOF already holds."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def connection(self, **extra: Any) -> dict[str, Any]:
        """The Airflow connection (JSON form) of the redis provider that reaches this server."""
        spec: dict[str, Any] = {"conn_type": "redis", "host": "127.0.0.1", "port": self.port}
        if self.tls:
            extra = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), "ssl_cert_reqs": "required", **extra}
        if extra:
            spec["extra"] = extra
        return spec


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = workdir / "ca.crt", workdir / "ca.key"
        self.cert, self.key = workdir / "server.crt", workdir / "server.key"
        ext = workdir / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dbstream test CA",
            "-keyout", str(self.ca_key), "-out", str(self.ca))  # fmt: skip
        csr = workdir / "server.csr"
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(self.key), "-out", str(csr))  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(self.cert))  # fmt: skip

    def server_args(self) -> list[str]:
        return [
            "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip


class RedisClusterServers:
    """Three masters, no replicas, joined with ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "3000"]
        # An explicit bus port: the default (port + 10000) fails for free ports above 55535.
        self.nodes = [
            RedisServer(workdir / f"node{i}", *args, "--cluster-port", str(free_port()))
            for i in range(masters)
        ]

    def start(self) -> RedisClusterServers:
        try:
            return self._start()
        except BaseException:
            self.stop()  # the nodes already started must not outlive a cluster that failed to form
            raise

    def _start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(self._ok(n) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        info = node.admin().cluster("INFO")
        return info.get("cluster_state") == "ok" and int(info.get("cluster_slots_assigned", 0)) == 16384

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def node_of(self, key: str) -> int:
        """Index of the master serving ``key``'s slot."""
        port = self.client().get_node_from_key(key).port
        return next(i for i, n in enumerate(self.nodes) if n.port == port)

    def connection(self) -> dict[str, Any]:
        return {
            "conn_type": "redis",
            "host": "127.0.0.1",
            "port": self.nodes[0].port,
            "extra": {
                "cluster": True,
                "startup_nodes": ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[1:]),
            },
        }

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
