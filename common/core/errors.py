"""Domain errors and the one table that maps them to HTTP.

Services raise these anywhere (service layer, validation, auth); only the error middleware turns
them into the SPEC shape `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status: int = 500
    code: str = "internal_error"
    message: str = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}
        self.code = code or self.code
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "the request is not valid HTTP"


class InvalidJSON(AppError):
    status, code, message = 400, "invalid_json", "request body is not valid JSON"


class ValidationFailed(AppError):
    status, code, message = 400, "validation_error", "request is not valid"


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "missing, invalid or expired token"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "you are not allowed to do this"


class NotFound(AppError):
    status, code, message = 404, "not_found", "not found"


class MethodNotAllowed(AppError):
    status, code, message = 405, "method_not_allowed", "method not allowed"


class RequestTimeout(AppError):
    status, code, message = 408, "request_timeout", "the request body did not arrive in time"


class Conflict(AppError):
    status, code, message = 409, "conflict", "conflict"


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "request body is too large"


class UriTooLong(AppError):
    status, code, message = 414, "uri_too_long", "the request line is too long"


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "expected application/json"


class RequestHeaderTooLarge(AppError):
    status, code, message = 431, "request_header_too_large", "a request header is too large, or there are too many"


class RateLimited(AppError):
    status, code, message = 429, "rate_limited", "too many requests"


class BadGateway(AppError):
    status, code, message = 502, "bad_gateway", "upstream service answered badly"


# How soon a client may try again after a 503: long enough not to feed the burst that exhausted a pool,
# short enough to ride out a dependency's restart blip.
RETRY_UNAVAILABLE_AFTER_S = 2


class ServiceUnavailable(AppError):
    status, code, message = 503, "service_unavailable", "a dependency is unavailable"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(RETRY_UNAVAILABLE_AFTER_S)})
        super().__init__(message, **kwargs)


class GatewayTimeout(AppError):
    status, code, message = 504, "gateway_timeout", "upstream service did not answer in time"
