"""Example agency services that sit behind xgate gateways in demos and tests.

- :mod:`services.population_register`: a SOAP 1.1 X-Road 4.0 service (``wsdl/population-register.wsdl``).
- :mod:`services.benefits_api`: a REST JSON API (``wsdl/benefits-api.yaml``).

Each has ``make_app() -> aiohttp.web.Application`` and a command line
(``python -m services.population_register --port 8081``), listens on 127.0.0.1 by default, and
answers a few special inputs with deliberate failures (slow, garbage, HTTP 500, ...) so that
gateway tests can provoke the provider's ``ServiceFailed.*`` paths. They are not part of the
gateway and nothing in ``gateway/`` imports them.
"""
