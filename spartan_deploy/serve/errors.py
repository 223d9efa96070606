"""Errors of the serving stage, in the toolkit's one hierarchy (:class:`SpartanError`)."""

from __future__ import annotations

from spartan_deploy.errors import MissingDependencyError, SpartanError

SERVE_EXTRA_HINT = "pip install 'spartan-deploy[serve]'"


class ServeError(SpartanError):
    """The Triton server cannot start, load a model or answer."""


class ArtefactChangedError(ServeError):
    """An artefact's bytes no longer match the sha256 its manifest records."""


class ServerGoneError(ServeError):
    """The server stopped answering while a load test ran (the summary says what succeeded)."""

    exit_code = 5


def missing_client(err: ImportError) -> MissingDependencyError:
    """tritonclient (Triton's schema and clients) is absent: one line naming the extra."""
    return MissingDependencyError(
        f"Triton's client library is not installed ({err.name or err}); {SERVE_EXTRA_HINT}")
