"""A private PostgreSQL cluster that speaks TLS only, with a CA and certificates made at test
time by openssl (tests/test_db_tls.py). Nothing here is a secret: every key lives for one test
run in the state directory and the cluster listens on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.tooling import services
from tests.fault_helpers import free_port


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA; returns its certificate (the key is ``<name>.key`` beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
          "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(crt)])  # fmt: skip
    return crt


def make_server_cert(directory: Path, ca: Path, names: list[str]) -> tuple[Path, Path]:
    """A server certificate signed by ``ca`` for ``names`` (DNS names and IP addresses, in its
    subjectAltName: libpq's verify-full checks those). Returns (certificate, key)."""
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}",
          "-keyout", str(key), "-out", str(csr)])  # fmt: skip
    alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={alt}\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca),
          "-CAkey", str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "2",
          "-extfile", str(ext), "-out", str(crt)])  # fmt: skip
    return crt, key


@dataclass
class TLSCluster:
    root: Path
    port: int
    bindir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def sql(self, statement: str, db: str = "postgres") -> str:
        """As the cluster's superuser, over its socket."""
        return _run(services._as_pg_user([str(self.bindir / "psql"), "-h", str(self.socket_dir),
                                  "-p", str(self.port), "-U", "postgres", "-d", db,
                                  "-v", "ON_ERROR_STOP=1", "-qAtc", statement]))  # fmt: skip

    def stop(self) -> None:
        subprocess.run(services._as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.data),
                                     "-m", "immediate", "-w", "stop"]),
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def start_tls_cluster(root: Path, cert: Path, key: Path) -> TLSCluster:
    """initdb, TLS on, password logins over TLS only (``hostssl``), listening on 127.0.0.1."""
    bindir = services.ensure_pg_binaries()
    cluster = TLSCluster(root, free_port(), bindir)
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    server_cert, server_key = root / "server.crt", root / "server.key"
    shutil.copy(cert, server_cert)
    shutil.copy(key, server_key)
    server_key.chmod(0o600)  # PostgreSQL refuses a key others may read
    if os.geteuid() == 0:
        for path in (root, cluster.socket_dir, server_cert, server_key):
            shutil.chown(path, "postgres", "postgres")
    _run(services._as_pg_user(services.initdb_command(bindir, cluster.data, "--no-sync")))
    hba = cluster.data / "pg_hba.conf"
    # TLS or nothing over TCP: a client that does not encrypt finds no pg_hba.conf entry.
    hba.write_text("local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    if os.geteuid() == 0:
        shutil.chown(hba, "postgres", "postgres")
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.socket_dir} "
        f"-c ssl=on -c ssl_cert_file={server_cert} -c ssl_key_file={server_key} "
        "-c fsync=off -c shared_buffers=32MB -c max_connections=20"
    )
    log = root / "postgres.log"
    _run(services._as_pg_user([str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(log),
                       "-o", opts, "-w", "-t", "60", "start"]))  # fmt: skip
    return cluster
