"""HubSpot through hubspot-api-client: token check and LeadPulse's contact properties (created idempotently)."""

from __future__ import annotations

import json

import hubspot
import requests
from hubspot.crm import contacts as hc
from hubspot.crm.properties import ApiException, OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate

from integrations.timeouts import timed_out

OBJECT_TYPE = "contacts"
GROUP = "leadpulse"
TIMEOUT = 10  # seconds per HubSpot call; a hung HubSpot must not hold a request or a worker


BATCH = 100  # HubSpot's limit of inputs per batch call


class HubSpotError(Exception):
    """HubSpot refused or failed; status and HubSpot's own message, for the caller to report."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str | None = None,
        retry_after: float | None = None,
        policy: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.category = status, message, category
        self.retry_after, self.policy = retry_after, policy

    @property
    def transient(self) -> bool:
        """Worth retrying later: rate limits, HubSpot's 5xx, and network failures (reported as 502)."""
        return self.status == 429 or self.status >= 500


class HubSpotAuthError(HubSpotError):
    pass


def _error(status: int, body: str | None, headers=None) -> HubSpotError:
    try:
        data = json.loads(body or "{}")
    except ValueError:
        data = {}
    message = data.get("message") or f"HubSpot answered {status}"
    cls = HubSpotAuthError if status in (401, 403) else HubSpotError
    retry_after = None
    if headers and headers.get("Retry-After"):
        try:
            retry_after = float(headers["Retry-After"])
        except ValueError:
            retry_after = None
    return cls(status, message, data.get("category"), retry_after, data.get("policyName"))


def options_for(level_names: list[str]) -> list[OptionInput]:
    return [OptionInput(label=n, value=n, display_order=i, hidden=False) for i, n in enumerate(level_names)]


def property_specs(level_names: list[str]) -> list[dict]:
    """The four contact properties the README promises (names are a contract with sales' HubSpot views); engagement_level's options follow the level table."""
    return [
        dict(name="engagement_score", label="Engagement score", type="number", field_type="number"),
        dict(
            name="engagement_level",
            label="Engagement level",
            type="enumeration",
            field_type="select",
            options=options_for(level_names),
        ),
        dict(
            name="engagement_level_changed_at", label="Engagement level changed at", type="datetime", field_type="date"
        ),
        dict(name="engagement_top_drivers", label="Why this engagement score", type="string", field_type="textarea"),
    ]


ENSURE_PROPERTIES_CALLS = 7  # at most: the group, four properties, and a read and an update of the level options


class HubSpotAdapter:
    def __init__(self, token: str, api_base: str):
        self.token, self.api_base = token, api_base.rstrip("/")
        self.client = hubspot.Client.create(access_token=token, host=self.api_base, base_url=self.api_base)

    def portal_id(self) -> int:
        """The cheap call that proves a token works (the client has no account-info API of its own)."""
        try:
            resp = requests.get(
                f"{self.api_base}/account-info/v3/details",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise HubSpotError(502, f"HubSpot unreachable: {exc.__class__.__name__}") from exc
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.text)
        return int(resp.json()["portalId"])

    def ensure_properties(self, level_names: list[str], keep: set[str] = frozenset()) -> None:
        """Group and properties exist with current options; safe to run any number of times.

        keep: names other OUs use; such options already in this portal stay (an OU sharing the portal needs them).
        """
        props = self.client.crm.properties
        self._ignore_conflict(
            lambda: props.groups_api.create(
                OBJECT_TYPE,
                PropertyGroupCreate(name=GROUP, label="LeadPulse", display_order=-1),
                _request_timeout=TIMEOUT,
            )
        )
        for spec in property_specs(level_names):
            create = PropertyCreate(group_name=GROUP, **spec)
            created = self._ignore_conflict(
                lambda create=create: props.core_api.create(OBJECT_TYPE, create, _request_timeout=TIMEOUT)
            )
            if not created and spec["type"] == "enumeration":
                current = self._call(
                    lambda spec=spec: props.core_api.get_by_name(OBJECT_TYPE, spec["name"], _request_timeout=TIMEOUT)
                )
                shared = [o.value for o in current.options or [] if o.value in keep and o.value not in level_names]
                options = options_for(level_names + shared)
                self._call(
                    lambda options=options, name=spec["name"]: props.core_api.update(
                        OBJECT_TYPE, name, PropertyUpdate(options=options), _request_timeout=TIMEOUT
                    )
                )

    def ids_by_email(self, emails: list[str]) -> dict[str, str]:
        """HubSpot contact id per email (one batch read; emails HubSpot does not know are simply absent)."""
        resp = self._call(
            lambda: self.client.crm.contacts.batch_api.read(
                hc.BatchReadInputSimplePublicObjectId(
                    id_property="email",
                    properties=["email"],
                    properties_with_history=[],
                    inputs=[hc.SimplePublicObjectId(id=e) for e in emails],
                ),
                _request_timeout=TIMEOUT,
            )
        )
        return {(r.properties.get("email") or "").lower(): r.id for r in resp.results or []}

    def emails_by_id(self, ids: list[str]) -> dict[str, str]:
        """Email per HubSpot contact id (contacts without one, or unknown, are absent)."""
        resp = self._call(
            lambda: self.client.crm.contacts.batch_api.read(
                hc.BatchReadInputSimplePublicObjectId(
                    properties=["email"],
                    properties_with_history=[],
                    inputs=[hc.SimplePublicObjectId(id=i) for i in ids],
                ),
                _request_timeout=TIMEOUT,
            )
        )
        return {
            r.id: (r.properties.get("email") or "").lower() for r in resp.results or [] if r.properties.get("email")
        }

    def create_contacts(self, rows: list[dict]) -> dict[str, str]:
        """Create contacts (properties include email); returns id per email."""
        resp = self._call(
            lambda: self.client.crm.contacts.batch_api.create(
                hc.BatchInputSimplePublicObjectBatchInputForCreate(
                    inputs=[hc.SimplePublicObjectBatchInputForCreate(properties=p, associations=[]) for p in rows]
                ),
                _request_timeout=TIMEOUT,
            )
        )
        return {(r.properties.get("email") or "").lower(): r.id for r in resp.results or []}

    def update_contacts(self, updates: dict[str, dict]) -> dict[str, str]:
        """Batch update {contact id: properties}; returns {contact id: HubSpot's error} for the ones refused (207)."""
        resp = self._call(
            lambda: self.client.crm.contacts.batch_api.update(
                hc.BatchInputSimplePublicObjectBatchInput(
                    inputs=[hc.SimplePublicObjectBatchInput(id=cid, properties=props) for cid, props in updates.items()]
                ),
                _request_timeout=TIMEOUT,
            )
        )
        failed: dict[str, str] = {}
        for err in getattr(resp, "errors", None) or []:
            for cid in (err.context or {}).get("ids", []):
                failed[str(cid)] = err.message
        return failed

    def _ignore_conflict(self, call) -> bool:
        """True if created, False if it already existed (HubSpot's 409)."""
        try:
            self._call(call)
            return True
        except HubSpotError as exc:
            if exc.status == 409:
                return False
            raise

    @staticmethod
    def _call(call):
        try:
            return call()
        except (ApiException, hc.ApiException) as exc:
            raise _error(exc.status, exc.body, exc.headers) from exc
        except Exception as exc:  # urllib3 timeouts and connection errors are not ApiExceptions
            if isinstance(exc, HubSpotError) or timed_out(exc):
                raise
            raise HubSpotError(502, f"HubSpot unreachable: {exc.__class__.__name__}") from exc
