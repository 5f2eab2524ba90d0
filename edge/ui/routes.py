"""The screen's endpoints, in one table: KioskUi dispatches by it, the API server routes by it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """One endpoint: `path` is exact, or a prefix (ending in "/") followed by an id."""

    method: str
    path: str
    endpoint: str  # the KioskUi method answering it
    session: str  # "none": open; "touch": needs a session and renews it; "peek": needs, no renew
    prefix: bool = False


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/ui/state", "state", "none"),
    Route("POST", "/v1/session", "sign_in", "none"),
    Route("DELETE", "/v1/session", "sign_out", "none"),
    Route("POST", "/v1/scan", "scan", "none"),
    Route("GET", "/v1/kpm/", "kpm", "touch", prefix=True),
    Route("GET", "/v1/preview.jpg", "preview", "peek"),
    Route("GET", "/v1/guidance", "guidance", "peek"),
    Route("GET", "/v1/progress", "progress", "peek"),
    # POST /v1/verify is the screen's only with a bearer token (else the local CLI's)
    Route("POST", "/v1/verify", "verify", "touch"),
)
SHARED_WITH_API = "/v1/verify"


def find(method: str, path: str) -> tuple[Route, str] | None:
    """The route for a request and what follows a prefix route's path (else "")."""
    route_path = path.split("?", 1)[0]
    for r in ROUTES:
        if r.method != method:
            continue
        if r.prefix and route_path.startswith(r.path):
            return r, route_path[len(r.path) :]
        if not r.prefix and route_path == r.path:
            return r, ""
    return None


def is_screen_path(path: str, bearer: bool) -> bool:
    """Whether the API hands this path to the screen (any method: the screen answers 404/405)."""
    route_path = path.split("?", 1)[0]
    if route_path == SHARED_WITH_API:
        return bearer
    return route_path.startswith("/v1/ui/") or any(
        route_path.startswith(r.path) for r in ROUTES if r.path != SHARED_WITH_API
    )
