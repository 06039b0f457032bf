"""Errors of the HTTP library under huggingface_hub, recognised without importing it.

huggingface_hub has used requests + urllib3 (0.x), httpx (1.x) and httpx2 (2.x); mimcl_hub declares none of them
(they are huggingface_hub's business), so their exceptions are matched by the top-level package and name of a class
in the error's MRO instead of ``isinstance``: a subclass matches as it would with ``isinstance``.
"""

from __future__ import annotations

from typing import Iterator

__all__ = ["is_connection_error", "is_http_library_error"]

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
