"""REST service descriptions: the endpoints an OpenAPI document offers, and the copy getOpenAPI may publish.

An agency registers a REST service with its OpenAPI 3 document. Each operation under ``paths``
is an endpoint (method and path) that access rights can be granted for (PROTOCOL.md "REST
protocol r1": per endpoint, path pattern with ``*`` wildcards); ``servers[0]`` is the default
address of the service. getOpenAPI (PROTOCOL.md "Service metadata") hands the document to
consumers with every server address hidden.

A document without a usable server is still registered, as X-Road does, but only after the
warnings step (:attr:`OpenApiDescription.warnings`): missing `servers`, or a first server whose
URL is templated or not absolute, leave the backend URL for the administrator to set.

Sans-IO: bytes in, values out. The document is untrusted: YAML is read with the safe loader,
within a size limit, and refused when its aliases would expand it beyond a node limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from gateway.serverconf.wsdl import (
    DEFAULT_HIDDEN_ADDRESS,
    MAX_DESCRIPTION_BYTES,
    DescriptionError,
    DescriptionWarning,
)

# X-Road's own parser accepts every 3.0.x and exactly 3.1.0 (3.1.1 appeared later and is refused:
# samples/invalid_version.yaml, PROTOCOL.md "Samples"). Swagger 2.0 has another shape entirely.
SUPPORTED_OPENAPI_VERSION: Final = re.compile(r"3\.0\.\d+|3\.1\.0")

# OpenAPI 3.0/3.1 "Path Item Object": the fields that hold an operation.
HTTP_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# A description of a large API has tens of thousands of nodes; a YAML alias bomb of a few
# hundred bytes expands to billions. Counted with aliases expanded, before anything is built.
MAX_YAML_NODES: Final = 1_000_000

# Warning codes (see gateway.serverconf.wsdl.DescriptionWarning).
MISSING_SERVERS: Final = "openapi_missing_servers"
TEMPLATED_SERVER: Final = "openapi_templated_server"

# OpenAPI "Path Templating": `{name}` stands for one whole or partial path segment.
_TEMPLATE_PARAMETER: Final = re.compile(r"\{[^/{}]*\}")


@dataclass(frozen=True)
class Endpoint:
    """One operation of a REST service: an HTTP method and the path template it is declared under."""

    method: str
    path: str

    @property
    def path_pattern(self) -> str:
        """The path as an access-rights pattern (`/pets/{id}` → `/pets/*`)."""
        return endpoint_path_pattern(self.path)


@dataclass(frozen=True)
class OpenApiDescription:
    """What registration needs from an OpenAPI document."""

    openapi_version: str
    title: str | None
    endpoints: tuple[Endpoint, ...]
    default_url: str | None
    warnings: tuple[DescriptionWarning, ...] = ()


def endpoint_path_pattern(path_template: str) -> str:
    """Each `{param}` of an OpenAPI path template as `*`, the wildcard access rights use."""
    return _TEMPLATE_PARAMETER.sub("*", path_template)


def parse_openapi(data: bytes) -> OpenApiDescription:
    """The endpoints and default address `data` describes, or DescriptionError saying why not."""
    document = _load(data)
    version = _openapi_version(document)
    paths = document.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        raise DescriptionError("the OpenAPI document has no `paths` mapping with at least one path")
    endpoints = _endpoints(document, paths)
    if not endpoints:
        raise DescriptionError("the OpenAPI document describes no operations under `paths`")
    info = document.get("info")
    title = info.get("title") if isinstance(info, Mapping) else None
    default_url, warnings = _server(document.get("servers"))
    return OpenApiDescription(
        openapi_version=version,
        title=title if isinstance(title, str) else None,
        endpoints=endpoints,
        default_url=default_url,
        warnings=warnings,
    )


def hide_openapi_servers(data: bytes, replacement: str = DEFAULT_HIDDEN_ADDRESS) -> bytes:
    """The document with every server address replaced by one neutral entry, in its own format (JSON or YAML).

    Servers may be declared at the top and on any Path Item or Operation, wherever those sit
    (paths, components, webhooks, callbacks: OpenAPI 3 "Server Object"); all of them reveal where
    the service runs, so every `servers` list anywhere is replaced.
    """
    document = _load(data)
    document["servers"] = []
    _replace_servers(document, replacement, visited=set())
    if _is_json(data):
        return json.dumps(document, indent=2, ensure_ascii=False, default=str).encode() + b"\n"
    dumped: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return dumped.encode()


def _replace_servers(node: Any, replacement: str, visited: set[int]) -> None:
    if id(node) in visited:  # YAML aliases share objects, and may even form cycles
        return
    visited.add(id(node))
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "servers" and isinstance(value, list):
                # A fresh list each time: shared objects would come out as YAML aliases.
                node[key] = [{"url": replacement, "description": "reached through the X-Road gateway"}]
            else:
                _replace_servers(value, replacement, visited)
    elif isinstance(node, list):
        for item in node:
            _replace_servers(item, replacement, visited)


def _is_json(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_DESCRIPTION_BYTES:
        raise DescriptionError(
            f"the description is {len(data)} bytes, over the limit of {MAX_DESCRIPTION_BYTES}"
        )
    try:
        document = _safe_load(data)
    except yaml.YAMLError as exc:
        raise DescriptionError(f"the description is neither JSON nor YAML: {exc}") from exc
    except RecursionError as exc:  # the composer and the checks recurse once per nesting level
        raise DescriptionError("the description is nested too deeply") from exc
    if not isinstance(document, dict):
        raise DescriptionError("the description is not a JSON object / YAML mapping")
    return document


def _safe_load(data: bytes) -> Any:
    """yaml.safe_load, with the node graph checked between composing and constructing."""
    loader = yaml.SafeLoader(data)  # reads the first bytes already: may raise ReaderError
    try:
        node = loader.get_single_node()
        if node is None:
            raise DescriptionError("the description is empty")
        _check_nodes(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node) -> None:
    """Refuse alias bombs and duplicate keys before any Python object is built.

    Duplicate keys are refused because a loader silently keeps the last one: two `/pets` paths
    would register only one of them (YAML 1.2 §3.2.1.1 and RFC 8259 §4 both want keys unique).
    """
    expanded: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = expanded.get(id(node))
        if known is not None:
            return known
        expanded[id(node)] = 1  # a recursive alias counts once instead of looping
        total = 1
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in keys:
                        raise DescriptionError(
                            f"duplicate key {key.value!r} (line {key.start_mark.line + 1})"
                        )
                    keys.add(key.value)
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        if total > MAX_YAML_NODES:
            raise DescriptionError(f"the description expands to more than {MAX_YAML_NODES} nodes")
        expanded[id(node)] = total
        return total

    size(root)


def _openapi_version(document: Mapping[str, Any]) -> str:
    if "swagger" in document:
        raise DescriptionError(
            f"Swagger {document['swagger']} is not supported: only OpenAPI 3.0.x and 3.1.0"
        )
    version = document.get("openapi")
    if version is None:
        raise DescriptionError("not an OpenAPI document: the `openapi` field is missing")
    if not isinstance(version, str) or not SUPPORTED_OPENAPI_VERSION.fullmatch(version):
        raise DescriptionError(f"OpenAPI version {version!r} is not supported: only 3.0.x and 3.1.0")
    return version


def _endpoints(document: Mapping[str, Any], paths: Mapping[Any, Any]) -> tuple[Endpoint, ...]:
    seen: dict[tuple[str, str], Endpoint] = {}
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise DescriptionError(f"path {path!r} does not begin with '/' (OpenAPI 3 \"Paths Object\")")
        if not isinstance(item, Mapping):
            raise DescriptionError(f"path {path!r} is not a Path Item mapping")
        item = _resolve_path_item(document, path, item)
        for method in HTTP_METHODS:
            if method not in item:
                continue
            endpoint = Endpoint(method.upper(), path)
            # OpenAPI 3 "Path Templating": templates differing only in parameter names are the
            # same path, and access rights could not tell them apart either.
            key = (endpoint.method, endpoint.path_pattern)
            if key in seen:
                raise DescriptionError(
                    f"{endpoint.method} {path} duplicates {seen[key].method} {seen[key].path}"
                )
            seen[key] = endpoint
    return tuple(seen.values())


def _resolve_path_item(document: Mapping[str, Any], path: str, item: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Path Item given by `$ref` (3.1 `components/pathItems`), followed within this document only."""
    reference = item.get("$ref")
    if reference is None:
        return item
    if not isinstance(reference, str) or not reference.startswith("#/"):
        raise DescriptionError(f"path {path!r} refers to {reference!r}: only references within the document")
    target: Any = document
    for part in reference[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")  # RFC 6901 §4
        if not isinstance(target, Mapping) or key not in target:
            raise DescriptionError(
                f"path {path!r} refers to {reference!r}, which the document does not define"
            )
        target = target[key]
    if not isinstance(target, Mapping) or "$ref" in target:
        raise DescriptionError(f"path {path!r} refers to {reference!r}, which is not a plain Path Item")
    # Fields beside the `$ref` are kept: 3.1 allows them, and dropping them would hide endpoints.
    return {**target, **{key: value for key, value in item.items() if key != "$ref"}}


def _server(servers: Any) -> tuple[str | None, tuple[DescriptionWarning, ...]]:
    """The default backend, `servers[0].url` with its variables at their defaults (OpenAPI 3
    "Server Variable Object"), and the warnings about it; None when there is no usable one."""
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        return None, (
            DescriptionWarning(MISSING_SERVERS, "the document names no server: set the backend URL"),
        )
    url = servers[0].get("url")
    if not isinstance(url, str) or not url.strip():
        return None, (
            DescriptionWarning(MISSING_SERVERS, "the first server has no URL: set the backend URL"),
        )
    template = url.strip()
    variables = servers[0].get("variables")
    if isinstance(variables, Mapping):
        for name, variable in variables.items():
            default = variable.get("default") if isinstance(variable, Mapping) else None
            if default is not None:
                url = url.replace(f"{{{name}}}", str(default))
    url = url.strip()
    parts = urlsplit(url)
    if "{" in url or parts.scheme not in ("http", "https") or not parts.hostname:
        message = f"the first server's URL {template!r} is not an absolute http(s) URL: set the backend URL"
        return None, (DescriptionWarning(TEMPLATED_SERVER, message),)
    if url != template:
        message = (
            f"the first server's URL {template!r} is templated: {url!r} (its variables' defaults) is used"
        )
        return url, (DescriptionWarning(TEMPLATED_SERVER, message),)
    return url, ()
