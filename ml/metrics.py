"""The recommendation index's metrics: each shard's answer time as the caller sees it (Ray call and
search together, by outcome), and the calls and queries each shard answered (queries per call is
how far the batching of ``actors/rec_shard.py`` has gone)."""

from __future__ import annotations

from verseflow import metrics

#: ``shard`` is the shard's number (a small fixed set, ``rec_shards``); ``outcome`` ok, timeout or error.
SHARD_SEARCH = metrics.histogram("verseflow_rec_shard_search_duration_seconds",
                                 "One query's answer from one recommendation shard, as the caller waited for it.",
                                 ("shard", "outcome"))
SHARD_CALLS = metrics.counter("verseflow_rec_shard_calls_total",
                              "Search calls a recommendation shard answered (each holds one or more queries).",
                              ("shard",))
SHARD_QUERIES = metrics.counter("verseflow_rec_shard_queries_total",
                                "Queries a recommendation shard answered, over all its calls.", ("shard",))
