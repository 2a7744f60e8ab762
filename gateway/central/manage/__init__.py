"""The operations of the registry's management API, by concept; `gateway.central.api` serves them."""
