"""Every Kafka client palliwatch makes, configured in one place from Settings.kafka_security.

kafka-python (the admin, the producers of the CLI and the simulator, `dlq`, the benches) and
aiokafka (the Faust worker, a bench) take the same TLS context and SASL options, so PLAINTEXT,
SSL (mutual TLS with a client certificate), SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-256/512,
PLAIN) reach every client alike. A refusal by the broker becomes one line naming what to set or
grant (`explain`), never a stack trace or a hang.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kerrors

from processors import retry
from schemas.topics import INTERNAL_MESSAGE_BYTES
from streams.settings import KafkaSecurity, Settings


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be used: not reachable, or it refused us (the message says what to do)."""


def unreachable_message(settings: Settings) -> str:
    return (
        f"Kafka not reachable at {settings.kafka_bootstrap}: run `palliwatch services up` "
        f"or set {settings.variable('kafka_bootstrap')}"
    )


def require_reachable(settings: Settings) -> None:
    """Fail fast, naming the fix, when no bootstrap server accepts a TCP connection."""
    for hostport in settings.kafka_bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except (OSError, ValueError):
            continue
    raise KafkaUnavailable(unreachable_message(settings))


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise): the CA file or the system's CAs,
    host name checked unless switched off, the client certificate when given (mutual TLS)."""
    if not sec.uses_tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=sec.ssl_cafile or None)
        ctx.check_hostname = sec.ssl_check_hostname
        if sec.ssl_certfile:
            ctx.load_cert_chain(
                sec.ssl_certfile, sec.ssl_keyfile or None, sec.ssl_key_password or None
            )
    except (ssl.SSLError, OSError) as exc:
        raise SystemExit(
            "palliwatch: the Kafka TLS files cannot be used "
            f"({KafkaSecurity.variable('ssl_cafile')}, _CERTFILE, _KEYFILE, _KEY_PASSWORD): {exc}"
        ) from exc
    return ctx


def auth_options(settings: Settings) -> dict[str, Any]:
    """Security options in the names kafka-python and aiokafka share."""
    sec = settings.kafka_security
    opts: dict[str, Any] = {"security_protocol": sec.protocol}
    ctx = ssl_context(sec)
    if ctx is not None:
        opts["ssl_context"] = ctx
    if sec.uses_sasl:
        opts["sasl_mechanism"] = sec.sasl_mechanism
        opts["sasl_plain_username"] = sec.sasl_username
        opts["sasl_plain_password"] = sec.sasl_password
    return opts


def faust_app_settings(settings: Settings) -> dict[str, Any]:
    """What every Faust app of ours is configured with: the worker's (streams/app.py) and the
    bench's bare ceiling (streams/tooling/bench_ceiling.py), so the ceiling measures the same
    Faust."""
    return dict(
        broker=settings.faust_broker,
        store="memory://",
        topic_partitions=settings.partitions,
        # Changelogs and Faust's own topics get the deployment's replication (contract and
        # internal topics get it from `topics create`); min.insync.replicas per table.
        topic_replication_factor=settings.kafka_replication_factor,
        broker_credentials=faust_credentials(settings),
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_acks=-1,
        # Batch sends: every survey fans out to a forward topic and a changelog record; with
        # Faust's default linger of 0 each record went out in its own request.
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,
        producer_max_request_size=INTERNAL_MESSAGE_BYTES,
    )


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the worker (None: PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    sec = settings.kafka_security
    ctx = ssl_context(sec)
    if sec.uses_sasl:
        # With a context Faust uses SASL_SSL, without one SASL_PLAINTEXT.
        return SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            ssl_context=ctx,
            mechanism=sec.sasl_mechanism,
        )
    if ctx is not None:
        return SSLCredentials(ctx)
    return None


def _bootstrap(settings: Settings) -> list[str]:
    return [h.strip() for h in settings.kafka_bootstrap.split(",")]


class _Failures(logging.Handler):
    """Collects what kafka-python logs while it bootstraps: on a refused login or a failed TLS
    handshake it retries until its bootstrap timeout and then raises a bare "Unable to
    bootstrap"; the reason is only in its log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_NET_LOGGERS = ("kafka.net.manager", "kafka.net.connection", "kafka.net.transport")


@contextlib.contextmanager
def _diagnosed(settings: Settings) -> Iterator[None]:
    """Kafka errors while a client connects become KafkaUnavailable with one explaining line."""
    handler = _Failures()
    loggers = [logging.getLogger(name) for name in _NET_LOGGERS]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
        lg.propagate = False  # the reason goes into our one line, not onto the terminal
    try:
        yield
    except (kerrors.KafkaError, OSError) as e:
        # Every reason it logged: a refused login alternates with "socket disconnected".
        raise KafkaUnavailable(explain(e, settings, detail=" ".join(handler.messages))) from e
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def admin(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    require_reachable(settings)
    with _diagnosed(settings):
        return KafkaAdminClient(
            bootstrap_servers=_bootstrap(settings),
            client_id="palliwatch-admin",
            request_timeout_ms=int(timeout_s * 1000),
            # A refused login is retried until this runs out: long enough for a broker that
            # is starting, short enough not to look like a hang.
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            **auth_options(settings),
        )


BOOTSTRAP_TIMEOUT_MS = 15_000


def probe(settings: Settings) -> None:
    """Connect and log in once (an admin client), so that a producer or consumer that would
    only fail at its first send or poll fails here, with the reason."""
    admin(settings).close()


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer with acks=all: a retried send is written once, and a write
    counts only when every in-sync replica has it."""
    probe(settings)
    options: dict[str, Any] = {
        "client_id": "palliwatch-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 10,
        "batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
        "retries": 10,
        **overrides,
    }
    with _diagnosed(settings):
        return KafkaProducer(
            bootstrap_servers=_bootstrap(settings), **options, **auth_options(settings)
        )


def consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    probe(settings)
    with _diagnosed(settings):
        return KafkaConsumer(
            *topics, bootstrap_servers=_bootstrap(settings), **options, **auth_options(settings)
        )


def check_group_access(settings: Settings, group: str) -> None:
    """The worker's consumer group may be used (Describe, implied by Read): without it the
    worker would start and then fail deep inside its consumer."""
    client = admin(settings)
    try:
        retry.broker_not_ready()(client.describe_groups, [group])
    except kerrors.KafkaError as e:
        raise KafkaUnavailable(explain(e, settings, group)) from e
    finally:
        client.close()


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """bootstrap_servers and security options for an aiokafka client."""
    return {"bootstrap_servers": _bootstrap(settings), **auth_options(settings)}


_ACL_HINT = (
    "grant it with kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal "
    "User:<name> --operation {operation} --{kind} {resource}"
)


def explain(exc: BaseException, settings: Settings, resource: str = "", detail: str = "") -> str:
    """One line for a Kafka failure, naming what to set or grant. ``detail``: what the client
    logged before it gave up (the reason a bootstrap failed)."""
    sec = settings.kafka_security
    where = f"Kafka at {settings.kafka_bootstrap}"
    who = sec.principal()
    text = f"{type(exc).__name__}: {exc} {detail}"
    v = sec.variable
    credentials = f"{v('sasl_username')}, {v('sasl_password')} (or _FILE), {v('sasl_mechanism')}"
    if isinstance(exc, kerrors.SaslAuthenticationFailedError) or "SaslAuthenticationFail" in text:
        return (
            f"{where} refused {who} ({sec.sasl_mechanism} authentication failed): check "
            f"{v('sasl_username')}, {v('sasl_password')} (or _FILE) and {v('sasl_mechanism')}"
        )
    denied = {
        kerrors.TopicAuthorizationFailedError: (
            "topic",
            "Read --operation Write --operation Describe",
        ),
        kerrors.GroupAuthorizationFailedError: ("group", "Read --operation Describe"),
    }
    for error, (kind, operations) in denied.items():
        if isinstance(exc, error):
            name = resource or (settings.app_id if kind == "group" else "<topic>")
            what = "consumer group" if kind == "group" else "topic"
            return (
                f"{where} does not let {who} use {what} {name} ({error.message}): "
                + _ACL_HINT.format(bootstrap=settings.kafka_bootstrap, operation=operations,
                                   kind=kind, resource=name)
            )  # fmt: skip
    if isinstance(exc, kerrors.ClusterAuthorizationFailedError):
        return (
            f"{where} does not let {who} create topics (CLUSTER_AUTHORIZATION_FAILED): grant "
            "it Create on the topics' prefix, or have an administrator run "
            "`palliwatch topics create`"
        )
    if isinstance(exc, kerrors.AuthorizationError):
        return f"{where} refused {who}: {type(exc).__name__}: grant the missing ACL"
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc, ssl.SSLCertVerificationError):
        reason = "its name does not match" if "match" in text else "not signed by a trusted CA"
        return (
            f"{where}: the broker's TLS certificate is not accepted ({reason}): set "
            f"{v('ssl_cafile')} to the CA that signed it, and use the host name the "
            f"certificate names in {settings.variable('kafka_bootstrap')}"
        )
    if "BAD_CERTIFICATE" in text or "CERTIFICATE_REQUIRED" in text:
        return (
            f"{where} requires a client certificate it trusts (mutual TLS): set "
            f"{v('ssl_certfile')} and {v('ssl_keyfile')}"
        )
    if isinstance(exc, kerrors.KafkaConnectionError | kerrors.KafkaTimeoutError | OSError):
        if sec.uses_sasl:
            # After a few refused logins the broker may close new connections before it says
            # why (seen in a loaded test run): the credentials are then as likely as the listener.
            return (
                f"{where} closed every {sec.protocol} login of {who} before it completed: check "
                f"{credentials}, and that {v('protocol')} matches the listener"
            )
        return (
            f"{where} accepts connections but did not answer a {sec.protocol} client: check "
            f"that {v('protocol')} matches the listener (and, for mutual TLS, "
            f"{v('ssl_certfile')}/_KEYFILE)"
        )
    return f"{where}: {type(exc).__name__}: {exc}"
