"""Consumer scans (扫码查询): the public resolver /v/{code}, Redis counters, the durable scan log
(Redis Stream → `scan_events`), fraud alerts and the resolver's rate limits."""
