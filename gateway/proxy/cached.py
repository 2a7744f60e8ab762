"""The interface cache on the consumer's request path: between signing (step 4) and answering (step 8).

A handler hands over its own steps, in the order it would run them: `sign` and `log` (the
client's request signed and logged), `send` (to the provider's gateway, verified), `check`
(the answer checked against the request and logged: a :class:`Checked`) and `serve` (a
stored answer given to the client, marked and logged). Without a policy for the request they
simply run in that order. With one (gateway.cache.policy), :func:`answer` decides:

1. `refresh`/`replicate` and a copy younger than the TTL: the client's request is signed and
   logged, the copy is served (`hit`), and that signed request goes to the provider in the
   background to refresh the copy (one at a time per key).
2. The provider service's circuit is open: no call; the client's request is signed and logged
   and a copy within max age is served (`stale`), or the client gets the fault that opened the
   circuit.
3. Otherwise the call goes out (retried with backoff if the policy says the call is
   idempotent). An answer that verified and was logged is kept; a failure the policy names
   serves a copy within max age (`stale`); beyond it the client gets the failure's fault.

Whenever a copy is served the client's request and the answer given are both in the message
log before the client has the answer; when both are still to be logged they go to the log's
writer together (:meth:`Steps.log_and_serve`). The copy is served from the node's memory of
decoded answers while the database says it is current (gateway.cache.copies).

Nothing is served unless this gateway still registers the client (it authenticated), the
global configuration still knows client and provider, and the provider last answered this
client for this service (read with the entry, `CacheStore.lookup`): a provider's
AccessDenied forgets the client and purges its entries, so revoking access revokes the cache.

The provider side (:func:`backend_answer`, policies of side `provider`) is the same idea one
hop further: after the access check, a backend that cannot answer is replaced by its last good
answer within max age, put under this request's header and hash, marked, and signed afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from gateway import faults
from gateway.cache.copies import ServedCopy, stored_message
from gateway.cache.key import CacheKey, rest_identifiers, rest_key, soap_identifiers, soap_key
from gateway.cache.marking import CacheMark, CacheStatus, marked_fields
from gateway.cache.policy import (
    CIRCUIT_OPEN,
    DEFAULT_FAULT_CODES,
    HTTP_5XX,
    CacheMode,
    CachePolicy,
    CacheSide,
    code_covers,
)
from gateway.cache.replication import REPLICATING
from gateway.cache.service import CacheService
from gateway.cache.store import CacheStoreError, NewEntry
from gateway.cache.tables import EntryKind, Outcome
from gateway.faults import XRoadFault
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.record import Direction as LogDirection
from gateway.monitoring.exchange import Step
from gateway.protocol import rest, soap
from gateway.protocol.transport import (
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    encode_transport,
)
from gateway.proxy.answers import Answer, rest_answer
from gateway.proxy.exchange import SignedAnswer
from gateway.proxy.records import ExchangeLog
from gateway.serverconf.model import ServerConfSnapshot

if TYPE_CHECKING:
    from gateway.proxy.watching import Watch

log = logging.getLogger(__name__)

Signed = TypeVar("Signed")


@dataclass(frozen=True)
class Checked:
    """An answer from the provider that the handler verified, checked and logged."""

    answer: Answer
    signed: SignedAnswer
    record: str | None
    """Its message-log record (`node:seq`), or None when the node logs nothing."""
    failure: str | None = None
    """The provider failure it stands for (a signed ServiceFailed fault, a REST 5xx), or None."""
    keep: bool = False
    """A good answer, to be kept for the next time the provider cannot answer."""
    fault: str | None = None
    """The gateway fault code it carries, if any (AccessDenied purges the client's entries)."""


@dataclass(frozen=True)
class CacheQuestion:
    """What the cache needs of one request: whose, to what, and (lazily) its key."""

    service: ServiceId
    client: ClientId
    message_id: str
    kind: EntryKind
    key_of: Callable[[bool], CacheKey]
    """The key, given whether the policy shares data between clients (built only when needed)."""
    identifiers: Callable[[], tuple[str, ...]]
    method: str | None = None
    path: str | None = None
    revalidate: bool = False
    """The client sent `Cache-Control: no-cache` (RFC 9111 §5.2.1.4): no hit, ask the provider
    (a failure still falls back). The replication scheduler fetches this way."""


def wants_revalidation(cache_control: str | None) -> bool:
    """Whether a request's Cache-Control field asks for the provider's answer (no-cache, max-age=0)."""
    if not cache_control:
        return False
    directives = {part.strip().lower() for part in cache_control.split(",")}
    return "no-cache" in directives or "max-age=0" in directives


@dataclass(frozen=True)
class Steps(Generic[Signed]):
    """A handler's own steps, which the cache runs in its order."""

    sign: Callable[[], Awaitable[Signed]]
    log: Callable[[Signed], Awaitable[None]]
    """Log the client's signed request (before it is sent, or with the answer served for it)."""
    send: Callable[[Signed], Awaitable[SignedAnswer]]
    check: Callable[[SignedAnswer], Awaitable[Checked]]
    serve: Callable[[ServedCopy, CacheMark], Awaitable[Answer]]
    """Give a stored answer, marked, logging it first."""
    max_bytes: int
    """The node's message size limit, which a stored answer is held to when it is decoded."""
    watch: Watch | None = None
    """The exchange's observation (proxy/watching.py): the cache's reads and writes are timed."""

    async def sign_and_log(self) -> Signed:
        signed = await self.sign()
        await self.log(signed)
        return signed

    async def log_and_serve(self, signed: Signed, copy: ServedCopy, mark: CacheMark) -> Answer:
        """The request's record and the answer's, written together: started in one turn of the
        event loop they reach the message log's writer in one batch, one commit to wait for
        rather than two. Both are durable before the client gets the answer."""
        _logged, answer = await asyncio.gather(self.log(signed), self.serve(copy, mark))
        return answer


def soap_question(message: soap.SoapMessage, *, revalidate: bool = False) -> CacheQuestion:
    return CacheQuestion(
        message.service,
        message.client,
        message.id,
        EntryKind.SOAP,
        key_of=lambda shared: soap_key(message, shared=shared),
        identifiers=lambda: tuple(soap_identifiers(message)),
        revalidate=revalidate,
    )


def rest_question(call: rest.RestRequest, *, revalidate: bool = False) -> CacheQuestion:
    return CacheQuestion(
        call.service,
        call.client,
        call.message_id,
        EntryKind.REST,
        key_of=lambda shared: rest_key(call, shared=shared),
        identifiers=lambda: tuple(rest_identifiers(call)),
        method=call.method,
        path=call.endpoint_path,
        revalidate=revalidate,
    )


def provider_failure(fault: XRoadFault | None, rest_status: int | None = None) -> str | None:
    """The provider failure a verified answer stands for: a gateway's ServiceFailed (or other
    provider-side) fault, or a REST service's own 5xx; None for an answer."""
    if fault is not None:
        return fault.code if is_provider_failure(fault.code) else None
    if rest_status is not None and rest_status >= 500:
        return HTTP_5XX
    return None


def is_provider_failure(code: str) -> bool:
    """Whether a fault means "the provider could not answer" (what the breaker counts)."""
    return code != CIRCUIT_OPEN and any(code_covers(listed, code) for listed in DEFAULT_FAULT_CODES)


async def answer(
    cache: CacheService | None,
    snapshot: ServerConfSnapshot,
    conf: GlobalConf,
    question: CacheQuestion | None,
    steps: Steps[Signed],
) -> Answer:
    """The client's answer: through the cache when a policy applies, straight otherwise."""
    policy = None
    if cache is not None and question is not None:
        policy = cache.policy_for(snapshot, question.service, question.client, question.method, question.path)
    if cache is None or policy is None or question is None:
        checked = await steps.check(await steps.send(await steps.sign_and_log()))
        return checked.answer
    return await _CachedExchange(cache, conf, policy, question, steps).run()


class _CachedExchange(Generic[Signed]):
    def __init__(
        self,
        cache: CacheService,
        conf: GlobalConf,
        policy: CachePolicy,
        question: CacheQuestion,
        steps: Steps[Signed],
    ) -> None:
        self.cache = cache
        self.store = cache.store
        self.conf = conf
        self.policy = policy
        self.question = question
        self.steps = steps
        self.key = question.key_of(policy.shared)
        self.service_text = question.service.to_text()

    async def run(self) -> Answer:
        replicating = REPLICATING.get()  # a replicated call reports what the provider did
        if self.policy.mode in (CacheMode.REFRESH, CacheMode.REPLICATE) and not self.question.revalidate:
            copy = await self._servable()
            if copy is not None and self.policy.is_fresh(copy.info.age_seconds(self.cache.clock())):
                signed = await self.steps.sign()
                answer = await self._serve(signed, copy, CacheStatus.HIT)
                self.cache.spawn(self._revalidate(signed), key=self.key.digest)
                return answer
            self.store.count(self.service_text, Outcome.MISS)
        breaker = self.cache.breaker(self.policy)
        if breaker is not None and not breaker.allow():
            return await self._circuit_open(breaker.last_fault or faults.NETWORK_ERROR)
        try:
            checked = await self._call()
        except XRoadFault as fault:
            return await self._fallback(fault.code, fault)
        if checked.failure is not None and self.policy.applies_to_fault(checked.failure) and not replicating:
            copy = await self._servable()
            if copy is not None:
                return await self._serve(None, copy, CacheStatus.STALE)
        return checked.answer

    async def _call(self) -> Checked:
        """Send (and resend, for idempotent calls), teaching the breaker each outcome."""
        breaker = self.cache.breaker(self.policy)
        delays = list(self.policy.retry.delays()) if self.policy.idempotent else []
        while True:
            try:
                checked = await self.steps.check(await self.steps.send(await self.steps.sign_and_log()))
            except XRoadFault as fault:
                failed = is_provider_failure(fault.code)
                self._learn(failed, fault.code)
                if not failed or not delays or (breaker is not None and not breaker.allow()):
                    raise
                await self._retry(delays.pop(0))
                continue
            failure = checked.failure
            self._learn(failure is not None, failure or "")
            if failure is not None and delays and (breaker is None or breaker.allow()):
                await self._retry(delays.pop(0))
                continue
            await self._after(checked)
            return checked

    async def _retry(self, delay: float) -> None:
        if self.steps.watch is not None:
            self.steps.watch.retried()
        await asyncio.sleep(delay)

    def _learn(self, failed: bool, code: str) -> None:
        breaker = self.cache.breaker(self.policy)
        if breaker is None:
            return
        if failed:
            breaker.record_failure(code)
        else:
            breaker.record_success()

    async def _after(self, checked: Checked) -> None:
        """Keep a good answer; forget a client the provider refused."""
        client, service = self.question.client, self.question.service
        if checked.fault == faults.ACCESS_DENIED:
            removed = await asyncio.to_thread(self.store.revoke_client, client, service)
            log.info("cache: %s refused %s; %d cached entries purged", service, client, removed)
            return
        if not checked.keep:
            return
        content_type, transport = encode_transport(checked.signed.message)
        entry = NewEntry(
            self.key,
            self.question.kind,
            self.question.message_id,
            checked.record,
            content_type,
            transport,
            signer_ocsp=checked.signed.signer_ocsp,
            identifiers=self.question.identifiers(),
        )
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._keep, entry, service, client)
        except Exception:  # the client has its answer; a cache that cannot keep it only misses later
            log.exception("cache: keeping the answer for %s failed", service)
        if self.steps.watch is not None:
            self.steps.watch.add(Step.CACHE, started)

    def _keep(self, entry: NewEntry, service: ServiceId, client: ClientId) -> None:
        self.store.confirm_client(service, client)
        self.store.put(self.policy, entry)

    async def _revalidate(self, signed: Signed) -> None:
        """The background half of a hit: the client's signed request goes out, the answer is kept."""
        try:
            checked = await self.steps.check(await self.steps.send(signed))
        except XRoadFault as fault:
            self._learn(is_provider_failure(fault.code), fault.code)
            log.info("cache: revalidating %s failed: %s", self.question.service, fault.code)
            return
        self._learn(checked.failure is not None, checked.failure or "")
        await self._after(checked)

    async def _circuit_open(self, code: str) -> Answer:
        """No call: the client's request is signed and logged, though not sent, and a copy
        within max age served with it; else the fault that opened the circuit.

        The signing and the cache's read overlap (one waits for the signer's batch, the other
        for the database), and the request's record goes to the log with the answer's.
        """
        if not self.policy.applies_to_fault(CIRCUIT_OPEN) or REPLICATING.get():
            await self.steps.sign_and_log()
            return self._miss(self._open_fault(code))
        signed, copy = await asyncio.gather(self.steps.sign(), self._servable())
        if copy is None:
            await self.steps.log(signed)
            return self._miss(self._open_fault(code))
        return await self._serve(signed, copy, CacheStatus.STALE)

    def _open_fault(self, code: str) -> XRoadFault:
        return XRoadFault(code, f"{self.question.service} is not called: its circuit is open after failures")

    async def _fallback(self, code: str, fault: XRoadFault) -> Answer:
        """A copy within max age if the policy covers this failure, else the failure's fault.

        The request was signed, logged and sent: only the answer given is logged here."""
        if self.policy.applies_to_fault(code) and not REPLICATING.get():
            copy = await self._servable()
            if copy is not None:
                return await self._serve(None, copy, CacheStatus.STALE)
        return self._miss(fault)

    def _miss(self, fault: XRoadFault) -> NoReturn:
        self.store.count(self.service_text, Outcome.MISS)
        raise fault

    async def _servable(self) -> ServedCopy | None:
        """The stored answer if it may be served to this client now (see the module's text)."""
        watch = self.steps.watch
        if watch is None:
            return await self._servable_copy()
        started = time.perf_counter()
        try:
            return await self._servable_copy()
        finally:
            watch.add(Step.CACHE, started)

    async def _servable_copy(self) -> ServedCopy | None:
        question = self.question
        if not (self.conf.is_known(question.client) and self.conf.is_known(question.service.provider)):
            return None
        copy = self.cache.copies.current(self.key.digest, question.client.to_text())
        if copy is None:
            try:
                copy = await asyncio.to_thread(self._read)
            # XRoadFault: a stored message that does not decode (as CacheStoreError, not served)
            except (CacheStoreError, XRoadFault) as error:
                log.warning("cache: entry for %s not served: %s", question.service, error)
                return None
        if copy is None or not self.policy.may_serve(copy.info.age_seconds(self.cache.clock())):
            return None
        return copy

    def _read(self) -> ServedCopy | None:
        """The entry's row (one read), its answer decoded or the copy in memory while its digest
        holds; None if there is none or the client is not confirmed."""
        key, client = self.key.digest, self.question.client
        copies = self.cache.copies
        held = copies.held(key)
        found = self.store.lookup(
            key, self.question.service, client, held_sha256=None if held is None else held.body_sha256
        )
        if found is None:
            copies.changed(key)
            return None
        if found.answer is None:
            assert held is not None  # the store leaves the body out only for the digest held
            copy = held.with_info(found.info)
        else:
            copy = ServedCopy.of(found.answer, found.body_sha256, self.steps.max_bytes)
        copies.keep(key, copy, client.to_text() if found.confirmed else None)
        return copy if found.confirmed else None

    async def _serve(self, signed: Signed | None, copy: ServedCopy, status: CacheStatus) -> Answer:
        """Serve `copy`; with the client's `signed` request when it is still to be logged."""
        mark = CacheMark.of(status, copy.info.original_message_id, copy.info.stored_at, self.cache.clock())
        self.store.count(self.service_text, Outcome.HIT if status is CacheStatus.HIT else Outcome.STALE)
        if signed is None:
            return await self.steps.serve(copy, mark)
        return await self.steps.log_and_serve(signed, copy, mark)


# --- a stored answer, given to the client ---------------------------------------------------------


async def _log_served(journal: ExchangeLog, copy: ServedCopy, mark: CacheMark) -> None:
    """The answer given, logged as the provider signed it, marked as served from the cache."""
    original = copy.info.log_record or f"message {copy.info.original_message_id}"
    await journal.signed(
        LogDirection.RESPONSE,
        copy.message,
        ocsp_response=copy.signer_ocsp,
        served_from_cache=(mark.status.value, original),
        prepared=copy.record_parts,
    )


async def serve_soap(journal: ExchangeLog, copy: ServedCopy, mark: CacheMark) -> Answer:
    body = copy.marked_soap(mark)  # before logging: a copy that cannot be marked is not logged as given
    await _log_served(journal, copy, mark)
    assert isinstance(copy.message.payload, SoapPayload)  # marked_soap refuses anything else
    content_type = copy.message.payload.content_type
    return Answer(200, (("Content-Type", content_type), *mark.http_fields()), body)


async def serve_rest(journal: ExchangeLog, copy: ServedCopy, mark: CacheMark) -> Answer:
    if not isinstance(copy.message.payload, RestResponsePayload):
        raise CacheStoreError(f"entry {copy.info.id} is not a REST answer")
    await _log_served(journal, copy, mark)
    answer = rest_answer(copy.message.payload)
    return Answer(answer.status, marked_fields(answer.headers, mark), answer.body)


# --- the provider side: its own backend's last good answer ----------------------------------------

Payload = TypeVar("Payload", SoapPayload, RestResponsePayload)


@dataclass
class BackendAnswer(Generic[Payload]):
    """The backend's answer (or the stored one) and what the provider path does once it is logged."""

    payload: Payload
    served_from_cache: tuple[str, str] | None = None
    """(`stale`, the original record) when the answer is the stored one, signed afresh."""
    keep: Callable[[TransportMessage, str | None], Awaitable[None]] | None = None
    """Keeps the signed answer with its record, once logged (a good answer under a policy)."""


async def backend_answer(
    cache: CacheService | None,
    snapshot: ServerConfSnapshot,
    question: CacheQuestion | None,
    call: Callable[[], Awaitable[Payload]],
    *,
    failure: Callable[[Payload], str | None],
    keepable: Callable[[Payload], bool],
    reuse: Callable[[TransportMessage, CacheMark], Payload],
    watch: Watch | None = None,
) -> BackendAnswer[Payload]:
    """The provider side (policy side `provider`): the backend's answer, or when the backend
    cannot answer, its last good answer within max age, to be signed afresh and marked
    (`watch` times the cache's reads and writes).

    Access rights were checked before the backend is called (`call` raises AccessDenied
    before it calls anything): a refused client never reaches the stored answer.
    """
    policy = None
    if cache is not None and question is not None:
        policy = cache.policy_for(
            snapshot,
            question.service,
            question.client,
            question.method,
            question.path,
            side=CacheSide.PROVIDER,
        )
    if cache is None or policy is None or question is None:
        return BackendAnswer(await call())
    key = question.key_of(policy.shared)
    service_text = question.service.to_text()
    breaker = cache.breaker(policy)

    async def stored_or(
        code: str, fault: XRoadFault | None, payload: Payload | None
    ) -> BackendAnswer[Payload]:
        if policy.applies_to_fault(code):
            started = time.perf_counter()
            try:
                entry = await asyncio.to_thread(cache.store.get, key.digest)
            except CacheStoreError as error:
                log.warning("cache: entry for %s not served: %s", question.service, error)
                entry = None
            if watch is not None:
                watch.add(Step.CACHE, started)
            if entry is not None and policy.may_serve(entry.info.age_seconds(cache.clock())):
                mark = CacheMark.of(
                    CacheStatus.STALE, entry.info.original_message_id, entry.info.stored_at, cache.clock()
                )
                cache.store.count(service_text, Outcome.STALE)
                original = entry.info.log_record or f"message {entry.info.original_message_id}"
                message = stored_message(entry, max_bytes=len(entry.transport) + 1)
                return BackendAnswer(
                    reuse(message, mark), served_from_cache=(CacheStatus.STALE.value, original)
                )
        cache.store.count(service_text, Outcome.MISS)
        if fault is not None:
            raise fault
        assert payload is not None
        return BackendAnswer(payload)

    if breaker is not None and not breaker.allow():
        code = breaker.last_fault or faults.SERVICE_FAILED_NETWORK_ERROR
        return await stored_or(
            CIRCUIT_OPEN, XRoadFault(code, f"{question.service} is not called: circuit open"), None
        )
    try:
        payload = await call()
    except XRoadFault as fault:
        failed = is_provider_failure(fault.code)
        if breaker is not None:
            breaker.record_failure(fault.code) if failed else breaker.record_success()
        if failed:
            return await stored_or(fault.code, fault, None)
        raise
    failed_as = failure(payload)
    if breaker is not None:
        breaker.record_failure(failed_as) if failed_as is not None else breaker.record_success()
    if failed_as is not None:
        return await stored_or(failed_as, None, payload)
    if not keepable(payload):
        return BackendAnswer(payload)

    async def keep(message: TransportMessage, record: str | None) -> None:
        content_type, transport = encode_transport(message)
        entry = NewEntry(
            key,
            question.kind,
            question.message_id,
            record,
            content_type,
            transport,
            identifiers=question.identifiers(),
        )
        started = time.perf_counter()
        try:
            await asyncio.to_thread(cache.store.put, policy, entry)
        except Exception:  # the client has its answer; the cache only misses later
            log.exception("cache: keeping the backend's answer for %s failed", question.service)
        if watch is not None:
            watch.add(Step.CACHE, started)

    return BackendAnswer(payload, keep=keep)
