"""One module per command, orchestration only: ``evaluate`` (eval), ``index_build`` (index build / add),
``train``, ``mine``, ``sweep``, ``quickstart``, ``doctor``; ``shards`` is the dense build's resumable encoding
steps index build and eval share. Only ``cli`` (and the public API in ``mbert_retrieval``) imports them."""
