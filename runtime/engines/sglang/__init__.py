"""The sglang engine: spex's engine protocol over SGLang's native HTTP API.

`engine.SglangEngine` is the client, `cli` its command-line options. This package file stays empty
of imports so that `runtime.engines.sglang.cli` loads without aiohttp.
"""
