"""Operational monitoring, as X-Road's: one record per exchange on each gateway, no bodies.

The proxy reports each exchange (gateway.monitoring.exchange); :class:`service.OperationalMonitor`
queues the records and writes them in batches off the event loop into the node's monitoring
database, purges them after the retention period, and answers queries: the management API
(gateway/admin/monitoring.py), `xgate monitor`, and the X-Road metadata service
getSecurityServerOperationalData (xroad.py) for the federation's monitoring client.
"""
