"""The interface cache: agencies stay served when a partner is down (issue 10).

Modules (sans-IO core first, then edges):

- `policy`: :class:`CachePolicy` and its parts (modes, sides, breaker and retry settings, the
  replication plan), validation, JSON documents; `schedule`: intervals and cron expressions;
- `key`: the cache key of a request, and the person identifiers in it (erasure requests);
- `breaker`: the circuit breaker per provider service;
- `marking`: the `XGate-Cache` and `Age` fields and the SOAP header block of a cached answer;
- `tables`, `db`, `migrations/`, `store`: the cache's database (:class:`CacheStore`);
- `policies`: policies kept in the server configuration, validated and read as values;
- `settings`: the node's `[cache]` table; `service`: the cache as a node runs it
  (:class:`CacheService`: store, breakers, background revalidation, maintenance);
- `replication`: the scheduler of `replicate` policies.

The request path's use of all this lives in `gateway.proxy.cached` (consumer and provider sides).
"""
