"""JSON control + inbox API of the sandbox (aiohttp), used by tests, benchmark and chaos suite.

    GET    /healthz
    GET    /instances                      {"instances": [...]}
    GET    /instances/{name}
    GET    /instances/{name}/messages      {"count": n, "messages": [...]}   (?to= filter)
    DELETE /instances/{name}/messages      empties the inbox and forgets idempotency keys
    GET    /instances/{name}/arrivals      {"keys": {key: n}, "repeated": {key: n > 1}}
    GET    /instances/{name}/faults
    PUT    /instances/{name}/faults        partial JSON merge, e.g. {"latency_ms": 50}
    DELETE /instances/{name}/faults        all faults off
    POST   /reset                          every inbox, counter and fault
    POST   /instances/{name}/inbound       an inbound SMS, signed, to a webhook (twilio_inbound.py)
    PUT    /instances/{name}/webhook       postmark: {"url": ..., "basic_auth"?: "user:pass"}, where its
                                           delivery/bounce webhooks go (receipts.py); {} removes it

Errors are JSON `{"error": "..."}`: 404 for an unknown instance or route, 400 for bad JSON or
an invalid fault, 500 if an instance cannot listen again on its port after an outage.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from sandbox.state import FaultError, InstanceState
from sandbox.twilio_inbound import inbound_sms_deliver

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render aiohttp's own errors (unknown route, wrong method) as JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except OSError as exc:
        # Only ending an outage binds a socket here; the instance stays down and says so.
        return json_error(500, f"cannot listen again: {exc}")


class ControlApi:
    def __init__(self, instances: Mapping[str, InstanceState]) -> None:
        self.instances = instances

    def _instance(self, request: web.Request) -> InstanceState:
        name = request.match_info["name"]
        try:
            return self.instances[name]
        except KeyError:
            raise web.HTTPNotFound(reason=f"unknown instance {name!r}") from None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "instances": len(self.instances)})

    async def list_instances(self, request: web.Request) -> web.Response:
        return web.json_response({"instances": [i.describe() for i in self.instances.values()]})

    async def get_instance(self, request: web.Request) -> web.Response:
        return web.json_response(self._instance(request).describe())

    async def messages(self, request: web.Request) -> web.Response:
        inbox = self._instance(request).inbox(to=request.query.get("to"))
        return web.json_response({"count": len(inbox), "messages": inbox})

    async def arrivals(self, request: web.Request) -> web.Response:
        """How many times each idempotency key (one per notification) reached the instance."""
        keys = self._instance(request).arrivals()
        return web.json_response({"keys": keys, "repeated": {k: n for k, n in keys.items() if n > 1}})

    async def clear_messages(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        instance.clear_messages()
        return web.json_response({"count": 0, "messages": []})

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._instance(request).faults.as_dict())

    async def update_faults(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        changes = await read_json_object(request)
        try:
            await instance.update_faults(changes)
        except FaultError as exc:
            return json_error(400, str(exc))
        return web.json_response(instance.faults.as_dict())

    async def clear_faults(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        await instance.clear_faults()
        return web.json_response(instance.faults.as_dict())

    async def inbound(self, request: web.Request) -> web.Response:
        if self._instance(request).kind != "twilio":
            return json_error(400, "inbound messages come from twilio instances")
        return await inbound_sms_deliver(request, await read_json_object(request))

    async def set_webhook(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        if instance.kind != "postmark":
            return json_error(400, "only postmark instances post webhooks")
        body = await read_json_object(request)
        if not body:
            instance.webhook = None
            return web.json_response({"webhook": None})
        url, auth = body.get("url"), body.get("basic_auth")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return json_error(400, "'url' must be an http(s) URL")
        if auth is not None and not (isinstance(auth, str) and ":" in auth):
            return json_error(400, "'basic_auth' must be user:password")
        instance.webhook = {"url": url, "basic_auth": auth}
        return web.json_response({"webhook": {"url": url}})

    async def reset(self, request: web.Request) -> web.Response:
        for instance in self.instances.values():
            await instance.reset()
        return web.json_response({"instances": [i.describe() for i in self.instances.values()]})


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="body is not valid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def build_control_app(instances: Mapping[str, InstanceState]) -> web.Application:
    api = ControlApi(instances)
    app = web.Application(middlewares=[json_errors])
    router = app.router
    router.add_get("/healthz", api.healthz)
    router.add_get("/instances", api.list_instances)
    router.add_get("/instances/{name}", api.get_instance)
    router.add_get("/instances/{name}/messages", api.messages)
    router.add_delete("/instances/{name}/messages", api.clear_messages)
    router.add_get("/instances/{name}/arrivals", api.arrivals)
    router.add_get("/instances/{name}/faults", api.get_faults)
    router.add_put("/instances/{name}/faults", api.update_faults)
    router.add_delete("/instances/{name}/faults", api.clear_faults)
    router.add_post("/reset", api.reset)
    router.add_post("/instances/{name}/inbound", api.inbound)
    router.add_put("/instances/{name}/webhook", api.set_webhook)
    return app
