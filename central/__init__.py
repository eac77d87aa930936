"""Central: the authoritative ledger, sync endpoints for tills, the HQ admin API."""

from central._app import PUBLIC_ROUTES, Settings, create_app
from central._db import make_engine, migrate

__all__ = ["PUBLIC_ROUTES", "Settings", "create_app", "make_engine", "migrate"]
