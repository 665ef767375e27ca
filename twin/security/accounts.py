"""Apps and users, passwords, lockout, bearer and refresh tokens, nonces.

- Users' passwords: argon2id (``argon2-cffi``, salted, memory-hard), rules: at least 8
  characters from at least 3 of the classes lower case, upper case, digits, symbols.
  After ``login_max_failures`` failures in a row the account is locked for
  ``login_lockout_s``; the answer does not tell a wrong user from a wrong password.
- Apps: an app id and a secret (shown once at creation, stored encrypted: secret_box.py).
- Tokens: short-lived JWT bearer tokens (HS256 under the server key) carrying the subject
  and its roles; refresh tokens are JWTs too, recorded by id so they can be revoked; a
  user's ``token_version`` bump revokes every token issued before it.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from twin.errors import AccountLocked, InvalidParameter, Unauthorized
from twin.replicas import primary_only
from twin.schema import App, RefreshToken, RequestNonce, User
from twin.security.secret_box import SecretBox, server_key
from twin.security.signing import SignatureError, check_timestamp, verify
from twin.settings import TwinSettings
from twin.store import SpatialStore

APPS = cast(Table, App.__table__)
USERS = cast(Table, User.__table__)
REFRESH = cast(Table, RefreshToken.__table__)
NONCES = cast(Table, RequestNonce.__table__)
ROLES = ("admin", "operator", "planner", "field", "public", "exchange")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters


class AuthError(Unauthorized):
    """Credentials refused (401); ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)




@dataclass(frozen=True)
class Principal:
    """Who is calling: ``user:alice``, ``app:demo``, ``admin-token`` or ``anonymous``."""

    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


ANONYMOUS = Principal("anonymous", frozenset({"public"}))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def check_password_rules(password: str) -> None:
    """At least 8 characters from at least 3 of: lower case, upper case, digits, symbols."""
    classes = sum((
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ))
    if len(password) < 8 or classes < 3:
        raise InvalidParameter(
            "password must have at least 8 characters from at least 3 of: lower case, upper case, digits, symbols")
    if len(password) > 1024:
        raise InvalidParameter("password is longer than 1024 characters")


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidParameter(f"unknown roles {unknown}; known: {list(ROLES)}")
    return sorted(set(roles))


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise InvalidParameter(f"{kind} must be 1-64 characters of letters, digits and _.@-")
    return name


class Accounts:
    """Apps, users and tokens over one store."""

    def __init__(self, store: SpatialStore, settings: TwinSettings):
        self.store = store
        self.settings = settings
        self._key = server_key(settings)
        self.box = SecretBox(self._key)
        self._versions: dict[str, tuple[float, int | None]] = {}
        self._apps: dict[str, tuple[float, tuple[str, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ apps
    def create_app(self, app_id: str, roles: list[str], name: str | None = None,
                   secret: str | None = None) -> str:
        """Register an app; returns its secret (generated unless given), shown only now."""
        _check_name("app id", app_id)
        secret = secret or secrets.token_urlsafe(32)
        with self.store.engine.begin() as conn:
            try:
                conn.execute(insert(APPS).values(
                    app_id=app_id, name=name, secret_enc=self.box.seal(secret), roles=_check_roles(roles),
                    enabled=True, created_at=_now()))
            except IntegrityError:
                raise InvalidParameter(f"app {app_id!r} exists already") from None
        return secret

    def ensure_app(self, app_id: str, secret: str, roles: list[str]) -> None:
        """Create or update an app with a known secret (the demo app)."""
        self._apps.pop(app_id, None)
        with self.store.engine.begin() as conn:
            found = conn.execute(select(APPS.c.id).where(APPS.c.app_id == app_id)).first()
            values = {"secret_enc": self.box.seal(secret), "roles": _check_roles(roles), "enabled": True}
            if found:
                conn.execute(update(APPS).where(APPS.c.app_id == app_id).values(**values))
            else:
                conn.execute(insert(APPS).values(app_id=app_id, created_at=_now(), **values))

    def app_secret(self, app_id: str) -> tuple[str, frozenset[str]] | None:
        """(secret, roles) of an enabled app, or None for an unknown or disabled one.

        A known app is cached 2 s (as token versions are): a signed request then costs no database
        round trip (bench/security.py). Rotating or disabling an app through this object takes
        effect at once; through another process (``twin app``, another worker) within 2 s."""
        now = time.monotonic()
        hit = self._apps.get(app_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        t = APPS
        with primary_only(), self.store.engine.connect() as conn:  # never a lagging replica
            row = conn.execute(select(t.c.secret_enc, t.c.roles, t.c.enabled).where(t.c.app_id == app_id)).first()
        if row is None or not row.enabled:
            self._apps.pop(app_id, None)
            return None
        found = self.box.open(row.secret_enc), frozenset(row.roles or [])
        with self._lock:
            self._apps[app_id] = (now + 2.0, found)
        return found

    def list_apps(self) -> list[dict]:
        t = APPS
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.app_id, t.c.name, t.c.roles, t.c.enabled, t.c.created_at)
                                .order_by(t.c.app_id)).all()
        return [dict(r._mapping) for r in rows]

    def rotate_app_secret(self, app_id: str) -> str:
        self._apps.pop(app_id, None)
        secret = secrets.token_urlsafe(32)
        with self.store.engine.begin() as conn:
            n = conn.execute(update(APPS).where(APPS.c.app_id == app_id)
                             .values(secret_enc=self.box.seal(secret))).rowcount
        self._apps.pop(app_id, None)  # also after: a request in between may have cached the old one
        if not n:
            raise InvalidParameter(f"no app {app_id!r}")
        return secret

    def set_app_enabled(self, app_id: str, enabled: bool) -> None:
        self._apps.pop(app_id, None)
        self._versions.pop(f"app:{app_id}", None)
        with self.store.engine.begin() as conn:
            n = conn.execute(update(APPS).where(APPS.c.app_id == app_id)
                             .values(enabled=enabled)).rowcount
        self._apps.pop(app_id, None)
        if not n:
            raise InvalidParameter(f"no app {app_id!r}")

    # ------------------------------------------------------------------ users
    def create_user(self, username: str, password: str, roles: list[str]) -> None:
        _check_name("username", username)
        check_password_rules(password)
        with self.store.engine.begin() as conn:
            try:
                conn.execute(insert(USERS).values(
                    username=username, password_hash=_hasher.hash(password), roles=_check_roles(roles),
                    enabled=True, failed_logins=0, token_version=1, created_at=_now()))
            except IntegrityError:
                raise InvalidParameter(f"user {username!r} exists already") from None

    def set_password(self, username: str, password: str) -> None:
        check_password_rules(password)
        self._update_user(username, password_hash=_hasher.hash(password), failed_logins=0, locked_until=None,
                          token_version=USERS.c.token_version + 1)

    def set_user_enabled(self, username: str, enabled: bool) -> None:
        self._update_user(username, enabled=enabled, token_version=USERS.c.token_version + 1)

    def set_user_roles(self, username: str, roles: list[str]) -> None:
        self._update_user(username, roles=_check_roles(roles), token_version=USERS.c.token_version + 1)

    def unlock(self, username: str) -> None:
        self._update_user(username, failed_logins=0, locked_until=None)

    def _update_user(self, username: str, **values: object) -> None:
        with self.store.engine.begin() as conn:
            n = conn.execute(update(USERS).where(USERS.c.username == username)
                             .values(**values)).rowcount
        if not n:
            raise InvalidParameter(f"no user {username!r}")
        self._versions.pop(f"user:{username}", None)

    def list_users(self) -> list[dict]:
        t = USERS
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.username, t.c.roles, t.c.enabled, t.c.failed_logins, t.c.locked_until,
                                       t.c.created_at).order_by(t.c.username)).all()
        return [dict(r._mapping) for r in rows]

    def authenticate(self, username: str, password: str) -> Principal:
        """The user's principal, or :class:`AuthError`; failures count towards a lockout."""
        t = USERS
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.username == username)).first() if _NAME.match(username) else None
        if row is None:
            _hasher.hash("timing-equaliser")  # an unknown user costs as much as a known one
            raise AuthError("invalid_credentials", "wrong username or password")
        locked_until = _aware(row.locked_until)
        if locked_until is not None and locked_until > _now():
            raise AccountLocked(f"too many failed logins; locked until {locked_until.isoformat()}")
        ok = False
        try:
            ok = _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or not row.enabled:
            failures = row.failed_logins + 1
            values: dict[str, object] = {"failed_logins": failures}
            if failures >= self.settings.login_max_failures:
                values = {"failed_logins": 0,
                          "locked_until": _now() + dt.timedelta(seconds=self.settings.login_lockout_s)}
            with self.store.engine.begin() as conn:
                conn.execute(update(t).where(t.c.id == row.id).values(**values))
            raise AuthError("invalid_credentials", "wrong username or password")
        if row.failed_logins or row.locked_until is not None:
            with self.store.engine.begin() as conn:
                conn.execute(update(t).where(t.c.id == row.id).values(failed_logins=0, locked_until=None))
        return Principal(f"user:{username}", frozenset(row.roles or []))

    def authenticate_app(self, params: dict[str, str]) -> Principal:
        """A signed app request (appID, timestamp, nonce, sign[, sign_method]) → the app's principal."""
        app_id = params.get("appID") or params.get("app_id") or ""
        found = self.app_secret(app_id) if _NAME.match(app_id) else None
        if found is None:
            raise AuthError("unknown_app", "unknown or disabled app id")
        secret, roles = found
        try:
            check_timestamp(params.get("timestamp", ""), time.time(), self.settings.signature_window_s)
            verify(secret, params)
        except SignatureError as exc:
            raise AuthError(f"signature_{exc.reason}", str(exc)) from None
        nonce = params.get("nonce")
        if not nonce:
            raise AuthError("nonce_missing", "a signed token request needs a nonce")
        if not self.use_nonce(app_id, nonce):
            raise AuthError("signature_replay", "this nonce was used already")
        return Principal(f"app:{app_id}", roles)

    # ------------------------------------------------------------------ nonces
    def use_nonce(self, app_id: str, nonce: str) -> bool:
        """Record a nonce; False when it was seen within the window (a replay)."""
        if len(nonce) > 128:
            return False
        now = int(time.time())
        t = NONCES
        if secrets.randbelow(100) == 0:  # now and then, forget nonces older than twice the window
            with self.store.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.seen_at < now - 2 * self.settings.signature_window_s))
        try:
            with self.store.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # No wait for the WAL flush (an fsync: ~5 ms of the ~6 ms a nonce cost, bench/security.py).
                    # The unique key still refuses a replay at once, on every worker; only a database crash
                    # may forget the nonces of its last ~0.6 s (3 × wal_writer_delay): docs/security.md.
                    conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
                conn.execute(insert(t).values(app_id=app_id, nonce=nonce, seen_at=now))
        except IntegrityError:
            return False
        return True

    # ------------------------------------------------------------------ tokens
    def issue(self, principal: Principal) -> dict:
        """An access token and a refresh token for ``principal`` (OAuth2-style answer)."""
        now = int(time.time())
        version = self._token_version(principal.subject)
        claims = {"sub": principal.subject, "roles": sorted(principal.roles), "tv": version, "iat": now}
        access = jwt.encode({**claims, "typ": "access", "jti": uuid.uuid4().hex,
                             "exp": now + self.settings.access_token_ttl_s}, self._key, algorithm="HS256")
        jti = uuid.uuid4().hex
        expires = now + self.settings.refresh_token_ttl_s
        refresh = jwt.encode({**claims, "typ": "refresh", "jti": jti, "exp": expires}, self._key, algorithm="HS256")
        with self.store.engine.begin() as conn:
            conn.execute(insert(REFRESH).values(
                jti=jti, subject=principal.subject, revoked=False,
                expires_at=dt.datetime.fromtimestamp(expires, dt.UTC)))
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.settings.access_token_ttl_s,
                "refresh_token": refresh, "roles": sorted(principal.roles)}

    def _decode(self, token: str, typ: str) -> dict:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "token has expired") from None
        except jwt.PyJWTError:
            raise AuthError("token_invalid", "token is not valid") from None
        if claims.get("typ") != typ:
            raise AuthError("token_invalid", f"not an {typ} token")
        current = self._token_version(claims["sub"])
        if current is None or claims.get("tv") != current:
            raise AuthError("token_revoked", "token was revoked")
        return claims

    def principal_from_token(self, token: str) -> Principal:
        claims = self._decode(token, "access")
        return Principal(claims["sub"], frozenset(claims.get("roles") or []))

    def refresh(self, token: str) -> dict:
        claims = self._decode(token, "refresh")
        t = REFRESH
        with self.store.engine.begin() as conn:
            n = conn.execute(update(t).where(t.c.jti == claims["jti"], t.c.revoked.is_(False))
                             .values(revoked=True)).rowcount  # one use each: a stolen refresh token dies
        if not n:
            raise AuthError("token_revoked", "refresh token was used or revoked")
        return self.issue(self._current_principal(claims["sub"]))

    def revoke(self, token: str) -> None:
        """Revoke a refresh token; for a user, every token issued so far (token_version bump)."""
        claims = self._decode(token, "refresh")
        with self.store.engine.begin() as conn:
            conn.execute(update(REFRESH).where(REFRESH.c.jti == claims["jti"])
                         .values(revoked=True))
        if claims["sub"].startswith("user:"):
            self._update_user(claims["sub"][5:], token_version=USERS.c.token_version + 1)

    def _current_principal(self, subject: str) -> Principal:
        kind, _, name = subject.partition(":")
        if kind == "user":
            t = USERS
            with primary_only(), self.store.engine.connect() as conn:  # never a lagging replica
                row = conn.execute(select(t.c.roles, t.c.enabled).where(t.c.username == name)).first()
            if row is None or not row.enabled:
                raise AuthError("token_revoked", "the user no longer exists or is disabled")
            return Principal(subject, frozenset(row.roles or []))
        found = self.app_secret(name)
        if found is None:
            raise AuthError("token_revoked", "the app no longer exists or is disabled")
        return Principal(subject, found[1])

    def _token_version(self, subject: str) -> int | None:
        """A user's current token version (cached 2 s); 1 for apps (None when disabled/unknown)."""
        now = time.monotonic()
        hit = self._versions.get(subject)
        if hit is not None and hit[0] > now:
            return hit[1]
        kind, _, name = subject.partition(":")
        version: int | None
        if kind == "user":
            t = USERS
            with primary_only(), self.store.engine.connect() as conn:  # never a lagging replica
                row = conn.execute(select(t.c.token_version, t.c.enabled).where(t.c.username == name)).first()
            version = row.token_version if row is not None and row.enabled else None
        elif kind == "app":
            version = 1 if self.app_secret(name) is not None else None
        else:
            version = None
        with self._lock:
            self._versions[subject] = (now + 2.0, version)
        return version


__all__ = ["ANONYMOUS", "ROLES", "Accounts", "AuthError", "Principal", "check_password_rules"]
