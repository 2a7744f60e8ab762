"""Declarative configuration (issue 12 item 4): the whole registration set exported as one file and applied.

`GET /config` answers the file (`xgate config export > gateway.yaml`); `POST /config/apply`
takes it back (`xgate config apply gateway.yaml [--dry-run]`): read through
:class:`ConfigDocument` (the published JSON Schema is this model's, `GET /config/schema` and
docs/config-schema.json), descriptions fetched and parsed, every access right, local group and
cache policy checked against what the file declares, and only then the planned steps
(`gateway.serverconf.declared`) run through the repository's own change methods in one
transaction (`ServerConfRepository.batch`): all of them or none. The call is audited like every
change, with the steps as its details; a second apply of the same file plans nothing.

What the file holds: subsystems (auth mode, pinned client certificates, message-log policy),
their services with backends and descriptions, access rights, local groups, and the cache
policies. What it never holds: API keys, private keys or passphrases (the gateway's keys stay
in files and in `xgate admin keys`; a backend client key appears as its path only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import Field

from gateway.admin.access import SubjectType, access_subject, read_subject, refuse_unknown_subject
from gateway.admin.cache import PolicyDoc, PolicyName, policy_from_body, validated_policy
from gateway.admin.context import TABLE, AdminContext, snapshot
from gateway.admin.roles import Permission as P
from gateway.admin.services import description_document, service_of_provider
from gateway.cache.policies import from_record
from gateway.cache.policy import CachePolicy, PolicyError
from gateway.crypto.certs import CertificateError, load_certificates
from gateway.ids import ClientId, IdentifierError, LocalGroupId, ServiceId
from gateway.serverconf.access import MAX_PATH_PATTERN_LENGTH, AccessRight, Endpoint
from gateway.serverconf.declared import DeclaredConfig, DeclaredPolicy, Step, plan
from gateway.serverconf.model import (
    DEFAULT_CLIENT_AUTH_MODE,
    DEFAULT_SERVICE_TIMEOUT_SECONDS,
    BackendTls,
    ClientAuthMode,
    LocalGroup,
    PinnedCertificate,
    ServerConfSnapshot,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
    SubsystemConf,
)
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import ConfigurationChanged, ServerConfError, ServerConfRepository
from gateway.serverconf.wsdl import MAX_DESCRIPTION_BYTES, DescriptionError, parse_wsdl
from gateway.webapi import ApiError, Call, Outcome, invalid
from gateway.webapi.types import (
    MAX_FILE_PATH_LENGTH,
    MAX_IDENTIFIER_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_URL_LENGTH,
    Answer,
    Body,
    ClientIdField,
    Code,
    Description,
    Params,
)

FORMAT: Final = "xgate-config/1"
"""The file's format and version: a later format gets a new number, and this one is refused by
name rather than half understood."""

MAX_SUBSYSTEMS: Final = 10_000
MAX_SERVICES: Final = 10_000
MAX_RIGHTS: Final = 100_000
"""Bounds on one file's lists: far beyond any one gateway's registrations, small enough that a
mistaken file is refused before it is planned."""


# --- the file, as a model (its JSON Schema is the published one) -----------------------------


class DescriptionDoc(Body):
    """Where a service's WSDL or OpenAPI document came from, and the document unless it can be fetched."""

    source: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="The URL (fetched at apply when the document is left out) or `upload`, or a file name.",
    )
    document: str | None = Field(
        None,
        max_length=MAX_DESCRIPTION_BYTES,
        description="The document itself; export writes it when the source is not an http(s) URL.",
    )


class EndpointDoc(Body):
    method: str = Field(pattern=r"^([!#$%&'+\-.^_`|~0-9A-Za-z]{1,32}|\*)$")
    path: str = Field(pattern="^/", max_length=MAX_PATH_PATTERN_LENGTH)


class ServiceDoc(Body):
    code: Code
    version: Code | None = None
    kind: ServiceKind
    backend_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    timeout_seconds: float = Field(DEFAULT_SERVICE_TIMEOUT_SECONDS, gt=0, allow_inf_nan=False)
    tls_verify: bool = True
    tls_ca_pem: str | None = Field(None, description="CA certificates (PEM) trusted for the backend.")
    tls_client_cert_path: str | None = Field(None, max_length=MAX_FILE_PATH_LENGTH)
    tls_client_key_path: str | None = Field(
        None, max_length=MAX_FILE_PATH_LENGTH, description="A path on the gateway's host; never the key."
    )
    enabled: bool = True
    disabled_notice: str | None = Field(None, max_length=MAX_TEXT_LENGTH)
    description: DescriptionDoc | None = None
    endpoints: list[EndpointDoc] = Field(default_factory=list, description="REST services only.")


class AccessRightDoc(Body):
    service_code: Code
    subject: str = Field(
        min_length=1,
        max_length=MAX_IDENTIFIER_LENGTH,
        description="GROUP (local group), INSTANCE/GROUP (global group), INSTANCE/CLASS/MEMBER or "
        "INSTANCE/CLASS/MEMBER/SUBSYSTEM; or TYPE:TEXT as X-Road writes it.",
    )
    subject_type: SubjectType | None = Field(None, description="Read from the subject's form when left out.")
    method: str | None = Field(None, pattern=r"^([!#$%&'+\-.^_`|~0-9A-Za-z]{1,32}|\*)$")
    path: str | None = Field(None, pattern="^/", max_length=MAX_PATH_PATTERN_LENGTH)
    force: bool = Field(False, description="Grant even to a subject the global configuration does not list.")


class LocalGroupDoc(Body):
    code: Code
    description: Description = ""
    members: list[ClientIdField] = Field(default_factory=list)


class SubsystemDoc(Body):
    id: ClientIdField
    auth_mode: ClientAuthMode = DEFAULT_CLIENT_AUTH_MODE
    log_bodies: bool = Field(True, description="Message log: keep bodies (False: headers and digests only).")
    timestamp_immediately: bool = Field(False, description="Message log: stamp each record before answering.")
    certificates: list[str] = Field(default_factory=list, description="Pinned client TLS certificates (PEM).")
    services: list[ServiceDoc] = Field(default_factory=list, max_length=MAX_SERVICES)
    access_rights: list[AccessRightDoc] = Field(default_factory=list, max_length=MAX_RIGHTS)
    local_groups: list[LocalGroupDoc] = Field(default_factory=list)


class ConfigDocument(Body):
    """A gateway's whole registration set: `xgate config export` writes it, `apply` makes it so."""

    format: Literal["xgate-config/1"] = Field(description="The file format and its version.")
    subsystems: list[SubsystemDoc] = Field(default_factory=list, max_length=MAX_SUBSYSTEMS)
    cache_policies: dict[PolicyName, PolicyDoc] = Field(default_factory=dict, max_length=1000)


def config_schema() -> dict[str, Any]:
    """The published JSON Schema of the file (docs/config-schema.json is this, written out)."""
    schema = ConfigDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://xgate.example/schemas/config-schema.json"
    return schema


# --- export -----------------------------------------------------------------------------------


def _fetchable(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def _service_doc(conf: ServiceConf) -> dict[str, Any]:
    document: dict[str, Any] = {
        "code": conf.service.service_code,
        "version": conf.service.service_version,
        "kind": conf.kind.value,
        "backend_url": conf.backend_url,
        "timeout_seconds": conf.timeout_seconds,
        "tls_verify": conf.tls.verify,
        "tls_ca_pem": conf.tls.ca_bundle_pem,
        "tls_client_cert_path": conf.tls.client_cert_path,
        "tls_client_key_path": conf.tls.client_key_path,
        "enabled": conf.enabled,
        "disabled_notice": conf.disabled_notice,
    }
    if conf.description is not None:
        source = conf.description.source
        document["description"] = {"source": source}
        if not _fetchable(source):
            document["description"]["document"] = conf.description.document
    if conf.endpoints:
        document["endpoints"] = [{"method": e.method, "path": e.path_pattern} for e in conf.endpoints]
    return {key: value for key, value in document.items() if value is not None}


def _right_doc(right: AccessRight) -> dict[str, Any]:
    document: dict[str, Any] = {
        "service_code": right.service_code,
        "subject": right.subject.to_text(),
        "subject_type": right.subject.object_type.value.lower(),
    }
    if right.endpoint is not None:
        document.update(method=right.endpoint.method, path=right.endpoint.path_pattern)
    return document


def _policy_doc(policy: CachePolicy) -> dict[str, Any]:
    document = policy.to_document()
    document.pop("name", None)
    document["service"] = policy.service.to_text()
    return document


def export_document(conf: ServerConfSnapshot) -> dict[str, Any]:
    """The file of everything `conf` registers, in identifier order (so files diff well)."""
    subsystems = []
    for client in sorted(conf.subsystems):
        subsystem = conf.subsystems[client]
        entry: dict[str, Any] = {
            "id": client.to_text(),
            "auth_mode": subsystem.auth_mode.value,
            "log_bodies": subsystem.log_bodies,
            "timestamp_immediately": subsystem.timestamp_immediately,
        }
        if subsystem.certificates:
            entry["certificates"] = [
                pinned.pem for pinned in sorted(subsystem.certificates, key=lambda c: c.sha256)
            ]
        if services := conf.services_of(client):
            entry["services"] = [_service_doc(service) for service in services]
        if rights := conf.rights(client):
            entry["access_rights"] = [_right_doc(right) for right in sorted(rights, key=_right_order)]
        if groups := conf.local_groups_of(client):
            entry["local_groups"] = [
                {
                    "code": group.group.group_code,
                    "description": group.description,
                    "members": [member.to_text() for member in sorted(group.members)],
                }
                for group in groups
            ]
        subsystems.append(entry)
    policies = {record.name: _policy_doc(from_record(record)) for record in _stored_policies(conf)}
    return {"format": FORMAT, "subsystems": subsystems, "cache_policies": dict(sorted(policies.items()))}


def _right_order(right: AccessRight) -> tuple[str, str, str, str]:
    endpoint = right.endpoint
    return (
        right.service_code,
        right.subject.to_text(),
        endpoint.method if endpoint else "",
        endpoint.path_pattern if endpoint else "",
    )


def _stored_policies(conf: ServerConfSnapshot) -> list[Any]:
    return [conf.cache_policies[name] for name in sorted(conf.cache_policies)]


# --- reading a file into values ----------------------------------------------------------------


class _Problems:
    """Every problem of a file, collected so one apply names them all."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, where: str, problem: object) -> None:
        self.found.append(f"{where}: {problem}")

    def raise_any(self) -> None:
        if self.found:
            raise invalid("the file cannot be applied: " + "; ".join(self.found))


def _pinned(pem: str) -> PinnedCertificate:
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise ServerConfError(f"not a PEM certificate: {exc}") from None
    normal = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return PinnedCertificate(certificate.fingerprint(hashes.SHA256()).hex(), normal)


def _right(doc: AccessRightDoc) -> AccessRight:
    if (doc.method is None) != (doc.path is None):
        raise ServerConfError("give both method and path for an endpoint, or neither")
    if doc.subject_type is None:
        kind, text = read_subject(doc.subject)
    else:
        kind, text = doc.subject_type, doc.subject
    endpoint = None if doc.method is None or doc.path is None else Endpoint(doc.method, doc.path)
    return AccessRight(access_subject(text, kind.value), doc.service_code, endpoint)


async def _description(
    doc: ServiceDoc, service: ServiceId, stored: ServiceConf | None, fetched: dict[str, bytes]
) -> ServiceDescription | None:
    """The service's description: as stored when the file names the same source without a
    document, else the file's document or the URL's, parsed to check it offers the service."""
    given = doc.description
    if given is None:
        return None
    kept = stored.description if stored is not None else None
    if given.document is None and kept is not None and kept.source == given.source:
        return kept
    if given.document is not None:
        data = given.document.encode()
    elif _fetchable(given.source):
        if given.source not in fetched:
            fetched[given.source] = (await description_document(None, given.source))[0]
        data = fetched[given.source]
    else:
        raise ServerConfError(f"description {given.source!r} cannot be fetched: give its document")
    if stored is None or stored.description is None or stored.description.document.encode() != data:
        await asyncio.to_thread(_check_description, doc, service, data)
    return ServiceDescription(data.decode("utf-8"), given.source)


def _check_description(doc: ServiceDoc, service: ServiceId, data: bytes) -> None:
    """A new description must parse, and a WSDL must offer the service (a typo would register
    a service its own description does not have)."""
    if doc.kind is ServiceKind.REST:
        parse_openapi(data)
        return
    offered = {(op.service_code, op.service_version) for op in parse_wsdl(data).operations}
    if (service.service_code, service.service_version) not in offered:
        raise DescriptionError(
            f"the WSDL does not offer {service.service_code} version {service.service_version}"
        )


async def read_document(
    ctx: AdminContext, document: ConfigDocument, current: ServerConfSnapshot
) -> DeclaredConfig:
    """The file as values: descriptions resolved and parsed, every problem named at once."""
    problems = _Problems()
    subsystems: dict[ClientId, SubsystemConf] = {}
    services: dict[ServiceId, ServiceConf] = {}
    rights: dict[ClientId, frozenset[AccessRight]] = {}
    groups: dict[ClientId, dict[LocalGroupId, LocalGroup]] = {}
    fetched: dict[str, bytes] = {}
    for entry in document.subsystems:
        client = entry.id
        where = client.to_text()
        if client in subsystems:
            problems.add(where, "declared twice")
            continue
        try:
            certificates = tuple(_pinned(pem) for pem in entry.certificates)
        except ServerConfError as exc:
            problems.add(where, exc)
            certificates = ()
        subsystems[client] = SubsystemConf(
            client, entry.auth_mode, certificates, entry.log_bodies, entry.timestamp_immediately
        )
        for doc in entry.services:
            service = service_of_provider(client, doc.code, doc.version)
            try:
                if doc.tls_ca_pem:
                    load_certificates(doc.tls_ca_pem.encode())
                description = await _description(doc, service, current.service(service), fetched)
                services[service] = ServiceConf(
                    service=service,
                    kind=doc.kind,
                    backend_url=doc.backend_url,
                    timeout_seconds=doc.timeout_seconds,
                    tls=BackendTls(
                        doc.tls_verify,
                        doc.tls_ca_pem or None,
                        doc.tls_client_cert_path,
                        doc.tls_client_key_path,
                    ),
                    enabled=doc.enabled,
                    disabled_notice=None if doc.enabled else doc.disabled_notice,
                    description=description,
                    endpoints=tuple(Endpoint(e.method, e.path) for e in doc.endpoints),
                )
            except (ValueError, ServerConfError, DescriptionError, IdentifierError, CertificateError) as exc:
                problems.add(service.to_text(), exc)
            except ApiError as exc:  # a description that could not be fetched
                problems.add(service.to_text(), exc.message)
        granted: set[AccessRight] = set()
        for right_doc in entry.access_rights:
            try:
                right = _right(right_doc)
                if right_doc.force or right in set(current.rights(client)):
                    granted.add(right)
                    continue
                refuse_unknown_subject(ctx, right.subject)
                granted.add(right)
            except (ValueError, ServerConfError, IdentifierError) as exc:
                problems.add(f"{where} access right {right_doc.subject} → {right_doc.service_code}", exc)
            except ApiError as exc:
                problems.add(
                    f"{where} access right {right_doc.subject} → {right_doc.service_code}", exc.message
                )
        rights[client] = frozenset(granted)
        owned: dict[LocalGroupId, LocalGroup] = {}
        for group_doc in entry.local_groups:
            code = LocalGroupId(group_doc.code)
            if code in owned:
                problems.add(f"{where} local group {code}", "declared twice")
            owned[code] = LocalGroup(client, code, group_doc.description, frozenset(group_doc.members))
        groups[client] = owned
    declared = DeclaredConfig(subsystems, services, rights, groups)
    for problem in declared.problems():
        problems.add("file", problem)
    policies = _read_policies(ctx, document.cache_policies, declared.snapshot(), problems)
    problems.raise_any()
    return DeclaredConfig(subsystems, services, rights, groups, policies)


def _read_policies(
    ctx: AdminContext,
    documents: Mapping[str, PolicyDoc],
    will_be: ServerConfSnapshot,
    problems: _Problems,
) -> dict[str, DeclaredPolicy]:
    """The cache policies, each validated against the registrations the file declares."""
    found: dict[str, DeclaredPolicy] = {}
    for name, doc in documents.items():
        try:
            policy = validated_policy(ctx, will_be, policy_from_body(name, doc.model_dump(mode="json")))
        except PolicyError as error:
            for problem in error.problems:
                problems.add(f"cache policy {name}", problem)
            continue
        except ApiError as exc:
            problems.add(f"cache policy {name}", exc.message)
            continue
        found[name] = DeclaredPolicy(policy.service, policy.to_document())
    return found


def stored_policy_documents(conf: ServerConfSnapshot) -> dict[str, dict[str, Any]]:
    """The stored policies' documents, normalised as declared ones are (read and written again)."""
    return {record.name: from_record(record).to_document() for record in _stored_policies(conf)}


def run_steps(repository: ServerConfRepository, steps: Sequence[Step], planned_on: int | None = None) -> None:
    """Every step in one transaction; a refused step names itself and leaves nothing changed.

    With `planned_on` (the version the steps were planned against), a configuration someone
    changed in between is refused (409) rather than changed by a plan made for another state.
    """
    with repository.batch() as version:
        if planned_on is not None and version != planned_on + 1:
            raise ConfigurationChanged(
                f"the configuration changed (version {planned_on} → {version - 1}) while the file was "
                "checked: apply it again"
            )
        for step in steps:
            try:
                getattr(repository, step.method)(*step.args, **step.kwargs)
            except ServerConfError as exc:
                raise type(exc)(f"{step.action} {step.target}: {exc}") from exc


# --- the operations ----------------------------------------------------------------------------


class ApplyParams(Params):
    dry_run: bool = Field(False, description="Plan and show the changes, change nothing.")


class ChangeView(Answer):
    change: str = Field(description="`+` added, `-` removed, `~` changed.")
    action: str
    target: str
    detail: str


class ApplyReport(Answer):
    dry_run: bool
    applied: bool = Field(description="Whether the changes were made (false for a dry run or no changes).")
    changes: list[ChangeView]


class ConfigFile(Answer):
    """The file (see GET /config/schema)."""

    format: str
    subsystems: list[dict[str, Any]]
    cache_policies: dict[str, dict[str, Any]]


@TABLE.read("/config", "config.export", P.READ_CONFIGURATION, ConfigFile)
async def export_config(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """Export every registration as one declarative file (no secrets: keys stay out)."""
    return Outcome(export_document(await snapshot(ctx)))


@TABLE.read("/config/schema", "config.schema", P.READ_CONFIGURATION, dict[str, Any])
async def read_schema(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """The JSON Schema of the declarative file."""
    return Outcome(config_schema())


@TABLE.change("POST", "/config/apply", "config.apply", P.APPLY_CONFIGURATION, ApplyReport)
async def apply_config(ctx: AdminContext, call: Call[ApplyParams, ConfigDocument]) -> Outcome:
    """Make the registrations exactly those of the file: validated whole, applied all or nothing."""
    current = await snapshot(ctx)
    declared = await read_document(ctx, call.body, current)
    steps = plan(current, declared, stored_policy_documents(current))
    dry_run = call.params.dry_run
    if steps and not dry_run:
        await asyncio.to_thread(run_steps, ctx.repository, steps, current.version)
    changes = [step.describe() for step in steps]
    body = {"dry_run": dry_run, "applied": bool(steps) and not dry_run, "changes": changes}
    return Outcome(body, 200, "configuration", body)


__all__ = [
    "FORMAT",
    "ConfigDocument",
    "config_schema",
    "export_document",
    "read_document",
]
