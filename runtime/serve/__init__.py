"""`spex serve`: SGLang's native HTTP API (the subset spex uses) over an in-process engine, so the
sglang engine can be tested, and spex driven, without a GPU server."""
