"""The OAuth token route: a signed JWT exchanged for a ``czs_…`` access token.

This module owns ``POST /api/permission/oauth2/token`` and its enterprise twin
``POST /api/permission/oauth2/account/{account_id}/token`` (same handler; the account id is
not checked): the HTTP side of :class:`~ability_gateway.simulator.oauth.OAuthServer`, which
does the checks. OAuth answers are plain JSON (``access_token``, ``expires_in``, or the OAuth
error body with its HTTP status), not the Coze envelope.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from ability_gateway.simulator.envelope import JSON_CONTENT_TYPE
from ability_gateway.simulator.oauth import OAuthError
from ability_gateway.simulator.state import SIMULATOR

__all__ = ["oauth_token"]


async def oauth_token(request: web.Request) -> web.Response:
    """``POST /api/permission/oauth2/token``: a signed JWT for a ``czs_…`` access token."""
    sim = request.app[SIMULATOR]
    try:
        token, expires_in = sim.oauth.exchange(
            request.headers.get("Authorization"), await request.read(), sim.audiences(request)
        )
    except OAuthError as exc:
        return web.Response(
            status=exc.status,
            body=orjson.dumps(exc.body()),
            headers={"Content-Type": JSON_CONTENT_TYPE},
        )
    body = {"access_token": token, "expires_in": expires_in}
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON_CONTENT_TYPE})
