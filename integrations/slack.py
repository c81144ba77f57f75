"""Slack Web API through slack-sdk, with every failure sorted into rate-limited, transient or permanent."""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

# Slack answers these with ok=false while the call itself may succeed later.
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
PAGE_LIMIT = 200
METADATA_EVENT = "leadpulse_alert"
MAX_PAGES = 100  # 20,000 channels or users: far beyond a workspace anyone picks a target from by hand


@dataclass
class SlackError(Exception):
    error: str  # Slack's error code, or what went wrong on the way
    status: int | None = None
    retry_after: float | None = None
    connection: bool = False  # never reached Slack, or no answer

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or self.error == "ratelimited"

    @property
    def transient(self) -> bool:
        return self.rate_limited or self.connection or self.error in TRANSIENT_ERRORS or (self.status or 0) >= 500

    @property
    def may_have_landed(self) -> bool:
        """No answer, or a gateway's 5xx: the call may have taken effect on Slack's side."""
        return self.connection or (self.status or 0) >= 500

    def __str__(self) -> str:
        return self.error


def _sorted_error(exc: Exception) -> SlackError:
    if isinstance(exc, SlackApiError):
        resp = exc.response
        data = resp.data if isinstance(resp.data, dict) else {}
        status = resp.status_code
        error = data.get("error") or ""
        if not error or " " in error:  # not a Slack error code: slack-sdk's note about an HTML error page
            error = f"HTTP {status}"
        retry_after = None
        if status == 429 or error == "ratelimited":
            try:
                retry_after = max(1.0, float(resp.headers.get("Retry-After") or resp.headers.get("retry-after") or 1))
            except ValueError:
                retry_after = 1.0
        return SlackError(error, status, retry_after)
    if isinstance(exc, urllib.error.HTTPError):
        return SlackError(f"HTTP {exc.code}", exc.code)
    return SlackError(f"connection failed: {exc.__class__.__name__}", connection=True)


class SlackAdapter:
    """One token against one API base (SLACK_API_BASE); callers get data or a SlackError."""

    def __init__(self, token: str | None, base_url: str, timeout: float = 10):
        self.client = WebClient(token=token, base_url=base_url, timeout=int(timeout))

    def _call(self, method: str, **params) -> dict:
        try:
            return self.client.api_call(method, params=params).data
        except (TimeoutError, SlackApiError, SlackRequestError, urllib.error.URLError, ConnectionError, OSError) as exc:
            raise _sorted_error(exc) from exc

    def auth_test(self) -> dict:
        return self._call("auth.test")

    def post(
        self,
        channel: str,
        text: str,
        blocks: list | None = None,
        attachments: list | None = None,
        key: str | None = None,
    ) -> dict:
        """key travels as message metadata, so a post that may have gone out can be found again (find_posted)."""
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": key}} if key else None
        try:
            resp = self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                attachments=attachments,
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
            )
        except (TimeoutError, SlackApiError, SlackRequestError, urllib.error.URLError, ConnectionError, OSError) as exc:
            raise _sorted_error(exc) from exc
        return {"channel": resp["channel"], "ts": resp["ts"]}

    def find_posted(self, channel: str, key: str, oldest: float) -> str | None:
        """ts of our message carrying this key in the channel since oldest (epoch seconds), else None."""
        cursor = None
        for _ in range(5):  # 1,000 messages back at most: the window is a crashed job's retry, minutes
            page = self._call(
                "conversations.history",
                channel=channel,
                oldest=str(oldest),
                limit=PAGE_LIMIT,
                include_all_metadata="true",
                **({"cursor": cursor} if cursor else {}),
            )
            for message in page.get("messages") or []:
                meta = message.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("key") == key:
                    return message.get("ts")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def channel_for(self, kind: str, target_id: str) -> str:
        """A user target is a DM: open it first (conversations.open), as Slack recommends."""
        if kind == "user":
            return self._call("conversations.open", users=target_id)["channel"]["id"]
        return target_id

    def check_target(self, kind: str, target_id: str) -> dict:
        """The target exists and the bot can post there; raises SlackError naming the problem otherwise."""
        if kind == "user":
            user = self._call("users.info", user=target_id)["user"]
            if user.get("deleted") or user.get("is_bot"):
                raise SlackError("cannot_dm_user")
            return {"kind": "user", "id": user["id"], "name": user.get("name")}
        channel = self._call("conversations.info", channel=target_id)["channel"]
        if channel.get("is_archived"):
            raise SlackError("is_archived")
        if not channel.get("is_member"):
            raise SlackError("not_in_channel")
        return {"kind": "channel", "id": channel["id"], "name": channel.get("name")}

    def list_all(self, method: str, key: str, **params) -> list[dict]:
        """Every page of a cursor-paged list method."""
        items, cursor = [], None
        for _ in range(MAX_PAGES):
            page = self._call(method, limit=PAGE_LIMIT, **({"cursor": cursor} if cursor else {}), **params)
            items += page.get(key) or []
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return items

    def oauth_access(self, client_id: str, client_secret: str, code: str, redirect_uri: str) -> dict:
        try:
            return self.client.oauth_v2_access(
                client_id=client_id, client_secret=client_secret, code=code, redirect_uri=redirect_uri
            ).data
        except (TimeoutError, SlackApiError, SlackRequestError, urllib.error.URLError, ConnectionError, OSError) as exc:
            raise _sorted_error(exc) from exc


def authorize_url_base(api_base: str) -> str:
    """Slack's browser authorize page lives beside its API: https://slack.com/api/ -> https://slack.com/oauth/v2/authorize."""
    root = api_base.rstrip("/")
    if root.endswith("/api"):
        root = root[: -len("/api")]
    return f"{root}/oauth/v2/authorize"
