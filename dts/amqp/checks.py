"""Broker checks shared by the CLIs: is it reachable, which queues have consumers, how deep are they.

check_broker(app, timeout=5)             # raises CliError(exit 3) with a one-line fix; exit 2 when a queue
                                         # was declared without its dead-letter arguments (make migrate-queues)
queue_stats(app, ["queue_a"], deadline)  # {"queue_a": QueueStats("queue_a", ready=0, consumers=1)}
require_consumers(app, settings, deadline)  # CliError(exit 4) naming the first queue nobody consumes
with reaching(app): ...                  # a broker away or silent in the block: CliError(exit 3) with the fix

Every call here is on a dts.amqp.deadline session: a broker that stops answering ends it by its deadline.
"""

from __future__ import annotations

import ssl
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from amqp.exceptions import AccessRefused, NotFound, PreconditionFailed
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError

from dts.amqp.deadline import BrokerBlocked, Deadline, bounded, close_quietly, session
from dts.app.conf import dead_letter_queue_name, queue_type_of
from dts.config import Settings, broker_urls
from dts.config.schema import URL_SEPARATOR
from dts.errors import CliError, ExitCode

START_HINT = "start RabbitMQ with `make broker` (or set BROKER_URL to a running broker)"


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # messages waiting to be delivered
    consumers: int  # consumers on the queue (a worker's whole execution pool counts once)
    exists: bool = True


@contextmanager
def own_channel(conn):
    """A channel of its own on `conn`, closed afterwards when the block went well. After an error it is
    left as it is: the broker closed it already (a 404 or 406), or the connection is broken or silent and
    a close would wait for an answer that does not come (the connection goes with it)."""
    channel = conn.channel()
    yield channel
    with suppress(Exception):
        channel.close()


def redact_url(url: str) -> str:
    """amqp://user:secret@host:5672/vh -> amqp://user:***@host:5672/vh (each of `;`-separated failover URLs)"""
    return ";".join(_redact_one(each) for each in broker_urls(url))


def _redact_one(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]  # host[:port] as written (parts.port raises on a bad port)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind a failed connection (kombu may wrap it), if one is."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def tls_failure(shown: str, exc: ssl.SSLError) -> str:
    """Why the TLS handshake with the broker failed, and the fix (broker.tls in the config)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if "hostname" in detail.lower():
            return (
                f"the broker's TLS certificate at {shown} does not carry the name the client checks ({detail}): "
                "set broker.tls.server_hostname to a name in the certificate, or connect by that name"
            )
        return (
            f"the broker's TLS certificate at {shown} was not verified ({detail}): broker.tls.ca_file must be "
            "the CA that signed it"
        )
    if isinstance(exc, ssl.SSLEOFError) or "CERTIFICATE_REQUIRED" in str(exc):
        return (
            f"the broker at {shown} ended the TLS handshake: it requires a client certificate (one signed by a "
            "CA it trusts): set broker.tls.cert_file and broker.tls.key_file"
        )
    reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
    return (
        f"TLS to the broker at {shown} failed ({reason}): check that the URL's port is the broker's TLS "
        "listener (amqps://, usually 5671) and the files in broker.tls"
    )


def broker_error(url: str, exc: BaseException) -> CliError:
    """The one-line exit-3 error for a failed connection, with the fix for its cause."""
    shown = redact_url(url)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."  # a message quotes an excerpt, never a whole value
    tls_exc = _ssl_error(exc)
    if isinstance(exc, BrokerBlocked):
        why = f"the broker at {shown} {str(exc).removeprefix('broker ')}: clear the alarm (free memory or disk there)"
    elif tls_exc is not None:
        why = tls_failure(shown, tls_exc)
    elif isinstance(exc, AccessRefused):
        why = (
            f"the broker at {shown} refused the login: check the user, password and vhost "
            "(run `make broker` to create the project's vhost and user)"
        )
    elif isinstance(exc, AMQPConnectionError):  # e.g. NotAllowed: no such vhost, or no permission on it
        why = (
            f"the broker at {shown} refused the connection ({type(exc).__name__}: {exc.reply_text or exc}): "
            "check that the vhost exists and the user has permissions on it (`make broker` sets both up)"
        )
    else:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        why = f"cannot reach the broker at {shown} ({reason}): {START_HINT}"
    return CliError(why, ExitCode.BROKER_UNREACHABLE)


LOST = (AMQPConnectionError, TimeoutError, OSError, OperationalError)  # a broker unreachable, gone or silent
MAJORITY_PROBE = 1.0  # seconds to ask each node of a cluster whether it answers, once something went wrong
NO_CONSUMER_CONFIRM = 0.2  # seconds a "no consumer" verdict waits for a broker that is shutting down to say so


@contextmanager
def reaching(app):
    """A broker unreachable, gone or silent within the block: CliError(exit 3) with the fix, the app's
    pooled connections dropped."""
    try:
        yield
    except (*LOST, AccessRefused, ValueError) as exc:  # ValueError: a URL kombu cannot parse
        forget_connections(app)
        answered = isinstance(exc, (ValueError, AccessRefused))  # a login refused: the broker is there
        why = None if answered else lost_majority(app, MAJORITY_PROBE)
        if why:  # a cluster's node answers but holds no leader: the cause, not the symptom (a silent declare)
            raise CliError(why, ExitCode.BROKER_UNREACHABLE) from None
        raise broker_error(app.conf.broker_url, exc) from None


def check_broker(app, timeout: float, check_queues: bool = True) -> None:
    """Reach the broker: CliError(exit 3) with a fix if that fails. Then (check_queues) declare the app's
    queues: CliError(exit 2) naming the migration when one exists without its dead-letter arguments,
    rather than an unexplained PRECONDITION_FAILED later. All of it within `timeout` (a broker that stops
    answering: exit 3 too)."""
    with reaching(app), session(app, Deadline.after(timeout)) as conn:
        if check_queues:
            require_current_queues(conn.connection, list(app.conf.task_queues or ()))


def forget_connections(app) -> None:
    """Drop the app's pooled connections without a close handshake (a broker that restarted or stopped
    answering would reset or hold it): the next call opens a new one."""
    pool, app._pool = app._pool, None
    if pool is not None:
        for conn in [*getattr(pool, "_dirty", ()), *list(getattr(pool._resource, "queue", ()))]:
            with suppress(Exception):
                conn.collect()


def declared_stats(conn, queues) -> tuple[dict[str, QueueStats], dict[str, str]]:
    """Declare each queue (declared Queue objects) on one channel and take its messages ready and
    consumers from the declare's answer: (stats, outdated). Declaring creates missing queues (as publishing
    would); a queue that exists with other arguments than declared (by a version without dead-lettering,
    or before broker.queue_type changed) is outdated, with RabbitMQ's reason: the first one stops the
    declares (PRECONDITION_FAILED closes the channel), and is the one reported."""
    stats: dict[str, QueueStats] = {}
    with own_channel(conn) as channel:
        for queue in queues:
            bound = queue.bind(channel)
            bound.on_declared = lambda name, ready, consumers: stats.update({name: QueueStats(name, ready, consumers)})
            try:
                bound.declare()
            except PreconditionFailed as exc:
                return stats, {queue.name: str(exc.reply_text or exc)}
    return stats, {}


def require_current_queues(conn, queues, outdated: dict[str, str] | None = None) -> None:
    """CliError (exit 2) naming the first queue declared otherwise than configured, and the command that
    fixes it (`outdated`: what declared_stats found, else asked here)."""
    outdated = declared_stats(conn, queues)[1] if outdated is None else outdated
    if not outdated:
        return
    name, why = next(iter(outdated.items()))
    if "x-queue-type" in why:
        wanted = next(queue_type_of(q) for q in queues if q.name == name)
        problem = (
            f"queue {name} (or {dead_letter_queue_name(name)}) exists as another queue type than the "
            f"configured broker.queue_type: {wanted} (RabbitMQ answers PRECONDITION_FAILED)"
        )
    else:
        problem = (
            f"queue {name} exists without its dead-letter arguments (declared by an older version; "
            "RabbitMQ answers PRECONDITION_FAILED)"
        )
    raise CliError(
        f"{problem}: run `make migrate-queues` (dts dlq migrate) once, with the workers stopped; it keeps "
        "the queued messages",
        ExitCode.USAGE,
    )


def stats_on(conn, queues: list[str] | tuple[str, ...]) -> dict[str, QueueStats]:
    """Passive-declare each queue on `conn` (the caller bounds it): messages ready and consumer count. A
    missing queue has no consumer."""
    stats = {}
    for queue in queues:
        with own_channel(conn) as channel:
            try:
                _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
                stats[queue] = QueueStats(queue, ready, consumers)
            except NotFound:
                stats[queue] = QueueStats(queue, 0, 0, exists=False)
    return stats


def queue_stats(app, queues: list[str] | tuple[str, ...], deadline: Deadline) -> dict[str, QueueStats]:
    """Each queue's messages ready and consumers; a broker that answers nothing by `deadline` raises
    BrokerSilent (a connection error, as the others in LOST)."""
    with session(app, deadline) as conn:
        return stats_on(conn, queues)


def require_consumers(
    app, settings: Settings, deadline: Deadline, check_queues: bool = False, conn=None, tasks=None
) -> dict[str, QueueStats]:
    """Every task's queue (of `tasks`, default every declared task) has a consumer, else CliError(exit 4)
    naming the queue and its pool. Found on a
    live connection (`conn`, a connected kombu Connection the caller keeps, else one of its own): a broker
    that is away, or shutting down (it drops the consumers before it closes the connections), is exit 3: a
    queue without consumers is asked about again on a new connection, which such a broker refuses.
    With check_queues, first what check_broker checks, on the same connection (a dispatch opens one
    connection for all of it: its reply queue's)."""
    queues = list(dict.fromkeys(settings.tasks[name].queue for name in (tasks or settings.tasks)))
    on = nullcontext(conn) if conn is not None else session(app, deadline)
    with reaching(app), on as conn, bounded(conn, deadline):
        stats: dict[str, QueueStats] = {}
        if check_queues:  # declared and counted on one channel: one round trip per queue fewer
            declared = list(app.conf.task_queues or ())
            stats, outdated = declared_stats(conn.connection, declared)
            require_current_queues(conn.connection, declared, outdated)
        stats = {q: stats[q] for q in queues if q in stats} | stats_on(conn, [q for q in queues if q not in stats])
        if any(stats[q].consumers == 0 for q in queues):
            with suppress(TimeoutError):  # nothing said: the connection is alive, and the verdict stands
                conn.drain_events(timeout=min(NO_CONSUMER_CONFIRM, max(0.001, deadline.remaining())))
    if any(stats[q].consumers == 0 for q in queues):
        # asked again on a new connection: a broker on its way down stops taking connections before it closes
        # the ones it has (its workers' first), so "no consumer" is said only by a broker still there
        with reaching(app), session(app, deadline) as again:
            stats |= stats_on(again, [q for q in queues if stats[q].consumers == 0])
    if any(stats[q].consumers == 0 for q in queues):
        why = lost_majority(app, max(0.1, min(settings.broker.connect_timeout, deadline.remaining())))
        if why:  # the workers are there, but a queue without a leader takes no consumer
            raise CliError(why, ExitCode.BROKER_UNREACHABLE)
    for queue in queues:
        if stats[queue].consumers == 0:
            pool = settings.pool_for_queue(queue).name
            raise CliError(
                f"{queue} has no consumer: no {pool} worker is running; start the workers with `make up` "
                f"(or `dts scale {pool} 1`)",
                ExitCode.NO_CONSUMER,
            )
    return stats


def node_answers(app, timeout: float) -> list[tuple[str, bool]]:
    """Each failover URL (a cluster's node) of the app's broker, redacted, and whether it accepts a
    connection: each tried in turn with its share of `timeout`."""
    from kombu import Connection

    urls = broker_urls(app.conf.broker_url)
    share = max(0.1, timeout / len(urls))
    answers = []
    for url in urls:
        conn = Connection(url, connect_timeout=share / 2, ssl=app.conf.broker_use_ssl or False, heartbeat=0)
        try:  # two quick attempts, no pause between them (kombu's connect() would sleep 2 s)
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=share)
            answers.append((redact_url(url), True))
        except (*LOST, ValueError):
            answers.append((redact_url(url), False))
        finally:
            close_quietly(conn, handshake=False)
    return answers


def address(url: str) -> str:
    """host:port of a URL, as written."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def lost_majority(app, timeout: float) -> str | None:
    """Why a cluster's quorum queues have stopped, when fewer than half of its nodes answer (None: they do,
    or the broker is one node). Asked only once something has gone wrong: it connects to every node."""
    if URL_SEPARATOR not in app.conf.broker_url:
        return None
    answers = node_answers(app, timeout)
    up, total = [url for url, ok in answers if ok], len(answers)
    if 2 * len(up) > total or not up:  # none answers: the broker is unreachable, as for one node
        return None
    hosts = ", ".join(address(url) for url in up) or "none"
    return (
        f"the broker cluster lost its majority: {len(up)} of {total} nodes answer ({hosts}); its quorum queues "
        "take no task and give no result until enough nodes are back (`make up BROKER=cluster` restarts them)"
    )


def warm_up(app) -> None:
    """The one-off, broker-free set-up of the first publish, ahead of the clock: the app's AMQP helpers
    and one task message built (imports, the message builder). Timing a dispatch then measures the dispatch."""
    app.amqp.as_task_v2("warm-up", "celery_app.task_a", args=(), kwargs={})
