"""The ranking service's library half; `bento/service.py` is a thin BentoML wrapper over it, and everything
here runs and is tested without a server.

    schemas   the HTTP contract: strict request models, response shapes, fallback flags, limits, `BodyLimit`
    ranker    `Ranker` (one model version, its embedding table and catalogue; vectorised) and `load_ranker`
    sources   where versions come from: `RegistrySource`, `LocalSource`, chosen by environment
    hotswap   `ModelHolder`: serves one `Ranker`, polls the source, swaps in the next version atomically
    security  `RequestGuard`: request ids, the admin token, JSON-only bodies, /docs.json; private error logs
    edge      connection limits (uvicorn's HTTP protocol) and one metrics label for every unknown path
    openapi   the service's OpenAPI document

Import from the modules; this package re-exports nothing.
"""
