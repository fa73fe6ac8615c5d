"""Kafka brokers the tests start themselves from the project's own jars (deploy/local/kafka):
a secured single node (SASL_SSL with SCRAM and PLAIN, SSL with client certificates, ACLs by
KRaft's StandardAuthorizer) and a three-node KRaft cluster whose nodes a test may kill.

Certificates come from openssl at test time: a throw-away CA, a broker certificate for
127.0.0.1/localhost and a client certificate for mutual TLS. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from streams.settings import KafkaSecurity, Settings
from streams.tooling import services
from streams.tooling.services import KAFKA_POM_DIR, KafkaPaths
from tests.conftest import stop_process
from tests.fault_helpers import free_port

ADMIN_USER = "palliwatch-admin"
MTLS_CN = "palliwatch-mtls"


# ---- certificates --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: Path
    broker_keystore: Path  # PEM: the broker's private key and certificate
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed: {proc.stderr}"


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=palliwatch test {name}",
             cwd=d)  # fmt: skip


def _signed(d: Path, name: str, cn: str, san: str | None) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
             cwd=d)  # fmt: skip


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _signed(d, "broker", "localhost", "DNS:localhost,IP:127.0.0.1")
    _signed(d, "client", MTLS_CN, None)
    keystore = d / "broker-keystore.pem"
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return Pki(d / "ca.pem", keystore, d / "client.crt", d / "client.key", d / "other-ca.pem")


# ---- nodes ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Node:
    node_id: int
    root: Path
    ports: dict[str, int]  # listener name -> port
    config: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the broker gets no chance to hand over its leaderships."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def _libs(base: Settings) -> Path:
    paths = KafkaPaths(base.state_dir / "kafka")
    services.resolve_kafka_jars(paths)
    return paths.libs


def _java(libs: Path, *args: str, heap: str | None = None) -> list[str]:
    log4j = f"-Dlog4j.configuration=file:{KAFKA_POM_DIR / 'log4j.properties'}"
    mem = [f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC"] if heap else []
    return ["java", *mem, "-cp", f"{libs}/*", log4j, *args]


def _start(libs: Path, node: Node, cluster_id: str, format_args: list[str]) -> None:
    node.root.mkdir(parents=True, exist_ok=True)
    conf = node.root / "server.properties"
    conf.write_text(node.config)
    proc = subprocess.run(
        _java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf),
              *format_args),
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, f"kafka storage format failed: {proc.stdout}{proc.stderr}"
    restart(libs, node)


def restart(libs: Path, node: Node) -> None:
    with node.log.open("ab") as log:
        node.proc = subprocess.Popen(
            _java(libs, "kafka.Kafka", str(node.root / "server.properties"), heap="320m"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _wait_listening(nodes: list[Node], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        for port in node.ports.values():
            while not services.port_open("127.0.0.1", port):
                tail = "\n".join(node.log.read_text(errors="replace").splitlines()[-30:])
                assert node.alive(), f"broker {node.node_id} exited:\n{tail}"
                assert time.monotonic() < deadline, f"broker {node.node_id} not up:\n{tail}"
                time.sleep(0.3)


_COMMON = """\
log.dirs={data}
num.partitions=1
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=2097152
log.segment.bytes=67108864
"""


# ---- a secured single node -----------------------------------------------------------------


@dataclasses.dataclass
class SecureBroker:
    node: Node
    pki: Pki
    admin_password: str
    users: dict[str, tuple[str, str]]  # name -> (mechanism, password)
    plain_users: dict[str, str]

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.node.ports['SASL_SSL']}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.node.ports['SSL']}"

    def sasl(self, user: str, password: str | None = None, mechanism: str | None = None) -> dict:  # type: ignore[type-arg]
        """Settings fields for a SASL_SSL client logging in as ``user``."""
        mech, pw = self.users.get(user) or ("PLAIN", self.plain_users.get(user, ""))
        if user == ADMIN_USER:
            mech, pw = "SCRAM-SHA-512", self.admin_password
        return {
            "kafka_bootstrap": self.sasl_bootstrap,
            "kafka_external": True,
            "kafka_security": KafkaSecurity(
                protocol="SASL_SSL",
                sasl_mechanism=mechanism or mech,
                sasl_username=user,
                sasl_password=pw if password is None else password,
                ssl_cafile=str(self.pki.ca),
            ),
        }

    def mtls(self, with_certificate: bool = True, cafile: Path | None = None) -> dict:  # type: ignore[type-arg]
        return {
            "kafka_bootstrap": self.ssl_bootstrap,
            "kafka_external": True,
            "kafka_security": KafkaSecurity(
                protocol="SSL",
                ssl_cafile=str(cafile or self.pki.ca),
                ssl_certfile=str(self.pki.client_cert) if with_certificate else "",
                ssl_keyfile=str(self.pki.client_key) if with_certificate else "",
            ),
        }


_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def _secure_config(node: Node, pki: Pki, admin_password: str, plain: dict[str, str]) -> str:
    p = node.ports
    plain_users = " ".join(f'user_{u}="{pw}"' for u, pw in plain.items())
    return f"""\
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={node.node_id}@127.0.0.1:{p["CONTROLLER"]}
listeners=SASL_SSL://127.0.0.1:{p["SASL_SSL"]},SSL://127.0.0.1:{p["SSL"]},CONTROLLER://127.0.0.1:{p["CONTROLLER"]}
advertised.listeners=SASL_SSL://127.0.0.1:{p["SASL_SSL"]},SSL://127.0.0.1:{p["SSL"]}
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={_SCRAM} required \
    username="{ADMIN_USER}" password="{admin_password}";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={_SCRAM} required;
listener.name.sasl_ssl.plain.sasl.jaas.config={_PLAIN} required {plain_users};
listener.name.ssl.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location={pki.broker_keystore}
ssl.truststore.type=PEM
ssl.truststore.location={pki.ca}
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# The controller listener is loopback PLAINTEXT inside the node: its principal is ANONYMOUS.
super.users=User:{ADMIN_USER};User:ANONYMOUS
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
""" + _COMMON.format(data=node.root / "data")


@contextlib.contextmanager
def secure_broker(base: Settings, users: dict[str, str]) -> Iterator[SecureBroker]:
    """``users``: name -> SCRAM mechanism; each gets a random password (and a PLAIN twin
    ``<name>-plain``). No user but the admin has any ACL until a test grants one."""
    root = base.state_dir / "tests" / f"secure-broker-{uuid.uuid4().hex[:8]}"
    pki = make_pki(root / "pki")
    node = Node(1, root / "node", {"SASL_SSL": free_port(), "SSL": free_port(),
                                   "CONTROLLER": free_port()})  # fmt: skip
    admin_password = uuid.uuid4().hex
    scram = {u: (m, uuid.uuid4().hex) for u, m in users.items()}
    plain = {f"{u}-plain": uuid.uuid4().hex for u in users}
    node.config = _secure_config(node, pki, admin_password, plain)
    format_args = ["--add-scram", f"SCRAM-SHA-512=[name={ADMIN_USER},password={admin_password}]"]
    for user, (mech, pw) in scram.items():
        format_args += ["--add-scram", f"{mech}=[name={user},password={pw}]"]
    libs = _libs(base)
    try:
        _start(libs, node, services.kafka_cluster_id(), format_args)
        _wait_listening([node])
        yield SecureBroker(node, pki, admin_password, scram, plain)
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---- a three-node cluster ------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    nodes: list[Node]
    libs: Path

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.ports['PLAINTEXT']}" for n in self.nodes)

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def restart(self, node_id: int) -> None:
        node = self.node(node_id)
        restart(self.libs, node)
        _wait_listening([node])


def _cluster_config(node: Node, voters: str) -> str:
    p = node.ports
    return f"""\
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{p["PLAINTEXT"]},CONTROLLER://127.0.0.1:{p["CONTROLLER"]}
advertised.listeners=PLAINTEXT://127.0.0.1:{p["PLAINTEXT"]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
default.replication.factor=3
min.insync.replicas=2
# A killed leader is noticed within seconds, not the default 18 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=10000
""" + _COMMON.format(data=node.root / "data")


@contextlib.contextmanager
def three_node_cluster(base: Settings) -> Iterator[Cluster]:
    root = base.state_dir / "tests" / f"cluster-{uuid.uuid4().hex[:8]}"
    nodes = [Node(i, root / f"node{i}", {"PLAINTEXT": free_port(), "CONTROLLER": free_port()})
             for i in (1, 2, 3)]  # fmt: skip
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.ports['CONTROLLER']}" for n in nodes)
    for n in nodes:
        n.config = _cluster_config(n, voters)
    libs = _libs(base)
    cluster_id = services.kafka_cluster_id()
    try:
        for n in nodes:
            _start(libs, n, cluster_id, [])
        _wait_listening(nodes)
        yield Cluster(nodes, libs)
    finally:
        # Throw-away nodes: a controlled shutdown with a node already dead waits for a quorum
        # that may never answer (30 s a node), and nothing on them needs to survive.
        for n in nodes:
            n.kill()
        shutil.rmtree(root, ignore_errors=True)


def topic_setting(s: Settings, topic: str, key: str) -> tuple[str, str]:
    """(value, source) of a topic's configuration entry; source DYNAMIC_TOPIC_CONFIG: set on
    the topic itself when it was created, not inherited from the broker."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams import kafka_clients

    admin = kafka_clients.admin(s)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    entry = found["topic"][topic][key]
    return str(entry["value"]), str(entry["config_source"])
