"""A local Slack Web API (auth, chat, conversations, users, OAuth v2) that the real slack-sdk can talk to.

Point the client at it with
    slack_sdk.WebClient(token=token, base_url=fake.base_url)   # fake.base_url == f"{fake.url}/api/"
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import math
import secrets
import time
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from ._server import FakeServer, Fault, RecordedRequest, json_response

SLACKBOT = {
    "id": "USLACKBOT",
    "name": "slackbot",
    "real_name": "Slackbot",
    "is_bot": False,
    "deleted": False,
    "email": None,
}


class FakeSlack(FakeServer):
    """Slack's Web API contract (ok/error bodies, cursors, 429 with Retry-After) on 127.0.0.1."""

    def __init__(
        self,
        bot_token: str = "xoxb-test-token",
        team_id: str = "T0000TEST",
        team_name: str = "Acme",
        bot_user_id: str = "U0000BOT",
        client_id: str = "1111.2222",
        client_secret: str = "test-client-secret",
    ) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.team_id, self.team_name = team_id, team_name
        self.tokens: dict[str, dict] = {}
        self.channels: list[dict] = []
        self.users: list[dict] = []
        self.messages: list[dict] = []
        self.oauth_codes: dict[str, dict] = {}
        self.channel_errors: dict[str, str] = {}
        self._rate_limits: dict[str, tuple[int, float]] = {}
        self._calls: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
        self._seq = itertools.count(1)
        self._ts = itertools.count(1)
        self.add_token(bot_token, team_id=team_id, team_name=team_name, bot_user_id=bot_user_id)
        self.users.append(self._user(dict(SLACKBOT)))

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    # ----- state helpers for tests
    def add_token(
        self,
        token: str,
        *,
        team_id: str | None = None,
        team_name: str | None = None,
        bot_user_id: str = "U0000BOT",
        bot_id: str = "B0000BOT",
    ) -> None:
        with self.lock:
            self.tokens[token] = {
                "team_id": team_id or self.team_id,
                "team": team_name or self.team_name,
                "user_id": bot_user_id,
                "bot_id": bot_id,
                "user": "leadpulse",
            }

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    def add_channel(self, name: str, *, member: bool = True, private: bool = False, archived: bool = False) -> str:
        with self.lock:
            cid = ("G" if private else "C") + f"{next(self._seq):08d}"
            self.channels.append(
                {
                    "id": cid,
                    "name": name,
                    "is_channel": not private,
                    "is_group": private,
                    "is_im": False,
                    "is_mpim": False,
                    "is_private": private,
                    "is_archived": archived,
                    "is_general": name == "general",
                    "is_shared": False,
                    "is_org_shared": False,
                    "is_ext_shared": False,
                    "is_member": member,
                    "name_normalized": name,
                    "created": int(time.time()),
                    "creator": "U00000001",
                    "num_members": 3,
                    "context_team_id": self.team_id,
                    "topic": {"value": "", "creator": "", "last_set": 0},
                    "purpose": {"value": "", "creator": "", "last_set": 0},
                }
            )
            return cid

    def add_user(
        self,
        name: str,
        *,
        real_name: str | None = None,
        email: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
    ) -> str:
        with self.lock:
            uid = f"U{next(self._seq):08d}"
            self.users.append(
                self._user(
                    {
                        "id": uid,
                        "name": name,
                        "real_name": real_name or name,
                        "email": email,
                        "is_bot": is_bot,
                        "deleted": deleted,
                    }
                )
            )
            return uid

    def _user(self, u: dict) -> dict:
        profile = {
            "real_name": u["real_name"],
            "display_name": u["name"],
            "image_48": "https://a.slack-edge.com/48.png",
        }
        if u.get("email"):
            profile["email"] = u["email"]
        return {
            "id": u["id"],
            "team_id": self.team_id,
            "name": u["name"],
            "deleted": u["deleted"],
            "real_name": u["real_name"],
            "tz": "Europe/Berlin",
            "is_admin": False,
            "is_owner": False,
            "is_bot": u["is_bot"],
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": profile,
        }

    def add_oauth_code(
        self,
        code: str | None = None,
        *,
        team_id: str = "T0000INST",
        team_name: str = "Installed Team",
        bot_user_id: str = "U0000INST",
        authed_user_id: str = "U0000USER",
        scope: str = "chat:write,channels:read,groups:read,users:read,users:read.email",
        redirect_uri: str | None = None,
    ) -> str:
        """Registers a single-use code as if a user approved the install; returns the code."""
        with self.lock:
            code = code or f"{next(self._seq)}.{secrets.token_hex(8)}"
            self.oauth_codes[code] = {
                "team_id": team_id,
                "team_name": team_name,
                "bot_user_id": bot_user_id,
                "authed_user_id": authed_user_id,
                "scope": scope,
                "redirect_uri": redirect_uri,
            }
            return code

    def fail_channel(self, channel: str, error: str = "channel_not_found") -> None:
        """Posts to this channel id or name answer `error` (ok=false) until cleared."""
        with self.lock:
            self.channel_errors[channel.lstrip("#")] = error

    def set_rate_limit(self, method: str, calls: int, per_seconds: float = 60.0) -> None:
        """At most `calls` calls of `method` per token in a rolling window, then 429 with Retry-After."""
        with self.lock:
            self._rate_limits[method] = (calls, per_seconds)

    def fail_next(
        self, n: int = 1, status: int = 500, path: str | None = None, method: str | None = None, **options
    ) -> None:
        """Like FakeServer.fail_next, with `method` as a shortcut for path=/api/<method>; 429 takes retry_after."""
        super().fail_next(n, status, path or (f"/api/{method}" if method else None), **options)

    def slow_next(self, n: int = 1, seconds: float = 5.0, path: str | None = None, method: str | None = None) -> None:
        """Like FakeServer.slow_next, with `method` as a shortcut for path=/api/<method>."""
        super().slow_next(n, seconds, path or (f"/api/{method}" if method else None))

    # ----- transport concerns
    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.status == 429:
            return json_response(
                {"ok": False, "error": "ratelimited"}, 429, {"Retry-After": str(fault.options.get("retry_after", 1))}
            )
        if fault.status in (502, 503, 504):
            return Response(
                f"<html><body>{fault.status} upstream unavailable</body></html>",
                status=fault.status,
                content_type="text/html",
            )
        return json_response({"ok": False, "error": fault.options.get("error", "internal_error")}, fault.status)

    def handle(self, request: Request, record: RecordedRequest) -> Response:
        if not request.path.startswith("/api/"):
            if request.path == "/oauth/v2/authorize":
                return self._authorize(request)
            return Response("Not Found", status=404)
        method = request.path[len("/api/") :]
        args = {k: v for k, v in request.args.items()}
        if isinstance(record.body, dict):
            args.update(record.body)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else args.get("token")
        if method == "oauth.v2.access":
            return self._oauth_access(request, args)
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return json_response({"ok": False, "error": "unknown_method", "req_method": method}, 404)
        if not token:
            return json_response({"ok": False, "error": "not_authed"})
        with self.lock:
            identity = self.tokens.get(token)
            if identity is None:
                return json_response({"ok": False, "error": "invalid_auth"})
            limited = self._limit(token, method)
            if limited is not None:
                return limited
            return json_response(handler(identity, args))

    def _limit(self, token: str, method: str) -> Response | None:
        if method not in self._rate_limits:
            return None
        calls, per = self._rate_limits[method]
        now = time.monotonic()
        window = self._calls[(token, method)]
        while window and now - window[0] >= per:
            window.popleft()
        if len(window) >= calls:
            wait = max(1, math.ceil(per - (now - window[0])))
            return json_response({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": str(wait)})
        window.append(now)
        return None

    # ----- API methods (called under the lock)
    def _api_auth_test(self, who: dict, args: dict) -> dict:
        return {
            "ok": True,
            "url": f"https://{who['team'].lower().replace(' ', '-')}.slack.com/",
            "team": who["team"],
            "user": who["user"],
            "team_id": who["team_id"],
            "user_id": who["user_id"],
            "bot_id": who["bot_id"],
            "is_enterprise_install": False,
        }

    def _find_channel(self, ref: str) -> dict | None:
        ref = ref.lstrip("#")
        return next((c for c in self.channels if c["id"] == ref or c["name"] == ref), None)

    def _api_chat_postMessage(self, who: dict, args: dict) -> dict:
        ref = str(args.get("channel") or "")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return {"ok": False, "error": "invalid_blocks_format"}
        if blocks is not None and (
            not isinstance(blocks, list) or not all(isinstance(b, dict) and b.get("type") for b in blocks)
        ):
            return {"ok": False, "error": "invalid_blocks"}
        text = args.get("text")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        channel = self._find_channel(ref) if ref else None
        names = {ref.lstrip("#")} | ({channel["id"], channel["name"]} if channel else set())
        error = next((self.channel_errors[n] for n in names if n in self.channel_errors), None)
        if error:
            return {"ok": False, "error": error}
        if channel is None:
            if ref and any(u["id"] in (ref, "U" + ref[1:]) for u in self.users):
                channel = {"id": "D" + ref[1:], "name": ref, "is_member": True, "is_archived": False}
            else:
                return {"ok": False, "error": "channel_not_found"}
        if channel["is_archived"]:
            return {"ok": False, "error": "is_archived"}
        if not channel["is_member"]:
            return {"ok": False, "error": "not_in_channel"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": text or "",
            "user": who["user_id"],
            "bot_id": who["bot_id"],
            "ts": ts,
            "team": who["team_id"],
        }
        if blocks is not None:
            message["blocks"] = blocks
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return {"ok": False, "error": "invalid_metadata_format"}
        if metadata is not None:
            message["metadata"] = metadata
        self.messages.append(
            {
                "channel": channel["id"],
                "channel_name": channel["name"],
                "text": text,
                "blocks": blocks,
                "ts": ts,
                "team_id": who["team_id"],
                "args": dict(args),
                "metadata": metadata,
            }
        )
        return {"ok": True, "channel": channel["id"], "ts": ts, "message": message}

    @staticmethod
    def _paged(items: list, args: dict, key: str) -> dict:
        """Slack cursor paging: opaque base64 cursor, empty next_cursor on the last page."""
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            return {"ok": False, "error": "invalid_limit"}
        limit = min(max(limit, 1), 1000)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(args["cursor"]).decode().split(":", 1)[1])
            except (ValueError, IndexError):
                return {"ok": False, "error": "invalid_cursor"}
        chunk = items[start : start + limit]
        nxt = start + limit
        cursor = base64.b64encode(f"offset:{nxt}".encode()).decode() if nxt < len(items) else ""
        return {"ok": True, key: chunk, "response_metadata": {"next_cursor": cursor}}

    def _api_conversations_list(self, who: dict, args: dict) -> dict:
        types = set((args.get("types") or "public_channel").split(","))
        exclude_archived = str(args.get("exclude_archived", "")).lower() in ("1", "true")
        chosen = [
            c
            for c in self.channels
            if (
                ("private_channel" in types and c["is_private"] and c["is_member"])
                or ("public_channel" in types and not c["is_private"])
            )
            and not (exclude_archived and c["is_archived"])
        ]
        return self._paged(chosen, args, "channels")

    def _api_conversations_info(self, who: dict, args: dict) -> dict:
        channel = self._find_channel(str(args.get("channel") or ""))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": channel}

    def _api_conversations_history(self, who: dict, args: dict) -> dict:
        """Newest first, cursor-paged; message metadata only with include_all_metadata, as Slack does."""
        ref = str(args.get("channel") or "")
        channel = self._find_channel(ref)
        cid = channel["id"] if channel else (ref if ref.startswith("D") else None)
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(args.get("oldest") or 0)
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        items = []
        for m in reversed(self.messages):
            if m["channel"] != cid or float(m["ts"]) < oldest:
                continue
            item = {"type": "message", "ts": m["ts"], "text": m["text"] or ""}
            if with_meta and m.get("metadata") is not None:
                item["metadata"] = m["metadata"]
            items.append(item)
        page = self._paged(items, args, "messages")
        if page["ok"]:
            page["has_more"] = bool(page["response_metadata"]["next_cursor"])
        return page

    def _api_conversations_open(self, who: dict, args: dict) -> dict:
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        if not all(any(m["id"] == u and not m["deleted"] for m in self.users) for u in users):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[0][1:], "is_im": True}}

    def _api_users_info(self, who: dict, args: dict) -> dict:
        user = next((u for u in self.users if u["id"] == args.get("user")), None)
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _api_users_list(self, who: dict, args: dict) -> dict:
        page = self._paged(self.users, args, "members")
        if page["ok"]:
            page["cache_ts"] = int(time.time())
        return page

    def _oauth_access(self, request: Request, args: dict) -> Response:
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id, client_secret = request.authorization.username, request.authorization.password
        with self.lock:
            if client_id != self.client_id:
                return json_response({"ok": False, "error": "invalid_client_id"})
            if client_secret != self.client_secret:
                return json_response({"ok": False, "error": "bad_client_secret"})
            grant = self.oauth_codes.pop(args.get("code") or "", None)
            if grant is None:
                return json_response({"ok": False, "error": "invalid_code"})
            if grant["redirect_uri"] and args.get("redirect_uri") not in (None, grant["redirect_uri"]):
                return json_response({"ok": False, "error": "bad_redirect_uri"})
            token = f"xoxb-{grant['team_id']}-{next(self._seq)}-{secrets.token_hex(12)}"
            self.add_token(
                token,
                team_id=grant["team_id"],
                team_name=grant["team_name"],
                bot_user_id=grant["bot_user_id"],
                bot_id="B0000INST",
            )
        return json_response(
            {
                "ok": True,
                "app_id": "A0000TEST",
                "access_token": token,
                "token_type": "bot",
                "scope": grant["scope"],
                "bot_user_id": grant["bot_user_id"],
                "team": {"id": grant["team_id"], "name": grant["team_name"]},
                "enterprise": None,
                "is_enterprise_install": False,
                "authed_user": {"id": grant["authed_user_id"]},
            }
        )

    def _authorize(self, request: Request) -> Response:
        """The browser step: approve at once and redirect to redirect_uri with a fresh code and the given state."""
        if request.args.get("client_id") != self.client_id or not request.args.get("redirect_uri"):
            return Response("invalid_client_id or missing redirect_uri", status=400)
        redirect_uri = request.args["redirect_uri"]
        code = self.add_oauth_code(redirect_uri=redirect_uri, scope=request.args.get("scope") or "chat:write")
        query = urlencode({"code": code, "state": request.args.get("state", "")})
        return Response(status=302, headers={"Location": f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"})
