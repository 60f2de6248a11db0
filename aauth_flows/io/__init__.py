"""The I/O edge: httpx drivers, ASGI middleware and servers, discovery, stores.

Needs the ``http`` extra (``pip install aauth[http]``): httpx, Starlette and uvicorn.
Everything here does real I/O around the sans-I/O machines of :mod:`aauth_flows.machines`.
"""
