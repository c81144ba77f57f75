"""Which limits a request is held to, the 429 past one, and the RateLimit headers (docs/rate-limits.md).

Every request is counted against its source address before its credentials are looked at (a flood of wrong ones
is limited like any other request), then an authenticated one against its caller, the API credential or the
member: the `ingest` allowance on the ingest routes, `api` on every other, and a write key also per visitor
address. POST /ingest's lane below Flask takes address and credential in one Redis call. A webhook delivery is counted against its source once the source is known to be the sender
(limit_source), a sign-in attempt against its address (webapp/services/login.py). While Redis cannot answer,
requests go on unlimited: ingest must keep accepting events, which are safe in PostgreSQL, and a limit is not worth
an outage; sign-in alone refuses then (see webapp/services/login.py).
"""

from __future__ import annotations

import ipaddress
import logging

from flask import g, request

from integrations.request_limits import Decision, Limit, seconds
from webapp import metrics
from webapp.app_state import state
from webapp.auth import Principal
from webapp.errors import ApiError

log = logging.getLogger("leadpulse.limits")

ADDRESS, INGEST, API, WEBHOOK, LOGIN, VISITOR, UNIT = "address", "ingest", "api", "webhook", "login", "visitor", "unit"
INGEST_BLUEPRINTS = frozenset(("ingest", "imports"))  # their routes take the `ingest` allowance, the rest `api`
DECIDED = "leadpulse.rate_limit"  # environ: the lane already took this request's limits (its decision, or None)
ADDRESS_SEEN = "leadpulse.address"  # environ: the request's source address, worked out once


def client_address(environ, trusted_proxies: int) -> str:
    """The caller's address: the peer's, unless `trusted_proxies` proxies in front each append the address they saw to
    X-Forwarded-For; then the one the outermost of them saw. Entries left of it are whatever the client sent, never
    believed; a header with fewer entries than proxies came around them, and the peer's address counts."""
    seen = environ.get(ADDRESS_SEEN)
    if seen is not None:
        return seen
    address = environ.get("REMOTE_ADDR") or "unknown"
    if trusted_proxies > 0:
        hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(hops) >= trusted_proxies and hops[-trusted_proxies]:
            address = hops[-trusted_proxies]
    environ[ADDRESS_SEEN] = address = _canonical(address)
    return address


def _canonical(address: str) -> str:
    """One spelling per address: no port (some proxies append "1.2.3.4:5678" or "[2001:db8::1]:443", and a port per
    connection would give each its own allowance), an IPv4-mapped IPv6 address as IPv4, IPv6 by its /64."""
    if address.startswith("["):
        address = address[1 : address.find("]")]
    elif address.count(":") == 1:
        address = address.partition(":")[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]  # not an address (a proxy's "unknown"): counted as written, bounded
    if ip.version == 6:
        return str(ip.ipv4_mapped or ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def caller(p: Principal) -> tuple[str, str]:
    """(what the caller is limited by, its key): every API credential, whatever its scopes, by itself; a member by
    itself across its OUs. A new kind of caller needs its own key here, or it shares its OU's."""
    if p.credential_id is not None:
        return "credential", f"credential:{p.credential_id}"
    if p.member_id is not None:
        return "member", f"member:{p.member_id}"
    return "unit", f"unit:{p.unit_id}"


def caller_limit(settings, p: Principal, name: str) -> Limit:
    return Limit(name, caller(p)[1], settings.rate_limit_ingest if name == INGEST else settings.rate_limit_api)


def address_limit(settings, address: str, name: str = ADDRESS) -> Limit:
    return Limit(
        name, f"address:{address}", settings.rate_limit_login if name == LOGIN else settings.rate_limit_address
    )


def unit_limit(settings, unit_id: str) -> Limit:
    """An OU's event quota: every event it is sent, by any caller or source, so one tenant's flood (a huge import, a
    runaway tracker) cannot fill the scoring queue that every tenant shares."""
    return Limit(UNIT, f"unit:{unit_id}", settings.rate_limit_unit)


def enforce(app_state, limits: list[Limit], cost: int = 1) -> Decision | None:
    """Take the limits; past one, the 429 (observe mode: logged, let through). None: unchecked (off, no Redis)."""
    mode = app_state.settings.rate_limit_mode
    if mode == "off":
        return None
    decision = app_state.limiter.take(limits, cost)
    if decision is None or decision.allowed:
        return decision
    metrics.RATE_LIMITED.labels(limit=decision.refused.name, mode=mode).inc()
    if mode == "observe":
        log.info("over the %s limit (observe mode, not refused): %s", decision.refused.name, decision.refused.caller)
        return decision
    raise too_many(decision)


def too_many(decision: Decision) -> ApiError:
    wait, rate = seconds(decision.retry_after), decision.refused.rate
    what = (
        f"this OU's event quota is {rate.count} events"
        if decision.refused.name == UNIT
        else f"too many requests: the {decision.refused.name} limit is {rate.count}"
    )
    return ApiError(
        429,
        "rate_limited",
        f"{what} per {rate.seconds} s; retry in {wait} s",
        {"limit": [decision.refused.name]},
        headers={"Retry-After": str(wait), **headers(decision)},
    )


def headers(decision: Decision | None) -> dict[str, str]:
    """RateLimit-* (the IETF draft's fields) of the limit the caller should pace itself by."""
    if decision is None:
        return {}
    standing = decision.binding()
    rate = standing.limit.rate
    return {
        "RateLimit-Limit": str(rate.count),
        "RateLimit-Remaining": str(standing.remaining),
        "RateLimit-Reset": str(seconds(standing.reset)),
        "RateLimit-Policy": f"{rate.count};w={rate.seconds}",
    }


def limit_address() -> None:
    """before_request, first of all: the source address's allowance, before anything is looked up for the request."""
    app_state = state()
    if DECIDED in request.environ:
        return
    address = client_address(request.environ, app_state.settings.trusted_proxies)
    g.rate_limit = enforce(app_state, [address_limit(app_state.settings, address)])


def limit_caller() -> None:
    """before_request, right after auth.load_principal: the credential's or member's allowance for this route."""
    p = g.get("principal")
    if p is None or DECIDED in request.environ:
        return
    app_state = state()
    settings = app_state.settings
    limits = [caller_limit(settings, p, INGEST if request.blueprint in INGEST_BLUEPRINTS else API)]
    if p.is_write_key:  # public, in every visitor's page: one visitor must not spend the whole site's allowance
        address = client_address(request.environ, settings.trusted_proxies)
        limits.append(Limit(VISITOR, f"{caller(p)[1]}:address:{address}", settings.rate_limit_visitor))
    decided = enforce(app_state, limits)
    g.rate_limit = min(
        (d for d in (decided, g.get("rate_limit")) if d is not None),
        key=lambda d: d.binding().remaining,
        default=None,
    )  # the headers show the tighter of the two, as the lane's one call does


def add_headers(response):
    """after_request: where the caller stands (a 429 already carries the standing that refused it)."""
    for name, value in headers(g.get("rate_limit") or request.environ.get(DECIDED)).items():
        response.headers.setdefault(name, value)
    return response


def lane_limits(app_state, environ, principal: Principal) -> Decision | None:
    """POST /ingest's lane: the address's and the credential's allowances and the OU's quota for its one event in one
    Redis call; raises the 429. Flask, should the lane hand the request on, does not count it again."""
    address = client_address(environ, app_state.settings.trusted_proxies)
    settings = app_state.settings
    decision = enforce(
        app_state,
        [
            address_limit(settings, address),
            caller_limit(settings, principal, INGEST),
            unit_limit(settings, principal.unit_id),
        ],
    )
    environ[DECIDED] = decision
    return decision


def limit_login(app_state, address: str) -> None:
    """A sign-in attempt from this address (any email): the strict `login` allowance, on top of `address`'s."""
    enforce(app_state, [address_limit(app_state.settings, address, LOGIN)])


def lane_took_quota() -> bool:
    """POST /ingest's lane, handing its request on to Flask, has taken its one event from the OU's quota already."""
    return DECIDED in request.environ


def limit_unit(app_state, unit_id: str, events: int) -> None:
    """Events about to be stored for an OU take from its quota, all of them or none (the lane took its one already)."""
    if events:
        enforce(app_state, [unit_limit(app_state.settings, unit_id)], cost=events)


def limit_source(app_state, source_id: str) -> None:
    """A webhook delivery its source sent (verified, or its write key): the source's allowance."""
    enforce(app_state, [Limit(WEBHOOK, f"source:{source_id}", app_state.settings.rate_limit_webhook)])


def request_address() -> str:
    """This request's source address (as the limits count it)."""
    return client_address(request.environ, state().settings.trusted_proxies)


def describe(p: Principal) -> dict:
    """GET /me/rate-limit: the limits the caller is held to and where it stands under each (read, not taken)."""
    app_state = state()
    settings, mode = app_state.settings, app_state.settings.rate_limit_mode
    key_by, key = caller(p)
    address = request_address()
    limits = [
        caller_limit(settings, p, API),
        caller_limit(settings, p, INGEST),
        address_limit(settings, address),
        address_limit(settings, address, LOGIN),
    ]
    if p.unit_id:  # a member with no OU chosen sends events nowhere
        limits.append(unit_limit(settings, p.unit_id))
    read = app_state.limiter.take(limits, cost=0) if mode != "off" else None
    standings = {s.limit.name: s for s in read.standings} if read else {}

    def shown(limit: Limit) -> dict:
        standing = standings.get(limit.name)
        return {
            "key": limit.caller,
            "limit": limit.rate.count,
            "window_seconds": limit.rate.seconds,
            "rps": limit.rate.count / limit.rate.seconds,
            "burst": limit.rate.count,
            "remaining": standing.remaining if standing else None,
            "reset_seconds": standing.reset if standing else None,
        }

    headline = shown(limits[0])
    return {
        "enabled": mode != "off",
        "mode": mode,
        "key_by": key_by,
        "key": key,
        "rps": headline["rps"],
        "burst": headline["burst"],
        "stage": API,
        "redis_available": read is not None if mode != "off" else None,
        "limits": {limit.name: shown(limit) for limit in limits},
    }
