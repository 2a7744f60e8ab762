"""The central registry: the federation's members, gateways and trust services, published signed.

Modules (docs/central.md describes the whole):

* `requests` — signed registration requests (sans-IO): build and verify;
* `client`, `gateway_cli` — a gateway's side: submit requests, follow their state;
* `repository`, `tables`, `db`, `migrations/` — what the registry stores, in one transaction per change;
* `publisher` — signs each new configuration version, on change and on a timer;
* `api`, `openapi`, `roles`, `distribution` — the management API and the public endpoints;
* `config`, `server`, `bootstrap`, `cli`, `api_client` — running and operating a registry.

Nothing is re-exported here: import each name from its module. The face stays empty so that
importing one sans-IO module (`central.requests`) does not load the registry's or a gateway's
network and storage parts (aiohttp, requests, SQLAlchemy).
"""
