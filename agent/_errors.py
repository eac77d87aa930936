"""Refusals of the sale path: a stable code, a sentence a cashier can act on, an HTTP status."""

from __future__ import annotations


class TillError(Exception):
    status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def unauthorized(cls) -> TillError:
        error = cls("unauthorized", "the POS token is missing or wrong")
        error.status = 401
        return error


class NotFound(TillError):
    status = 404


class Conflict(TillError):
    """The request contradicts what the till already did (a changed payload under one id)."""

    status = 409


class HoldRefused(TillError):
    """Central answered and would not hold the points (not enough, or a confirmation code is
    needed): the till spends nothing, and does not fall back to its offline allowance."""
