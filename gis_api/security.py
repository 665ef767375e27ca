"""Who is calling, in one place: every route that needs to know asks :func:`principal`.

``Authorization: Bearer <token>`` is either ``TWIN_ADMIN_TOKEN`` (the operator's break-glass
token: role admin) or an access token from ``POST /auth/token``. No header: the anonymous
principal with role ``public``. A wrong or expired token is a 401, never anonymous.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Path, Request

from twin.catalog import LAYERS, LayerSpec, get_layer
from twin.errors import Forbidden, InvalidParameter, Unauthorized
from twin.security import audit
from twin.security.accounts import Accounts, Principal
from twin.security.policy import Policy


def accounts(request: Request) -> Accounts:
    acc = getattr(request.app.state, "accounts", None)
    if acc is None:
        acc = request.app.state.accounts = Accounts(request.app.state.store, request.app.state.settings)
    return acc


AccountsDep = Annotated[Accounts, Depends(accounts)]


def client_address(request: Request) -> str | None:
    """The caller's address as the rate limiter sees it (X-Forwarded-For only from TWIN_TRUSTED_PROXIES)."""
    if request.client is None:
        return None
    from gis_api.guard import client_ip

    return client_ip(request.scope, getattr(request.app.state, "trusted_proxies", []))


def principal(request: Request) -> Principal:
    """The caller's principal (cached on the request)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization") or ""
    if not header and request.scope.get("type") == "websocket":
        # browsers cannot set headers on a WebSocket: the token may come as ?access_token=
        query_token = request.query_params.get("access_token")
        header = f"Bearer {query_token}" if query_token else ""
    if not header:
        found = anonymous(request)
    else:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        admin = request.app.state.settings.admin_token
        if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
            found = Principal("admin-token", frozenset({"admin"}))
        else:
            found = accounts(request).principal_from_token(token)
    request.state.principal = found
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def require_role(*roles: str):  # noqa: ANN201 - a FastAPI dependency
    """A dependency refusing callers that have none of ``roles`` (admin always passes)."""

    def check(who: PrincipalDep) -> Principal:
        if who.is_admin or who.roles & set(roles):
            return who
        if who.subject == "anonymous":
            raise Unauthorized("log in first (POST /auth/token)")
        raise Forbidden(f"needs one of the roles {sorted(roles)}", detail={"principal": who.subject})

    return check


AdminDep = Annotated[Principal, Depends(require_role("admin"))]


# --- layers and fields: the one place every service asks -----------------------------------

def anonymous(request: Request) -> Principal:
    return Principal("anonymous", frozenset({request.app.state.settings.anonymous_role}))


def policy(request: Request) -> Policy:
    return Policy.from_file(request.app.state.settings.roles_file)


def _deny(request: Request, who: Principal, layer: str, permission: str) -> None:
    try:
        audit.record(request.app.state.store, who.subject, f"deny.{permission}", "denied",
                     target=f"{getattr(request, 'method', 'WS')} {request.url.path}"[:256],
                     client=client_address(request),
                     detail={"layer": layer})
    except Exception:  # noqa: BLE001 - an unreachable audit table must not turn a 403 into a 500
        pass
    if who.subject == "anonymous":
        raise Unauthorized(f"layer {layer!r} is not public: log in (POST /auth/token)",
                           detail={"layer": layer, "permission": permission})
    raise Forbidden(f"your roles may not {permission} layer {layer!r}",
                    detail={"layer": layer, "permission": permission, "roles": sorted(who.roles)})


def authorize(request: Request, layer: str, permission: str = "read") -> Principal:
    """The caller, if its roles allow ``permission`` on ``layer``; else 401 (anonymous) or 403,
    recorded in the audit log."""
    who = principal(request)
    if not policy(request).can(who.roles, layer, permission):
        _deny(request, who, layer, permission)
    return who


def hidden_fields(request: Request, layer: str) -> frozenset[str]:
    """Fields of ``layer`` the caller may not see."""
    return policy(request).hidden(principal(request).roles, layer)


def readable_layers(request: Request, layer_ids: Iterable[str]) -> list[str]:
    return policy(request).readable(principal(request).roles, layer_ids)


def readable_layer(
    request: Request,
    layer: Annotated[str, Path(description="Layer id", json_schema_extra={"enum": list(LAYERS)})],
) -> LayerSpec:
    """A path's layer, known and readable by the caller."""
    spec = get_layer(layer)
    authorize(request, spec.id, "read")
    return spec


ReadableLayerDep = Annotated[LayerSpec, Depends(readable_layer)]


def tile_layers(request: Request, specs: Iterable[LayerSpec]) -> tuple[LayerSpec, ...]:
    """The layers of a (composite) tile the caller may have: readable, and with no hidden field
    among the attributes tiles carry (such a layer is left out rather than served with a
    field the caller may not see). None left: 401/403."""
    specs = tuple(specs)
    pol, who = policy(request), principal(request)
    keep = tuple(s for s in specs if pol.can(who.roles, s.id, "read")
                 and not (pol.hidden(who.roles, s.id) & set(s.tile_properties)))
    if not keep and specs:
        _deny(request, who, ",".join(s.id for s in specs), "read")
    return keep


def content_layers(request: Request, names: Iterable[str], carried: dict[str, Iterable[str]],
                   always: Iterable[str] = ()) -> tuple[str, ...]:
    """As :func:`tile_layers` for other content (3D scenes, …): ``carried`` says which fields each
    layer's content holds; names in ``always`` (e.g. terrain) are not layers and always pass."""
    names = tuple(names)
    pol, who = policy(request), principal(request)
    free = set(always)
    keep = tuple(n for n in names if n in free or (
        pol.can(who.roles, n, "read") and not (pol.hidden(who.roles, n) & set(carried.get(n, ())))))
    if names and not [n for n in keep if n not in free] and [n for n in names if n not in free]:
        _deny(request, who, ",".join(n for n in names if n not in free), "read")
    return keep


def refuse_hidden(names: Iterable[str], hidden: frozenset[str], layer: str, what: str) -> None:
    """A hidden field named in a request is answered as if it did not exist."""
    bad = sorted(set(names) & hidden)
    if bad:
        raise InvalidParameter(f"{what}: unknown property {bad[0]!r} for layer {layer!r}")


def cql_properties(tree: Any) -> set[str]:
    """Every property a parsed CQL2 tree names (iterative: trees can be deep)."""
    from twin.cql.tree import Op, Prop

    out: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Prop):
            out.add(node.name)
        elif isinstance(node, Op):
            stack.extend(node.args)
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return out


def layer_permission(layer: str, permission: str):  # noqa: ANN201 - a FastAPI dependency
    """A route dependency: the caller may ``permission`` the layer ``layer``."""

    def check(request: Request) -> Principal:
        return authorize(request, layer, permission)

    return check


def field_visible(request: Request, layer: str, field: str) -> None:
    """Refuse (403/401) a caller from whom ``field`` of ``layer`` is hidden, e.g. a camera's video."""
    who = authorize(request, layer, "read")
    if field in hidden_fields(request, layer):
        _deny(request, who, f"{layer}.{field}", "read")


def stream_layers(request: Request, names: list[str] | None, all_names: Iterable[str]) -> list[str]:
    """Live layers a stream may carry for the caller (``live`` permission): the default (None)
    becomes the permitted ones; a named layer the caller may not stream is a 401/403."""
    if names is None:
        pol, who = policy(request), principal(request)
        allowed = [n for n in all_names if pol.can(who.roles, n, "live")]
        if not allowed:
            _deny(request, who, ",".join(all_names), "live")
        return allowed
    for n in names:
        authorize(request, n, "live")
    return names
