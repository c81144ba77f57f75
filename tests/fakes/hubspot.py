"""A local HubSpot (CRM v3 contacts, properties, account info) that the real hubspot-api-client can talk to.

Point the client at it with
    hubspot.Client.create(access_token=token, host=fake.url, base_url=fake.url)
(`host` is applied to every generated API's Configuration; `base_url` is what `Client.api_request` uses).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import re
import time
import uuid
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from ._server import FakeServer, Fault, RecordedRequest, json_response

BATCH_LIMIT = 100
WINDOW_SECONDS = 10.0
READ_ONLY = {"hs_object_id", "createdate", "lastmodifieddate"}
DEFAULT_READ_PROPERTIES = ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"]
PROPERTY_TYPES = {"string", "number", "date", "datetime", "enumeration", "bool", "phone_number"}
OBJECT_TYPES = {"contacts", "contact", "0-1"}


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _error(status: int, message: str, category: str, **extra) -> Response:
    """HubSpot's standard error body."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return json_response(body, status)


class HubSpotError(Exception):
    """Raised inside handlers to answer with HubSpot's error body."""

    def __init__(self, status: int, message: str, category: str, **extra):
        super().__init__(message)
        self.response = _error(status, message, category, **extra)


class FakeHubSpot(FakeServer):
    """HubSpot's CRM v3 behaviour (auth, batches, 207s, paging, rate limits) without the network."""

    def __init__(
        self,
        tokens=("test-token",),
        portal_id: int = 12345678,
        rate_limit_per_10s: int | None = None,
        daily_limit: int | None = None,
        send_retry_after: bool = True,
    ) -> None:
        super().__init__()
        self.portal_id = portal_id
        self.tokens: set[str] = set(tokens)
        self.rate_limit_per_10s = rate_limit_per_10s
        self.daily_limit = daily_limit
        self.send_retry_after = send_retry_after
        self._window: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._daily_used: collections.Counter = collections.Counter()
        self._ids = itertools.count(101)
        self.groups: dict[str, dict] = {}
        self.properties: dict[str, dict] = {}
        self.contacts: dict[str, dict] = {}
        self._seed()

    # ----- state helpers for tests
    def _seed(self) -> None:
        self.groups["contactinformation"] = {
            "name": "contactinformation",
            "label": "Contact information",
            "displayOrder": 0,
            "archived": False,
        }
        for name, label, ptype, ftype in (
            ("email", "Email", "string", "text"),
            ("firstname", "First Name", "string", "text"),
            ("lastname", "Last Name", "string", "text"),
            ("hs_object_id", "Record ID", "number", "number"),
            ("createdate", "Create Date", "datetime", "date"),
            ("lastmodifieddate", "Last Modified Date", "datetime", "date"),
        ):
            prop = self._property(
                {"name": name, "label": label, "type": ptype, "fieldType": ftype, "groupName": "contactinformation"}
            )
            prop["hubspotDefined"] = True
            prop["modificationMetadata"] = {
                "archivable": False,
                "readOnlyDefinition": True,
                "readOnlyValue": name in READ_ONLY,
            }
            self.properties[name] = prop

    def add_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def add_contact(self, email: str | None = None, **properties) -> str:
        """Creates a contact directly (no request recorded) and returns its id."""
        with self.lock:
            if email is not None:
                properties["email"] = email.lower()
            return self._create_contact({k: str(v) for k, v in properties.items()})["id"]

    def contact_by_email(self, email: str) -> dict | None:
        with self.lock:
            return self._find_by("email", email)

    def exhaust_daily(self, token: str = "test-token") -> None:
        """Makes the token's daily quota spent, so every call gets the DAILY 429."""
        with self.lock:
            if self.daily_limit is None:
                self.daily_limit = 250_000
            self._daily_used[token] = self.daily_limit

    def reset_limits(self) -> None:
        with self.lock:
            self._window.clear()
            self._daily_used.clear()

    # ----- objects in HubSpot's shapes
    def _property(self, data: dict) -> dict:
        now = _now_iso()
        return {
            "updatedAt": now,
            "createdAt": now,
            "name": data["name"],
            "label": data["label"],
            "type": data["type"],
            "fieldType": data["fieldType"],
            "description": data.get("description", ""),
            "groupName": data["groupName"],
            "options": [self._option(o, i) for i, o in enumerate(data.get("options") or [])],
            "displayOrder": data.get("displayOrder", -1),
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": bool(data.get("hasUniqueValue", False)),
            "hidden": bool(data.get("hidden", False)),
            "hubspotDefined": False,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
            "formField": bool(data.get("formField", False)),
            "archived": False,
        }

    @staticmethod
    def _option(o: dict, i: int) -> dict:
        if not isinstance(o, dict) or not o.get("label") or o.get("value") in (None, ""):
            raise HubSpotError(400, f"Invalid option {o!r}: label and value are required", "VALIDATION_ERROR")
        return {
            "label": o["label"],
            "value": str(o["value"]),
            "description": o.get("description", ""),
            "displayOrder": o.get("displayOrder", i),
            "hidden": bool(o.get("hidden", False)),
        }

    def _create_contact(self, props: dict) -> dict:
        cid = str(next(self._ids))
        now = _now_iso()
        stored = dict(props)
        stored.update({"hs_object_id": cid, "createdate": now, "lastmodifieddate": now})
        contact = {"id": cid, "properties": stored, "createdAt": now, "updatedAt": now, "archived": False}
        self.contacts[cid] = contact
        return contact

    def _find_by(self, id_property: str, value: str) -> dict | None:
        if id_property in ("hs_object_id", None, ""):
            return self.contacts.get(str(value))
        needle = str(value).lower() if id_property == "email" else str(value)
        for contact in self.contacts.values():
            have = contact["properties"].get(id_property)
            if have is not None and (have.lower() if id_property == "email" else have) == needle:
                return contact
        return None

    @staticmethod
    def _public(contact: dict, names: list[str] | None) -> dict:
        names = names or DEFAULT_READ_PROPERTIES
        wanted = set(names) | {"hs_object_id", "createdate", "lastmodifieddate"}
        props = {n: contact["properties"].get(n) for n in sorted(wanted)}
        return {
            "id": contact["id"],
            "properties": props,
            "createdAt": contact["createdAt"],
            "updatedAt": contact["updatedAt"],
            "archived": False,
        }

    def _validate_values(self, properties: dict) -> dict:
        """HubSpot rejects the whole request when any value is invalid; returns the values as strings."""
        problems, clean = [], {}
        for name, value in (properties or {}).items():
            prop = self.properties.get(name)
            text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
            if prop is None:
                problems.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            elif name in READ_ONLY:
                problems.append(
                    (name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
                )
            elif text == "":
                pass  # an empty string clears the value
            elif prop["type"] == "number" and not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text):
                problems.append((name, "INVALID_FLOAT", f"{text} was not a valid number."))
            elif prop["type"] in ("date", "datetime") and not _valid_date(text):
                problems.append((name, "INVALID_DATE", f"{text} was not a valid long or ISO 8601 date."))
            elif prop["type"] == "bool" and text not in ("true", "false"):
                problems.append((name, "INVALID_OPTION", f"{text} was not one of the allowed options: [true, false]"))
            elif prop["type"] == "enumeration":
                allowed = [o["value"] for o in prop["options"]]
                chosen = text.split(";") if prop["fieldType"] == "checkbox" else [text]
                bad = [c for c in chosen if c not in allowed]
                if bad:
                    problems.append((name, "INVALID_OPTION", f"{bad[0]} was not one of the allowed options: {allowed}"))
            clean[name] = text
        if problems:
            details = [
                {
                    "isValid": False,
                    "message": msg,
                    "error": code,
                    "name": name,
                    "localizedErrorMessage": msg,
                    "portalId": self.portal_id,
                }
                for name, code, msg in problems
            ]
            raise HubSpotError(
                400,
                "Property values were not valid: " + json.dumps(details),
                "VALIDATION_ERROR",
                errors=[
                    {"message": msg, "code": code, "context": {"propertyName": [name]}} for name, code, msg in problems
                ],
            )
        return clean

    # ----- transport concerns
    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.status == 429:
            return self._rate_limited(
                fault.options.get("policy", "TEN_SECONDLY_ROLLING"), fault.options.get("retry_after", 1)
            )
        if fault.status in (502, 503, 504):
            text = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}[
                fault.status
            ]
            return Response(
                f"<html><head><title>{text}</title></head><body><center><h1>{text}</h1></center></body></html>",
                status=fault.status,
                content_type="text/html",
            )
        return _error(
            fault.status,
            fault.options.get("message", "internal error"),
            fault.options.get("category", "INTERNAL_ERROR"),
        )

    def _rate_limited(self, policy: str, retry_after: float | None) -> Response:
        daily = policy == "DAILY"
        body = {
            "status": "error",
            "message": f"You have reached your {'daily' if daily else 'ten_secondly_rolling'} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
            "requestId": str(uuid.uuid4()),
        }
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.rate_limit_per_10s or 100),
            "X-HubSpot-RateLimit-Remaining": "0" if not daily else str(self.rate_limit_per_10s or 100),
        }
        if daily:
            headers.update(
                {
                    "X-HubSpot-RateLimit-Daily": str(self.daily_limit or 250_000),
                    "X-HubSpot-RateLimit-Daily-Remaining": "0",
                }
            )
        elif retry_after is not None and self.send_retry_after:
            headers["Retry-After"] = str(math.ceil(retry_after))
        return json_response(body, 429, headers)

    def _limit(self, token: str) -> tuple[Response | None, dict]:
        """Rolling ten-second window and daily quota per token, counted only for requests that are served."""
        now = time.monotonic()
        headers: dict[str, str] = {}
        with self.lock:
            if self.daily_limit is not None and self._daily_used[token] >= self.daily_limit:
                return self._rate_limited("DAILY", None), headers
            window = self._window[token]
            while window and now - window[0] >= WINDOW_SECONDS:
                window.popleft()
            if self.rate_limit_per_10s is not None:
                if len(window) >= self.rate_limit_per_10s:
                    return self._rate_limited(
                        "TEN_SECONDLY_ROLLING", max(1.0, WINDOW_SECONDS - (now - window[0]))
                    ), headers
                headers.update(
                    {
                        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
                        "X-HubSpot-RateLimit-Max": str(self.rate_limit_per_10s),
                        "X-HubSpot-RateLimit-Remaining": str(self.rate_limit_per_10s - len(window) - 1),
                    }
                )
            window.append(now)
            self._daily_used[token] += 1
            if self.daily_limit is not None:
                headers.update(
                    {
                        "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                        "X-HubSpot-RateLimit-Daily-Remaining": str(self.daily_limit - self._daily_used[token]),
                    }
                )
        return None, headers

    def handle(self, request: Request, record: RecordedRequest) -> Response:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        if not token:
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        with self.lock:
            known = token in self.tokens
        if not known:
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        limited, headers = self._limit(token)
        if limited is not None:
            return limited
        try:
            with self.lock:
                response = self._route(request, record.body if isinstance(record.body, (dict, list)) else {})
        except HubSpotError as exc:
            response = exc.response
        response.headers.update(headers)
        return response

    def _route(self, request: Request, body) -> Response:
        m, p = request.method, request.path.rstrip("/")
        if m == "GET" and p == "/account-info/v3/details":
            return json_response(
                {
                    "portalId": self.portal_id,
                    "accountType": "STANDARD",
                    "timeZone": "US/Eastern",
                    "companyCurrency": "USD",
                    "additionalCurrencies": [],
                    "utcOffset": "-05:00",
                    "utcOffsetMilliseconds": -18000000,
                    "uiDomain": "app.hubspot.com",
                    "dataHostingLocation": "na1",
                }
            )
        if match := re.fullmatch(r"/crm/v3/properties/([^/]+)(/.*)?", p):
            if match.group(1) not in OBJECT_TYPES:
                raise HubSpotError(400, f"Unable to infer object type from: {match.group(1)}", "VALIDATION_ERROR")
            return self._properties_route(m, match.group(2) or "", body)
        if p.startswith("/crm/v3/objects/contacts"):
            return self._contacts_route(m, p[len("/crm/v3/objects/contacts") :], body, request)
        return _error(404, f"No route for {m} {p}", "OBJECT_NOT_FOUND")

    # ----- properties and groups
    def _properties_route(self, m: str, rest: str, body) -> Response:
        if rest == "/groups":
            if m == "GET":
                return json_response({"results": list(self.groups.values())})
            if m == "POST":
                name = body.get("name")
                if not name or not body.get("label"):
                    raise HubSpotError(400, "name and label are required", "VALIDATION_ERROR")
                if name in self.groups:
                    raise HubSpotError(
                        409, f"A property group with name '{name}' already exists", "OBJECT_ALREADY_EXISTS"
                    )
                self.groups[name] = {
                    "name": name,
                    "label": body["label"],
                    "displayOrder": body.get("displayOrder", -1),
                    "archived": False,
                }
                return json_response(self.groups[name], 201)
        if match := re.fullmatch(r"/groups/([^/]+)", rest):
            group = self.groups.get(match.group(1))
            if group is None:
                raise HubSpotError(404, f"Unable to find property group with name {match.group(1)}", "OBJECT_NOT_FOUND")
            if m == "GET":
                return json_response(group)
        if rest == "":
            if m == "GET":
                return json_response({"results": list(self.properties.values())})
            if m == "POST":
                return self._create_property(body)
        if match := re.fullmatch(r"/([^/]+)", rest):
            name = match.group(1)
            prop = self.properties.get(name)
            if prop is None:
                raise HubSpotError(
                    404, f"Unable to find property with name '{name}' for object type 0-1", "OBJECT_NOT_FOUND"
                )
            if m == "GET":
                return json_response(prop)
            if m == "PATCH":
                return self._update_property(prop, body)
        raise HubSpotError(405, f"Method {m} not allowed", "VALIDATION_ERROR")

    def _create_property(self, body: dict) -> Response:
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise HubSpotError(400, f"Missing required fields: {missing}", "VALIDATION_ERROR")
        if body["type"] not in PROPERTY_TYPES:
            raise HubSpotError(400, f"Invalid property type {body['type']}", "VALIDATION_ERROR")
        if body["name"] in self.properties:
            raise HubSpotError(409, f"Property named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS")
        if body["groupName"] not in self.groups:
            raise HubSpotError(400, f"property group {body['groupName']} does not exist.", "VALIDATION_ERROR")
        prop = self._property(body)
        self._check_options(prop)
        self.properties[body["name"]] = prop
        return json_response(prop, 201)

    def _update_property(self, prop: dict, body: dict) -> Response:
        if prop.get("hubspotDefined"):
            raise HubSpotError(400, f"Cannot modify HubSpot defined property {prop['name']}", "VALIDATION_ERROR")
        if "groupName" in body and body["groupName"] not in self.groups:
            raise HubSpotError(400, f"property group {body['groupName']} does not exist.", "VALIDATION_ERROR")
        updated = dict(prop)
        for key in ("label", "description", "groupName", "fieldType", "type", "displayOrder", "hidden", "formField"):
            if key in body:
                updated[key] = body[key]
        if "options" in body:
            updated["options"] = [self._option(o, i) for i, o in enumerate(body["options"] or [])]
        self._check_options(updated)
        updated["updatedAt"] = _now_iso()
        prop.clear()
        prop.update(updated)
        return json_response(prop)

    @staticmethod
    def _check_options(prop: dict) -> None:
        values = [o["value"] for o in prop["options"]]
        if len(values) != len(set(values)):
            raise HubSpotError(400, f"Duplicate option values in {values}", "VALIDATION_ERROR")
        if prop["options"] and prop["type"] != "enumeration":
            raise HubSpotError(400, "Only enumeration properties can have options", "VALIDATION_ERROR")

    # ----- contacts
    def _contacts_route(self, m: str, rest: str, body, request: Request) -> Response:
        if rest == "" and m == "GET":
            return self._list_contacts(request)
        if rest == "/batch/read" and m == "POST":
            return self._batch_read(body)
        if rest == "/batch/update" and m == "POST":
            return self._batch_update(body)
        if rest == "/batch/create" and m == "POST":
            return self._batch_create(body)
        if rest == "/search" and m == "POST":
            return self._search(body)
        if (match := re.fullmatch(r"/([^/]+)", rest)) and m == "GET":
            contact = self._find_by(request.args.get("idProperty"), match.group(1))
            if contact is None:
                raise HubSpotError(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
            return json_response(self._public(contact, _list_arg(request, "properties")))
        raise HubSpotError(405, f"Method {m} not allowed", "VALIDATION_ERROR")

    @staticmethod
    def _inputs(body) -> list:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list):
            raise HubSpotError(400, "Invalid input JSON: inputs is required", "VALIDATION_ERROR")
        if len(inputs) > BATCH_LIMIT:
            raise HubSpotError(
                400,
                f"Too many inputs: {len(inputs)}. The maximum number of inputs is {BATCH_LIMIT}.",
                "VALIDATION_ERROR",
                context={"maxInputs": [str(BATCH_LIMIT)]},
            )
        return inputs

    @staticmethod
    def _batch(results: list, missing: list[str], started: str, status_ok: int) -> Response:
        """HubSpot's batch envelope: the success status, or 207 with one OBJECT_NOT_FOUND error listing missing ids."""
        body = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _now_iso()}
        if not missing:
            return json_response(body, status_ok)
        body["numErrors"] = 1
        body["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
                "errors": [],
                "links": {},
            }
        ]
        return json_response(body, 207)

    def _batch_read(self, body: dict) -> Response:
        started = _now_iso()
        inputs = self._inputs(body)
        id_property = body.get("idProperty") or "hs_object_id"
        if id_property not in self.properties:
            raise HubSpotError(400, f"Property {id_property} does not exist", "VALIDATION_ERROR")
        results, missing, seen = [], [], set()
        for item in inputs:
            key = str(item.get("id", ""))
            contact = self._find_by(id_property, key)
            if contact is None:
                missing.append(key)
            elif contact["id"] not in seen:
                seen.add(contact["id"])
                results.append(self._public(contact, body.get("properties")))
        return self._batch(results, missing, started, 200)

    def _batch_update(self, body: dict) -> Response:
        started = _now_iso()
        inputs = self._inputs(body)
        staged, missing = [], []
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("properties"), dict):
                raise HubSpotError(400, "Invalid input JSON: each input needs id and properties", "VALIDATION_ERROR")
            values = self._validate_values(item["properties"])  # one invalid value fails the whole batch, as in HubSpot
            contact = self._find_by(item.get("idProperty"), str(item["id"]))
            if contact is None:
                missing.append(str(item["id"]))
            else:
                staged.append((contact, values))
        results = []
        for contact, values in staged:
            now = _now_iso()
            contact["properties"].update(values)
            contact["properties"]["lastmodifieddate"] = now
            contact["updatedAt"] = now
            results.append(self._public(contact, list(values)))
        return self._batch(results, missing, started, 200)

    def _batch_create(self, body: dict) -> Response:
        started = _now_iso()
        inputs = self._inputs(body)
        staged = []
        for item in inputs:
            values = self._validate_values(item.get("properties") or {})
            email = values.get("email", "").lower()
            if email:
                values["email"] = email
                existing = self._find_by("email", email) or next((v for v in staged if v.get("email") == email), None)
                if existing is not None:
                    raise HubSpotError(
                        409, f"Contact already exists. Existing ID: {existing.get('id', '')}", "CONFLICT"
                    )
            staged.append(values)
        results = [self._public(self._create_contact(v), list(v)) for v in staged]
        return self._batch(results, [], started, 201)

    def _page(self, contacts: list[dict], after: str | None, limit: int, names, link: str) -> dict:
        start = int(after) if after and after.isdigit() else 0
        chosen = [c for c in contacts if int(c["id"]) >= start][:limit]
        rest = [c for c in contacts if int(c["id"]) > int(chosen[-1]["id"])] if chosen else []
        page = {"results": [self._public(c, names) for c in chosen]}
        if rest:
            nxt = str(int(chosen[-1]["id"]) + 1)
            page["paging"] = {"next": {"after": nxt, "link": f"{self.url}{link}?after={nxt}"}}
        return page

    def _list_contacts(self, request: Request) -> Response:
        limit = min(max(int(request.args.get("limit", 10)), 1), 100)
        ordered = sorted(self.contacts.values(), key=lambda c: int(c["id"]))
        return json_response(
            self._page(
                ordered, request.args.get("after"), limit, _list_arg(request, "properties"), "/crm/v3/objects/contacts"
            )
        )

    def _search(self, body: dict) -> Response:
        groups = body.get("filterGroups") or []

        def keep(contact: dict) -> bool:
            return not groups or any(all(_filter(contact, f) for f in g.get("filters", [])) for g in groups)

        limit = min(max(int(body.get("limit") or 10), 1), 200)
        ordered = [c for c in sorted(self.contacts.values(), key=lambda c: int(c["id"])) if keep(c)]
        page = self._page(
            ordered, str(body.get("after") or ""), limit, body.get("properties"), "/crm/v3/objects/contacts/search"
        )
        page["total"] = len(ordered)
        return json_response(page)


def _list_arg(request: Request, name: str) -> list[str] | None:
    """The client sends repeated query params (collection format multi); browsers send comma lists."""
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
    return values or None


def _valid_date(text: str) -> bool:
    if text.isdigit():
        return True
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _filter(contact: dict, f: dict) -> bool:
    have = contact["properties"].get(f.get("propertyName"))
    op = f.get("operator", "EQ")
    norm = lambda v: None if v is None else str(v).lower()
    if op == "HAS_PROPERTY":
        return have not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return have in (None, "")
    if op == "EQ":
        return norm(have) == norm(f.get("value"))
    if op == "NEQ":
        return norm(have) != norm(f.get("value"))
    if op == "IN":
        return norm(have) in {norm(v) for v in f.get("values", [])}
    raise HubSpotError(400, f"Unsupported operator in fake: {op}", "VALIDATION_ERROR")
