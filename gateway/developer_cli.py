"""A developer's commands: `xgate services` (what my subsystem may call, and how) and `xgate call`.

Both talk to the developer's own gateway on its internal interface, exactly as their program will:
`listClients` for the federation's subsystems, X-Road's `allowedMethods` (REST r1 and SOAP) for
what this client may call at each, `getWsdl` for a SOAP service's description, and an ordinary
signed, logged exchange for a call. Nothing here needs an API key: the internal interface
authenticates the client as it would any agency system (plain HTTP for subsystems registered
so; HTTPS with `--cert`/`--key` otherwise).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import click
import requests
from lxml import etree

from gateway.apicli import CLIENT_ID, SERVICE_ID, format_table, terminal_width
from gateway.ids import ClientId, ObjectType, ServiceId
from gateway.protocol import soap
from gateway.protocol.schema import XROAD_NS
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

GATEWAY_URL_ENV: Final = "XGATE_GATEWAY_URL"
CLIENT_ENV: Final = "XGATE_CLIENT"
DEFAULT_GATEWAY_URL: Final = "http://127.0.0.1:8080"
"""The internal HTTP listener of config/gateway.example.toml."""
TIMEOUT_SECONDS: Final = 60.0
PARALLEL_QUESTIONS: Final = 8
SHOWN_HEADERS: Final = ("X-Road-Id", "X-Road-Request-Hash", "X-Road-Error", "XGate-Cache", "Age")
_X: Final = f"{{{XROAD_NS}}}"
_ID_NS: Final = "http://x-road.eu/xsd/identifiers"


class CallFailed(click.ClickException):
    """The gateway could not be reached, or answered something that is not X-Road."""


@dataclass(frozen=True)
class Caller:
    """Who calls (a subsystem registered at the gateway) and through which gateway."""

    gateway_url: str
    client: ClientId
    cert: tuple[str, str] | None = None
    ca: str | None = None

    def http(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(
                method,
                self.gateway_url.rstrip("/") + url,
                timeout=TIMEOUT_SECONDS,
                cert=self.cert,
                verify=self.ca if self.ca else True,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise CallFailed(
                f"cannot reach the gateway at {self.gateway_url} ({exc.__class__.__name__}); "
                f"give its internal interface with --gateway or ${GATEWAY_URL_ENV}"
            ) from exc

    def soap(
        self, service: ServiceId, body_element: etree._Element, user_id: str | None = None
    ) -> requests.Response:
        envelope = soap.build_request(
            self.client, service, body_element, message_id=str(uuid.uuid4()), user_id=user_id
        )
        return self.http("POST", "/", data=envelope, headers={"Content-Type": "text/xml; charset=UTF-8"})

    def rest_headers(self) -> dict[str, str]:
        return {"X-Road-Client": self.client.to_text()}


@dataclass
class CallableService:
    """One service this client may call, with what it takes to call it."""

    service: ServiceId
    kind: str  # "soap" or "rest"
    endpoints: list[tuple[str, str]] = field(default_factory=list)  # REST (method, path pattern)


def _client(text: str) -> ClientId:
    client: ClientId = CLIENT_ID.identifier(text)
    return client


def _service(text: str) -> ServiceId:
    service: ServiceId = SERVICE_ID.identifier(text)
    return service


def caller_options(function: Any) -> Any:
    for option in reversed(
        (
            click.option(
                "--gateway",
                "gateway_url",
                envvar=GATEWAY_URL_ENV,
                default=DEFAULT_GATEWAY_URL,
                show_default=True,
                help=f"Your gateway's internal interface (or ${GATEWAY_URL_ENV}).",
            ),
            click.option(
                "--client",
                envvar=CLIENT_ENV,
                required=True,
                type=CLIENT_ID,
                help=f"Your subsystem (or member), INSTANCE/CLASS/MEMBER/SUBSYSTEM (or ${CLIENT_ENV}).",
            ),
            click.option(
                "--cert", type=click.Path(exists=True, dir_okay=False), help="Client TLS certificate."
            ),
            click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Its private key."),
            click.option(
                "--ca",
                type=click.Path(exists=True, dir_okay=False),
                help="CA of the gateway's HTTPS certificate.",
            ),
        )
    ):
        function = option(function)
    return function


def _caller(gateway_url: str, client: str, cert: str | None, key: str | None, ca: str | None) -> Caller:
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    return Caller(gateway_url, _client(client), (cert, key) if cert and key else None, ca)


# --- what may I call ------------------------------------------------------------------------


def providers(caller: Caller) -> list[ClientId]:
    """Every subsystem of the federation (`listClients`): the candidates for providing services."""
    response = caller.http("GET", "/listClients", headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise CallFailed(f"listClients answered HTTP {response.status_code}: {response.text[:300]}")
    found = []
    for member in response.json().get("member", []):
        ident = member.get("id", {})
        if ident.get("subsystem_code"):
            found.append(
                ClientId(
                    ident["xroad_instance"],
                    ident["member_class"],
                    ident["member_code"],
                    ident["subsystem_code"],
                )
            )
    return found


def _rest_allowed(caller: Caller, provider: ClientId) -> list[CallableService]:
    path = (
        "/r1/" + "/".join(quote(part, safe="") for part in provider.to_text().split("/")) + "/allowedMethods"
    )
    response = caller.http("GET", path, headers={**caller.rest_headers(), "Accept": "application/json"})
    if response.status_code != 200:
        _refused(caller, response.headers.get("X-Road-Error"), response.text, provider)
        return []
    found = []
    for entry in response.json().get("service", []):
        service = ServiceId(
            entry["xroad_instance"],
            entry["member_class"],
            entry["member_code"],
            entry.get("subsystem_code"),
            entry["service_code"],
            None,
        )
        endpoints = [(e["method"], e["path"]) for e in entry.get("endpoint_list", [])]
        found.append(CallableService(service, "rest", endpoints))
    return found


def _refused(caller: Caller, code: str | None, text: str, provider: ClientId) -> None:
    """A refusal of the client itself by its own gateway (its client proxy names the client: not
    registered here, wrong connection) ends the command; a provider that cannot answer is only
    named, and the others are still listed."""
    if code is not None and "clientproxy" in code.lower() and caller.client.to_text() in text:
        raise CallFailed(f"your gateway refused the client: {code}: {text[:300]}")
    click.echo(f"warning: {provider.to_text()} could not be asked ({code or 'no X-Road answer'})", err=True)


def _soap_allowed(caller: Caller, provider: ClientId) -> list[CallableService]:
    meta = ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        "allowedMethods",
    )
    response = caller.soap(meta, etree.Element(f"{_X}allowedMethods"))
    if response.status_code != 200:
        return []
    try:
        message = soap.parse_response(response.content, response.headers.get("Content-Type"))
    except Exception:  # a fault, or a provider that does not answer metadata: nothing callable there
        return []
    return [
        CallableService(ServiceId.from_xml(element), "soap")
        for element in message.body.iter(f"{_X}service")
        if element.get(f"{{{_ID_NS}}}objectType", element.get("objectType")) != ObjectType.MEMBER.value
    ]


def allowed_services(caller: Caller, only: Sequence[ClientId] = ()) -> list[CallableService]:
    """Each provider is asked twice (REST and SOAP metadata), all at once: every question is a
    signed, logged exchange, and a federation has many providers."""
    asks = [
        (ask, provider) for provider in only or providers(caller) for ask in (_rest_allowed, _soap_allowed)
    ]
    with ThreadPoolExecutor(max_workers=PARALLEL_QUESTIONS) as pool:
        answers = list(pool.map(lambda pair: pair[0](caller, pair[1]), asks))
    return sorted((entry for found in answers for entry in found), key=lambda c: c.service.to_text())


def rest_url(caller: Caller, service: ServiceId, path: str = "") -> str:
    """The r1 URL of a REST service at the caller's gateway (the service path, then the endpoint's)."""
    parts = [quote(part, safe="") for part in service.to_text().split("/")]
    return caller.gateway_url.rstrip("/") + "/r1/" + "/".join(parts) + path


_WSDL: Final = "{http://schemas.xmlsoap.org/wsdl/}"


def request_element(wsdl: bytes, operation: str) -> tuple[str | None, str] | None:
    """The (namespace, name) of the body element an operation takes, read from its WSDL
    (document/literal: portType operation -> input message -> its part's element)."""
    try:
        root = parse_xml(wsdl)
    except (XmlSyntaxError, UnsafeXml):
        return None
    for op in root.iter(f"{_WSDL}operation"):
        message_ref = op.find(f"{_WSDL}input")
        if op.get("name") != operation or message_ref is None or message_ref.get("message") is None:
            continue
        message_name = str(message_ref.get("message")).rpartition(":")[2]
        for message in root.iter(f"{_WSDL}message"):
            part = message.find(f"{_WSDL}part")
            if message.get("name") == message_name and part is not None and part.get("element"):
                prefix, _, name = str(part.get("element")).rpartition(":")
                return part.nsmap.get(prefix or None), name
    return None


def how_to_call(caller: Caller, entry: CallableService) -> str:
    """The exact request for one service: a curl line for REST, a zeep snippet for SOAP."""
    if entry.kind == "rest":
        lines = [
            f"REST service {entry.service.to_text()}",
            f"  URL: {rest_url(caller, entry.service)}/<path>",
        ]
        lines.append(f"  header: X-Road-Client: {caller.client.to_text()}")
        for method, path in entry.endpoints or [("GET", "/")]:
            concrete = re.sub(r"\{[^}]*\}|\*", "VALUE", path)
            client_header = shlex.quote("X-Road-Client: " + caller.client.to_text())
            url = shlex.quote(rest_url(caller, entry.service, concrete))
            lines.append(f"  {method} {path}:\n    curl -X {method} -H {client_header} {url}")
        lines.append(
            f"  or: xgate call {entry.service.to_text()} {entry.endpoints[0][1] if entry.endpoints else '/'}"
        )
        return "\n".join(lines)
    service = entry.service
    headers = zeep_headers(caller.client, service, id="str(uuid.uuid4())", protocolVersion="4.0")
    shown = json.dumps(headers, indent=4).replace('"str(uuid.uuid4())"', "str(uuid.uuid4())")
    wsdl_file = f"{service.service_code}.wsdl"
    return "\n".join(
        [
            f"SOAP service {service.to_text()}",
            f"  endpoint: {caller.gateway_url} (POST, Content-Type: text/xml)",
            f"  its WSDL: xgate services {service.to_text()} --save-wsdl {wsdl_file}",
            "  with zeep:",
            "    import uuid, zeep",
            f"    client = zeep.Client({wsdl_file!r})",
            f"    service = client.create_service(next(iter(client.wsdl.bindings)), {caller.gateway_url!r})",
            "    headers = " + shown.replace("\n", "\n    "),
            f"    print(service.{service.service_code}(..., _soapheaders=headers))",
            f"  or: xgate call {service.to_text()} --soap {shlex.quote(_body_example(caller, service))}",
        ]
    )


def _body_example(caller: Caller, service: ServiceId) -> str:
    """The call's body element, named as the service's WSDL declares it (its content is yours)."""
    try:
        element = request_element(fetch_wsdl(caller, service), service.service_code)
    except CallFailed:
        element = None
    namespace, name = element if element is not None else (None, service.service_code)
    if namespace is None:
        return f"<{name}>...</{name}>"
    return f'<m:{name} xmlns:m="{namespace}">...</m:{name}>'


def zeep_headers(client: ClientId, service: ServiceId, **fields: object) -> dict[str, object]:
    """The X-Road header a zeep client passes as `_soapheaders` when the WSDL declares it: the
    client's and the service's identifiers, with `fields` (id, protocolVersion, userId, ...)."""
    return {
        "client": _header_dict(client, "SUBSYSTEM" if client.subsystem_code else "MEMBER"),
        "service": {**_header_dict(service.provider, "SERVICE"), "serviceCode": service.service_code}
        | ({"serviceVersion": service.service_version} if service.service_version else {}),
        **fields,
    }


def _header_dict(client: ClientId, object_type: str) -> dict[str, str]:
    fields = {
        "objectType": object_type,
        "xRoadInstance": client.instance,
        "memberClass": client.member_class,
        "memberCode": client.member_code,
    }
    if client.subsystem_code:
        fields["subsystemCode"] = client.subsystem_code
    return fields


def fetch_wsdl(caller: Caller, service: ServiceId) -> bytes:
    """The service's WSDL through the federation (X-Road's getWsdl: the WSDL is the attachment)."""
    provider = service.provider
    meta = ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, "getWsdl"
    )
    body = etree.Element(f"{_X}getWsdl")
    etree.SubElement(body, f"{_X}serviceCode").text = service.service_code
    if service.service_version:
        etree.SubElement(body, f"{_X}serviceVersion").text = service.service_version
    response = caller.soap(meta, body)
    content_type = response.headers.get("Content-Type", "")
    if response.status_code != 200 or not content_type.startswith("multipart/"):
        raise CallFailed(
            f"getWsdl for {service.to_text()} failed: HTTP {response.status_code} {response.text[:300]}"
        )
    message = soap.parse_response(response.content, content_type)
    if not message.attachments:
        raise CallFailed(f"getWsdl for {service.to_text()} answered without the WSDL")
    return message.attachments[0].data


@click.command("services")
@click.argument("service", required=False, type=SERVICE_ID)
@caller_options
@click.option(
    "--provider",
    "provider_texts",
    multiple=True,
    type=CLIENT_ID,
    help="Only this provider subsystem (repeatable).",
)
@click.option(
    "--save-wsdl", type=click.Path(dir_okay=False, writable=True), help="Save a SOAP service's WSDL."
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def services_command(
    service: str | None,
    gateway_url: str,
    client: str,
    cert: str | None,
    key: str | None,
    ca: str | None,
    provider_texts: tuple[str, ...],
    save_wsdl: str | None,
    as_json: bool,
) -> None:
    """The services your subsystem may call, or how to call one SERVICE.

    Asks your gateway as your program would (listClients, then allowedMethods at each provider),
    so what is listed is exactly what the providers' access rights allow you today.

    \b
      xgate services --client DEV/GOV/1001/benefits-office
      xgate services DEV/GOV/1002/population/getPerson/v1 --save-wsdl getPerson.wsdl
    """
    caller = _caller(gateway_url, client, cert, key, ca)
    wanted = _service(service) if service else None
    only = [wanted.provider] if wanted else [_client(text) for text in provider_texts]
    found = allowed_services(caller, only)
    if wanted is not None:
        match = [entry for entry in found if entry.service == wanted or _same_rest(entry.service, wanted)]
        if not match:
            raise click.ClickException(
                f"{wanted.to_text()} is not among the services {caller.client.to_text()} may call "
                f"(see `xgate services --client {caller.client.to_text()}`)"
            )
        found = match
        if save_wsdl:
            if match[0].kind != "soap":
                raise click.UsageError("--save-wsdl is for SOAP services; a REST service has getOpenAPI")
            with open(save_wsdl, "wb") as out:
                out.write(fetch_wsdl(caller, match[0].service))
            click.echo(f"WSDL of {match[0].service.to_text()} saved to {save_wsdl}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "service": entry.service.to_text(),
                        "kind": entry.kind,
                        "endpoints": [{"method": m, "path": p} for m, p in entry.endpoints],
                        "url": rest_url(caller, entry.service)
                        if entry.kind == "rest"
                        else caller.gateway_url,
                    }
                    for entry in found
                ],
                indent=2,
            )
        )
        return
    if wanted is not None:
        click.echo(how_to_call(caller, found[0]))
        return
    if not found:
        click.echo(f"{caller.client.to_text()} may call no service yet (ask a provider for access rights).")
        return
    rows = [
        {
            "service": entry.service.to_text(),
            "kind": entry.kind,
            "call": ", ".join(f"{m} {p}" for m, p in entry.endpoints)
            or ("POST /" if entry.kind == "soap" else "*"),
        }
        for entry in found
    ]
    click.echo(
        format_table(rows, (("service", "SERVICE"), ("kind", "KIND"), ("call", "CALL")), terminal_width())
    )
    click.echo("\nHow to call one: xgate services SERVICE")


def _same_rest(listed: ServiceId, wanted: ServiceId) -> bool:
    """A REST service is named without a version; accept the name however it was written."""
    return (
        listed.service_version is None
        and listed.provider == wanted.provider
        and listed.service_code == wanted.service_code
    )


# --- calling one ----------------------------------------------------------------------------


def _data(value: str | None) -> bytes:
    if value is None:
        return b""
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        with open(value[1:], "rb") as source:
            return source.read()
    return value.encode("utf-8")


def _header_pairs(values: Iterable[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: write a header as 'Name: value'", param_hint="-H")
        headers[name.strip()] = content.strip()
    return headers


@click.command("call")
@click.argument("service", type=SERVICE_ID)
@click.argument("path", required=False)
@caller_options
@click.option("-X", "--method", default="GET", show_default=True, help="REST: the HTTP method.")
@click.option("-d", "--data", help="REST: the request body, or @FILE, or - for standard input.")
@click.option("-H", "--header", "headers", multiple=True, help="REST: an extra header, 'Name: value'.")
@click.option("--soap", "soap_body", help="SOAP: the body element (XML), or @FILE, or -.")
@click.option("--user-id", help="The X-Road userId / X-Road-UserId of the person calling.")
@click.option("--envelope", is_flag=True, help="SOAP: show the whole answer, not only its Body.")
def call_command(
    service: str,
    path: str | None,
    gateway_url: str,
    client: str,
    cert: str | None,
    key: str | None,
    ca: str | None,
    method: str,
    data: str | None,
    headers: tuple[str, ...],
    soap_body: str | None,
    user_id: str | None,
    envelope: bool,
) -> None:
    """Call SERVICE through your gateway: signed, logged, answered as your program would see it.

    \b
    REST:  xgate call DEV/GOV/1003/benefits/benefits /benefits/38001085718
    SOAP:  xgate call DEV/GOV/1002/population/getPerson/v1 \\
             --soap '<prs:getPerson xmlns:prs="http://population.example/xsd"><personalCode>38001085718</personalCode></prs:getPerson>'

    Prints the status, the X-Road fields of the answer (its message id, the request hash the
    provider signed, a cache mark if it came from the cache) and the body; and how to find the
    exchange in your gateway's message log.
    """
    caller = _caller(gateway_url, client, cert, key, ca)
    service_id = _service(service)
    if soap_body is not None:
        if path or data or headers:
            raise click.UsageError("PATH, --data and -H are for REST; a SOAP call takes --soap only")
        try:
            element = parse_xml(_data(soap_body))
        except (XmlSyntaxError, UnsafeXml) as exc:
            raise click.BadParameter(f"not a well-formed XML element: {exc}", param_hint="--soap") from exc
        response = caller.soap(service_id, element, user_id)
        message_id, request_hash = _soap_fields(response)
    else:
        extra = _header_pairs(headers)
        if user_id:
            extra["X-Road-UserId"] = user_id
        url_path = rest_url(caller, service_id, path or "").removeprefix(caller.gateway_url.rstrip("/"))
        response = caller.http(
            method.upper(), url_path, data=_data(data) or None, headers={**caller.rest_headers(), **extra}
        )
        message_id, request_hash = response.headers.get("X-Road-Id"), None
    click.echo(f"HTTP {response.status_code} {response.reason}")
    for name in SHOWN_HEADERS:
        if name in response.headers:
            click.echo(f"{name}: {response.headers[name]}")
    if request_hash:
        click.echo(f"requestHash: {request_hash}")
    click.echo(f"Content-Type: {response.headers.get('Content-Type', '')}\n")
    click.echo(_shown_body(response, envelope))
    if "XGate-Cache" in response.headers:
        click.echo(
            "\nAnswered from your gateway's cache (docs/cache.md); the ids above are the original's.",
            err=True,
        )
    if message_id:
        click.echo(
            f"\nLogged at your gateway (and the provider's) as message {message_id}: "
            f"xgate log search --message-id {shlex.quote(message_id)}",
            err=True,
        )
    if response.status_code >= 400 or "X-Road-Error" in response.headers:
        sys.exit(1)


def _soap_fields(response: requests.Response) -> tuple[str | None, str | None]:
    """The answer's message id and the request hash the provider signed (None for a fault)."""
    try:
        message = soap.parse_response(response.content, response.headers.get("Content-Type"))
    except Exception:  # a fault carries no header to read them from
        return None, None
    return message.id, message.request_hash.value if message.request_hash else None


def _shown_body(response: requests.Response, envelope: bool) -> str:
    """JSON and XML indented; of a SOAP answer its Body's content, unless the whole `envelope`."""
    content_type = response.headers.get("Content-Type", "")
    if not envelope:
        try:
            message = soap.parse_response(response.content, content_type)
        except Exception:  # not a SOAP answer, or a fault: shown whole
            message = None
        if message is not None:
            return etree.tostring(message.body, pretty_print=True, encoding="unicode")
    if "json" in content_type:
        try:
            return json.dumps(response.json(), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if "xml" in content_type:
        try:
            return etree.tostring(parse_xml(response.content), pretty_print=True, encoding="unicode")
        except (XmlSyntaxError, UnsafeXml):
            pass
    return response.text
