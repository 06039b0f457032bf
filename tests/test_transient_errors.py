"""push.is_transient (through hub/http_errors.py) classifies the real exception classes of every HTTP stack
huggingface_hub has used (requests + urllib3 in 0.x, httpx in 1.x, httpx2 in 2.x) without importing any of them;
each stack installed here is checked with its own classes (the fault-injection tests of tests/test_push.py drive the
one huggingface_hub uses)."""

import importlib
import subprocess
import sys

import pytest

from mimcl_hub.hub.http_errors import is_connection_error, is_http_library_error
from mimcl_hub.hub.push import is_transient


def _cases(name):
    """(retry these, not these) real exception instances of HTTP library ``name``."""
    lib = pytest.importorskip(name)
    if name in ("httpx", "httpx2"):
        return ([lib.ReadTimeout("slow"), lib.ConnectTimeout("slow"), lib.ConnectError("refused"),
                 lib.ReadError("reset"), lib.RemoteProtocolError("dropped"), lib.PoolTimeout("busy")],
                [lib.DecodingError("bad gzip"), lib.UnsupportedProtocol("ftp"), lib.TooManyRedirects("loop")])
    if name == "requests":
        exc = importlib.import_module("requests.exceptions")
        return ([exc.ConnectionError("refused"), exc.ReadTimeout("slow"), exc.ConnectTimeout("slow"),
                 exc.ChunkedEncodingError("dropped")],
                [exc.InvalidURL("x"), exc.MissingSchema("x"), exc.InvalidHeader("x")])
    exc = importlib.import_module("urllib3.exceptions")
    return ([exc.ProtocolError("dropped"), exc.ReadTimeoutError(None, "/x", "slow"),
             exc.NewConnectionError(None, "refused")],
            [exc.LocationParseError("x"), exc.HeaderParsingError([], b"")])


@pytest.mark.parametrize("name", ["requests", "urllib3", "httpx", "httpx2"])
def test_each_http_stack_is_classified_by_its_own_classes(name):
    transient, permanent = _cases(name)
    for error in transient:
        assert is_transient(error) and is_connection_error(error), error
        wrapped = RuntimeError("LFS upload failed")          # huggingface_hub wraps LFS failures
        wrapped.__cause__ = error
        assert is_transient(wrapped), error
    for error in permanent:
        assert not is_transient(error) and not is_connection_error(error), error
    for error in transient + permanent:
        assert is_http_library_error(error), error


def test_builtin_and_status_errors():
    class Response:
        def __init__(self, status_code):
            self.status_code = status_code

    def http(status):
        error = OSError(f"HTTP {status}")
        error.response = Response(status)
        return error

    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert all(is_transient(http(s)) for s in (408, 429, 500, 502, 503, 504, 599))
    assert not any(is_transient(http(s)) for s in (400, 401, 403, 404, 409, 412, 422))
    assert not is_transient(ValueError("bad")) and not is_transient(FileNotFoundError("x"))
    assert not is_http_library_error(ValueError("bad")) and not is_http_library_error(KeyError("x"))

