"""Errors of the HTTP library under huggingface_hub, recognised without importing it.

huggingface_hub has used requests + urllib3 (0.x), httpx (1.x) and httpx2 (2.x); mimcl_hub declares none of them
(they are huggingface_hub's business), so their exceptions are matched by the top-level package and name of a class
in the error's MRO instead of ``isinstance``: a subclass matches as it would with ``isinstance``.
"""

from __future__ import annotations

from typing import Iterator, Optional

__all__ = ["chain", "http_status", "is_connection_error", "is_http_library_error", "is_transient"]

#: HTTP statuses worth retrying besides 5xx
RETRY_STATUS = {408, 429, 500, 502, 503, 504}

#: per HTTP library: the exception classes that mean a dropped / refused connection, a timeout or a broken exchange
CONNECTION_ERRORS = {
    "httpx": {"TimeoutException", "NetworkError", "RemoteProtocolError"},
    "httpx2": {"TimeoutException", "NetworkError", "RemoteProtocolError"},
    "httpcore": {"TimeoutException", "NetworkError", "RemoteProtocolError"},
    "requests": {"ConnectionError", "Timeout", "ChunkedEncodingError"},
    "urllib3": {"TimeoutError", "ProtocolError", "NewConnectionError"},
}
#: per HTTP library: the base class of its errors (a connection failure or a bad answer)
BASE_ERRORS = {"httpx": "HTTPError", "httpx2": "HTTPError", "requests": "RequestException", "urllib3": "HTTPError"}


def _classes(error: BaseException) -> Iterator[tuple[str, str]]:
    """``(top-level package, class name)`` of every class in ``type(error).__mro__``."""
    for cls in type(error).__mro__:
        yield cls.__module__.partition(".")[0], cls.__name__


def is_connection_error(error: BaseException) -> bool:
    """True for a builtin ``ConnectionError`` / ``TimeoutError`` or an HTTP library's connection / timeout /
    protocol error (``CONNECTION_ERRORS``); only ``error`` itself, not its causes."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any(name in CONNECTION_ERRORS.get(package, ()) for package, name in _classes(error))


def is_http_library_error(error: BaseException) -> bool:
    """True for any error an HTTP library of huggingface_hub raises (``BASE_ERRORS`` or ``CONNECTION_ERRORS``)."""
    return any(BASE_ERRORS.get(package) == name or name in CONNECTION_ERRORS.get(package, ())
               for package, name in _classes(error))


def http_status(error: BaseException) -> Optional[int]:
    """The HTTP status of an error that carries a response (requests / httpx / huggingface_hub errors), else None."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then its causes / contexts (each once)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_transient(error: BaseException) -> bool:
    """True for faults worth retrying: HTTP 408 / 429 / 5xx, dropped or refused connections, timeouts (anywhere
    in the exception chain: huggingface_hub wraps LFS upload failures in a RuntimeError); never another 4xx.

    Works with whichever HTTP library huggingface_hub uses (requests in 0.x, httpx in 1.x, httpx2 in 2.x) without
    importing it (:func:`is_connection_error`)."""
    for e in chain(error):
        status = http_status(e)
        if status is not None:
            return status in RETRY_STATUS or 500 <= status < 600
        if is_connection_error(e):
            return True
    return False
