"""HTTP: kube-apiserver's routes on kmock's handler.

kmock's ``RawHandler`` keeps every request it serves in a list (for test assertions) and its
path parser fails on ``/api/v1/namespaces``; this handler overrides ``__call__``, so nothing
accumulates and every path is read by :func:`routes.parse_path`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import kmock
import yaml
from aiohttp import web
from multidict import CIMultiDict

from modelrollout.sandbox.kubeapi import discovery, errors, openapi, protobuf, routes, table
from modelrollout.sandbox.kubeapi.admin import NO_ANSWER, Audit, Call, Fault, Faults
from modelrollout.sandbox.kubeapi.objects import PATCH_TYPES, Cluster, Outcome
from modelrollout.sandbox.kubeapi.resources import Resource
from modelrollout.sandbox.kubeapi.selectors import from_query
from modelrollout.sandbox.kubeapi.watch import Stream, WatchRequest, expired_line, parse_since

JSON = dict[str, Any]
log = logging.getLogger(__name__)

_HEALTH = ("/healthz", "/livez", "/readyz")
_DISCOVERY_TYPE = "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList"


def _response(
    body: Any,
    status: int = 200,
    *,
    content_type: str = "application/json",
    headers: CIMultiDict[str] | None = None,
) -> web.Response:
    merged: CIMultiDict[str] = CIMultiDict(headers or {})
    merged["Content-Type"] = content_type
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers=merged)


def _error(exc: errors.ApiError) -> web.Response:
    return _response(exc.status(), exc.code, headers=CIMultiDict(exc.headers))


class ApiHandler(kmock.RawHandler):
    """Serves a :class:`Cluster` over HTTP, plus health, version, discovery, OpenAPI and admin."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        audit_limit: int = 50_000,
        bookmark_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.audit = Audit(audit_limit)
        self.faults = Faults()
        self.bookmark_interval = bookmark_interval
        self.closing = False
        #: Watch streams being served, with the call that opened each (to cut them).
        self.open_watches: dict[Stream, Call] = {}

    @property
    def request_log_size(self) -> int:
        """What kmock's request log holds (kept at zero)."""
        return len(self._requests)

    async def __call__(self, raw: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._serve(raw)
        except errors.ApiError as exc:
            return _error(exc)
        except Exception as exc:  # a bug here must still answer as kube would: 500 with a Status
            log.exception("kube-api: %s %s failed", raw.method, raw.path)
            return _error(errors.internal_error(f"{type(exc).__name__}: {exc}"))

    async def _serve(self, raw: web.BaseRequest) -> web.StreamResponse:
        body = await raw.read()
        path = raw.path.rstrip("/") or "/"
        if path.startswith(_HEALTH) and raw.method == "GET":
            return web.Response(text="ok", content_type="text/plain")
        if path.startswith("/_emulator/"):
            return self._admin(raw.method, path, body)
        route = routes.parse_path(path)
        if route is None:
            if raw.method != "GET":
                raise errors.method_not_allowed()
            return self._meta(raw, path)
        query = {k: v for k, v in raw.query.items() if k != "dryRun"}
        call = Call(
            raw.headers.get("User-Agent", ""),
            routes.verb(raw.method, route, query),
            route.group,
            route.plural,
            route.subresource,
            route.namespace or "",
            route.name or "",
        )
        fault = self.faults.take(call)
        if fault is not None:
            return await self._fail(raw, call, fault)
        if call.verb == "watch":
            # A watch lasts until the client goes away, which may be a kill:
            # record it when it starts (and again if it is refused).
            self.audit.record(call, 200)
        try:
            response = await self._resource(raw, route, call, query, body)
        except errors.ApiError as exc:
            self.audit.record(call, exc.code)
            raise
        if call.verb != "watch":
            self.audit.record(call, response.status)
        return response

    async def _fail(self, raw: web.BaseRequest, call: Call, fault: Fault) -> web.StreamResponse:
        if fault.code == NO_ANSWER:
            # Recorded when taken: a client that gives up first must still see it counted.
            self.audit.record(call, NO_ANSWER)
            await asyncio.sleep(fault.delay_seconds)
            if raw.transport is not None:
                raw.transport.abort()
            # Nothing reaches the client: aiohttp finds the transport closed and drops this.
            return web.Response(status=500)
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        failure = fault.error(call)
        self.audit.record(call, failure.code)
        if failure.code == 410 and call.verb == "watch":
            # kube answers an expired watch with 200 and one ERROR event, not an HTTP error.
            return web.Response(
                body=expired_line(failure.status()), content_type="application/json"
            )
        return _error(failure)

    def cut_watches(self, group: str | None, resource: str | None) -> int:
        """Abort the connections of the open watch streams (of one resource, if named)."""
        chosen = [
            stream
            for stream, call in self.open_watches.items()
            if (group is None or call.group == group)
            and (resource is None or call.resource == resource)
        ]
        for stream in chosen:
            stream.cut()
        return len(chosen)

    # Non-resource paths

    def _meta(self, raw: web.BaseRequest, path: str) -> web.Response:
        registry = self.cluster.registry
        accept = raw.headers.get("Accept", "")
        if path == "/version":
            return _response(discovery.SERVER_VERSION)
        if path in ("/api", "/apis"):
            aggregated = routes.discovery_version(accept)
            if aggregated:
                body = discovery.aggregated(
                    registry, core=path == "/api", api_version=f"apidiscovery.k8s.io/{aggregated}"
                )
                return _response(body, content_type=_DISCOVERY_TYPE.format(aggregated))
            if path == "/api":
                return _response(discovery.api_versions(raw.host))
            return _response(discovery.api_group_list(registry))
        if path == "/openapi/v3":
            return _response(openapi.index(registry))
        if path.startswith("/openapi/v3/"):
            gv = path.removeprefix("/openapi/v3/").split("/")
            group, version = (
                ("", gv[1])
                if gv[0] == "api" and len(gv) == 2
                else ((gv[1], gv[2]) if gv[0] == "apis" and len(gv) == 3 else ("", ""))
            )
            if version and registry.in_group_version(group, version):
                return _response(openapi.document(registry, group, version))
        parts = [p for p in path.split("/") if p]
        found: JSON | None = None
        if parts[:1] == ["apis"] and len(parts) == 2:
            found = discovery.api_group(registry, parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            found = discovery.resource_list(registry, parts[1], parts[2])
        elif parts == ["api", "v1"]:
            found = discovery.resource_list(registry, "", "v1")
        elif path == "/":
            found = {"paths": sorted(self._paths())}
        if found is None:
            raise errors.no_such_resource()
        return _response(found)

    def _paths(self) -> set[str]:
        paths = {
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/openapi/v3",
        }
        for group, versions in self.cluster.registry.groups():
            if group:
                paths.add(f"/apis/{group}")
                paths.update(f"/apis/{group}/{v}" for v in versions)
        return paths

    def _admin(self, method: str, path: str, body: bytes) -> web.Response:
        if path == "/_emulator/audit" and method == "GET":
            return _response({"items": list(self.audit.entries)})
        if path == "/_emulator/audit" and method == "DELETE":
            self.audit.clear()
            return _response({"items": []})
        if path == "/_emulator/faults" and method == "POST":
            fault = self.faults.add(_decode(body, ""))
            return _response({"fault": fault.verb, "pending": self.faults.listing()}, 201)
        if path == "/_emulator/faults" and method == "GET":
            return _response({"items": self.faults.listing()})
        if path == "/_emulator/faults" and method == "DELETE":
            self.faults.clear()
            return _response({"items": []})
        if path == "/_emulator/stats" and method == "GET":
            return _response(self.stats())
        if path == "/_emulator/watches/cut" and method == "POST":
            which = _decode(body, "") or {}
            if not isinstance(which, dict):
                raise errors.bad_request("name what to cut as {group, resource}, or send nothing")
            cut = self.cut_watches(which.get("group"), which.get("resource"))
            return _response({"cut": cut})
        raise errors.no_such_resource()

    def stats(self) -> JSON:
        """Sizes of everything that grows with use, for the bounded-memory checks."""
        store = self.cluster.store
        return {
            "requestLog": self.request_log_size,
            "history": len(store.history),
            "historyLimit": store.history.maxlen,
            "audit": len(self.audit.entries),
            "auditLimit": self.audit.entries.maxlen,
            "watchers": store.watchers,
            "objects": store.count(),
            "resourceVersion": store.revision,
        }

    # Resource paths

    def _target(self, route: routes.Route, verb: str) -> Resource:
        resource = self.cluster.resource(route.group, route.version, route.plural)
        if route.subresource and (route.subresource != "status" or not resource.status):
            raise errors.no_such_resource()
        if route.namespace is not None and not resource.namespaced:
            raise errors.no_such_resource()
        needs_namespace = verb in ("get", "create", "update", "patch", "delete")
        if resource.namespaced and route.namespace is None and needs_namespace:
            raise errors.no_such_resource()
        if route.subresource and verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
        if (verb == "create" and route.name) or (
            not route.subresource and verb not in resource.verbs
        ):
            raise errors.method_not_allowed()
        return resource

    async def _resource(
        self,
        raw: web.BaseRequest,
        route: routes.Route,
        call: Call,
        query: dict[str, str],
        body: bytes,
    ) -> web.StreamResponse:
        verb = call.verb
        resource = self._target(route, verb)
        cluster = self.cluster
        accept = raw.headers.get("Accept", "")
        dry_run = raw.query.getall("dryRun", [])
        namespace = route.namespace
        if verb == "watch":
            return await self._watch(raw, call, resource, namespace, route.name, query, accept)
        if verb == "list":
            items = cluster.select(resource, namespace, from_query(query, resource))
            return self._listing(resource, items, accept, query)
        if verb == "get":
            assert route.name is not None
            return self._object(
                resource, cluster.get(resource, namespace, route.name), accept, query
            )
        if verb == "deletecollection":
            removal = routes.delete_options(query, dry_run, _decode(body, "application/json"))
            deleted = cluster.delete_collection(
                resource, namespace, from_query(query, resource), removal
            )
            return self._listing(resource, deleted, "", query)
        if verb == "delete":
            assert route.name is not None
            removal = routes.delete_options(query, dry_run, _decode(body, "application/json"))
            return _response(cluster.delete(resource, namespace, route.name, removal))
        options = routes.write_options(query, dry_run)
        content_type = raw.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if verb == "create":
            outcome = cluster.create(resource, namespace, _decode(body, content_type), options)
            return self._written(outcome, 201)
        assert route.name is not None
        if verb == "update":
            document = _decode(body, content_type)
            outcome = cluster.update(
                resource, namespace, route.name, document, options, route.subresource
            )
            return self._written(outcome, 200)
        if verb == "patch":
            if content_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(content_type)
            outcome, created = cluster.patch(
                resource, namespace, route.name, content_type, body, options, route.subresource
            )
            return self._written(outcome, 201 if created else 200)
        raise errors.method_not_allowed()

    def _written(self, outcome: Outcome, status: int) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        for warning in outcome.warnings:
            headers.add("Warning", "299 - " + json.dumps(warning))
        return _response(outcome.obj, status, headers=headers)

    def _listing(
        self, resource: Resource, items: list[JSON], accept: str, query: dict[str, str]
    ) -> web.Response:
        revision = str(self.cluster.store.revision)
        form, version = routes.wanted_form(accept)
        if form == "Table":
            found = table.table(
                resource, items, revision, include=query.get("includeObject", "Metadata")
            )
            return _response(found, content_type=_meta_type("Table", version))
        if form == "PartialObjectMetadata":
            listed = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": {"resourceVersion": revision},
                "items": [table.partial_metadata(i) for i in items],
            }
            return _response(listed, content_type=_meta_type("PartialObjectMetadataList", version))
        return _response(
            {
                "apiVersion": resource.api_version,
                "kind": resource.list_kind,
                "metadata": {"resourceVersion": revision},
                "items": items,
            }
        )

    def _object(
        self, resource: Resource, obj: JSON, accept: str, query: dict[str, str]
    ) -> web.Response:
        form, version = routes.wanted_form(accept)
        if form == "Table":
            revision = obj["metadata"].get("resourceVersion", "")
            found = table.table(
                resource, [obj], revision, include=query.get("includeObject", "Metadata")
            )
            return _response(found, content_type=_meta_type("Table", version))
        if form == "PartialObjectMetadata":
            return _response(
                table.partial_metadata(obj),
                content_type=_meta_type("PartialObjectMetadata", version),
            )
        return _response(obj)

    async def _watch(
        self,
        raw: web.BaseRequest,
        call: Call,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        query: dict[str, str],
        accept: str,
    ) -> web.StreamResponse:
        form, version = routes.wanted_form(accept)
        include = query.get("includeObject", "Metadata")

        def render(obj: JSON, headers: bool) -> JSON:
            if form == "Table":
                revision = obj["metadata"].get("resourceVersion", "")
                return table.table(resource, [obj], revision, include=include, headers=headers)
            if form == "PartialObjectMetadata":
                return table.partial_metadata(obj)
            return obj

        timeout = query.get("timeoutSeconds")
        request = WatchRequest(
            resource=resource,
            namespace=namespace,
            selector=from_query(query, resource, name),
            since=parse_since(query.get("resourceVersion")),
            timeout=float(timeout) if timeout else None,
            bookmarks=routes.is_true(query.get("allowWatchBookmarks")),
            render=render,
        )
        content_type = _meta_type(form, version) if form else "application/json"
        response = web.StreamResponse(
            status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(raw)
        stream = Stream(
            self.cluster.store,
            request,
            lambda obj: self.cluster.show(resource, obj),
            self.bookmark_interval,
            raw.transport,
        )
        self.open_watches[stream] = call
        try:
            await stream.run(response.write)
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the client went away mid-stream (or was cut)
            pass
        finally:
            self.open_watches.pop(stream, None)
        return response


def _meta_type(form: str, version: str) -> str:
    return f"application/json;as={form};v={version or 'v1'};g=meta.k8s.io"


def _decode(body: bytes, content_type: str) -> Any:
    if not body.strip():
        return None
    if content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(body)
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"error decoding the request body: {exc}") from exc


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
