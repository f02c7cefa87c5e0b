"""The read-only web console and HTTP API that the ``web`` service serves (see
:mod:`dsa110d.services.web`): :mod:`~dsa110d.web.api` (the JSON endpoints and their OpenAPI
description), :mod:`~dsa110d.web.pages` (the server-rendered pages), :mod:`~dsa110d.web.security`
(read-only, token, headers) and :mod:`~dsa110d.web.app` (the Starlette application)."""
