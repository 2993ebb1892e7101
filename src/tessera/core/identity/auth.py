"""Authentication use cases: sign-in, sessions, two-factor, password reset, API keys.

Credentials carry their tenant: an API key is ``tsk_<tenant hex>_<key id>_<secret>`` and a
session cookie is ``<tenant hex>.<token>``. The tenant is put in scope *before* the credential
is looked up, so credential tables stay under row-level security like every tenant table.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from dataclasses import dataclass

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.access.permissions import matches
from tessera.core.access.principal import Principal
from tessera.core.audit import service as audit
from tessera.core.db.base import utcnow
from tessera.core.identity import errors
from tessera.core.identity.mail import send_email
from tessera.core.identity.models import ApiKey, AuthSession, PasswordResetToken, User
from tessera.core.identity.passwords import hash_password, new_token, sha256_hex, verify_password
from tessera.core.identity.repository import (
    ApiKeyRepository,
    AuthSessionRepository,
    DepartmentRepository,
    ResetTokenRepository,
    RoleRepository,
    TeamRepository,
    UserRepository,
)
from tessera.core.identity.schemas import ApiKeyCreate
from tessera.core.identity.service import check_password, principal_cache_invalidators
from tessera.core.singleflight import SingleFlight
from tessera.settings import get_settings

RESET_TTL = dt.timedelta(hours=2)
PRINCIPAL_TTL = 30.0


@dataclass
class ParsedApiKey:
    tenant_id: uuid.UUID
    prefix: str
    secret: str


def parse_api_key(raw: str) -> ParsedApiKey | None:
    parts = raw.split("_")
    if len(parts) != 4 or parts[0] != "tsk":
        return None
    try:
        tenant_id = uuid.UUID(hex=parts[1])
    except ValueError:
        return None
    return ParsedApiKey(tenant_id, f"tsk_{parts[1]}_{parts[2]}", parts[3])


def parse_session_cookie(raw: str) -> tuple[uuid.UUID, str] | None:
    head, _, token = raw.partition(".")
    if not token:
        return None
    try:
        return uuid.UUID(hex=head), token
    except ValueError:
        return None


def _keeping_changes(exc: Exception) -> Exception:
    """Mark ``exc`` so the unit of work commits the failure count and audit row before it."""
    exc.commit_transaction = True  # type: ignore[attr-defined]
    return exc


# --- principal -----------------------------------------------------------------------------

_principal_cache: dict[str, tuple[float, Principal]] = {}


def clear_principal_cache() -> None:
    _principal_cache.clear()
    _touched.clear()


TOUCH_EVERY = dt.timedelta(minutes=1)
# When this process last wrote a key's last-used time (monotonic seconds). When a key's cache
# entry expires, every request then in flight with that key looks it up; without this only the
# row's stale time would decide, and each of them would update the same row inside its own
# transaction, queueing behind the others' commits.
_touched: dict[uuid.UUID, float] = {}


def _first_touch(key_id: uuid.UUID, now_mono: float) -> bool:
    """True for the first request of this process to touch ``key_id`` in ``TOUCH_EVERY``."""
    last = _touched.get(key_id)
    if last is not None and now_mono - last < TOUCH_EVERY.total_seconds():
        return False
    if len(_touched) > 10000:
        _touched.clear()
    _touched[key_id] = now_mono
    return True


principal_cache_invalidators.append(clear_principal_cache)


async def build_principal(
    session: AsyncSession,
    user: User | None,
    *,
    api_key: ApiKey | None = None,
    auth_session: AuthSession | None = None,
) -> Principal:
    tenant_id = context.current_tenant_id()
    role_id = user.role_id if user else (api_key.role_id if api_key else None)
    role = await RoleRepository(session).get(role_id) if role_id else None
    perms = frozenset(role.permissions if role else [])
    if api_key is not None:
        scoped = frozenset(api_key.scopes)
        perms = frozenset(p for p in scoped if matches(perms, p)) if role else scoped
    dep_path = None
    team_ids: frozenset[uuid.UUID] = frozenset()
    if user is not None:
        if user.department_id:
            dep = await DepartmentRepository(session).get(user.department_id)
            dep_path = dep.path if dep else None
        team_ids = frozenset(await TeamRepository(session).team_ids_of(user.id))
    if api_key is not None:
        actor = context.Actor("api_key", api_key.id, api_key.name)
    else:
        assert user is not None
        actor = context.Actor("user", user.id, user.email)
    return Principal(
        tenant_id=tenant_id,
        actor=actor,
        role_key=role.key if role else "api",
        permissions=perms,
        visibility=dict(role.visibility) if role else {"default": "all"},
        user_id=user.id if user else None,
        api_key_id=api_key.id if api_key else None,
        department_id=user.department_id if user else None,
        department_path=dep_path,
        team_ids=team_ids,
        locale=(user.locale if user and user.locale else "en"),
        session_id=auth_session.id if auth_session else None,
        csrf_token=auth_session.csrf_token if auth_session else None,
        mfa_passed=auth_session.mfa_passed if auth_session else True,
    )


def cached_api_key_principal(raw: str) -> Principal | None:
    """The principal of an API key verified in this process less than ``PRINCIPAL_TTL`` seconds
    ago and not revoked here since (revoking clears the cache), else None."""
    cached = _principal_cache.get(raw)
    if cached is not None and time.monotonic() - cached[0] < PRINCIPAL_TTL:
        return cached[1]
    return None


_key_lookups: SingleFlight[str, Principal] = SingleFlight()


async def authenticate_api_key(session: AsyncSession, raw: str) -> Principal:
    """Resolve an API key (tenant already in scope from the key itself).

    When the key's cache entry expires, the requests then in flight with it share one lookup
    (through the first one's session) instead of each looking it up in its own transaction."""
    cached = cached_api_key_principal(raw)
    if cached is not None:
        return cached
    return await _key_lookups.run(raw, lambda: _look_up_api_key(session, raw))


async def _look_up_api_key(session: AsyncSession, raw: str) -> Principal:
    now_mono = time.monotonic()
    parsed = parse_api_key(raw)
    if parsed is None:
        raise errors.Unauthenticated("malformed API key")
    key = await ApiKeyRepository(session).by_prefix(parsed.prefix)
    now = utcnow()
    if key is None or not secrets.compare_digest(key.secret_hash, sha256_hex(parsed.secret)):
        raise errors.Unauthenticated("invalid API key")
    if key.revoked_at is not None:
        raise errors.Unauthenticated("this API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise errors.Unauthenticated("this API key has expired")
    creator = await UserRepository(session).get(key.created_by) if key.created_by else None
    if creator is not None and creator.status == "disabled":
        raise errors.UserDisabled("the user who created this API key is disabled")
    if (key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY) and _first_touch(key.id, now_mono):
        await ApiKeyRepository(session).touch(key.id, now)
    principal = await build_principal(session, None, api_key=key)
    if len(_principal_cache) > 10000:
        _principal_cache.clear()
    _principal_cache[raw] = (now_mono, principal)
    return principal


async def authenticate_session(session: AsyncSession, token: str) -> Principal:
    s = get_settings()
    row = await AuthSessionRepository(session).by_token_hash(sha256_hex(token))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise errors.Unauthenticated("your session has ended; sign in again")
    if now - row.last_seen_at > dt.timedelta(minutes=s.session_idle_minutes):
        row.revoked_at = now
        raise errors.Unauthenticated("your session timed out; sign in again", reason="idle")
    user = await UserRepository(session).get(row.user_id)
    if user is None or user.status != "active":
        raise errors.UserDisabled()
    if now - row.last_seen_at > dt.timedelta(seconds=30):
        row.last_seen_at = now
    return await build_principal(session, user, auth_session=row)


# --- sign-in -------------------------------------------------------------------------------


async def login(
    session: AsyncSession, email: str, password: str, *, ip: str | None, user_agent: str | None
) -> tuple[User, AuthSession, str]:
    """Check the password; return the user, a new session and the raw cookie token."""
    s = get_settings()
    repo = UserRepository(session)
    user = await repo.by_email(email.lower())
    now = utcnow()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise errors.AccountLocked(retry_after=int((user.locked_until - now).total_seconds()))
    if user is None or not verify_password(password, user.password_hash):
        if user is not None:
            context.bind(context.current_tenant_id(), context.Actor("user", user.id, user.email))
            await repo.record_failure(
                user, s.login_max_failures, now + dt.timedelta(minutes=s.login_lockout_minutes)
            )
            await audit.record(
                session, "auth.login_failed", "user", user.id, changes={"failed_logins": user.failed_logins}
            )
        raise _keeping_changes(errors.InvalidCredentials())
    if user.status == "disabled":
        raise errors.UserDisabled()
    context.bind(context.current_tenant_id(), context.Actor("user", user.id, user.email))
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    token = new_token()
    row = AuthSession(
        token_hash=sha256_hex(token),
        user_id=user.id,
        csrf_token=new_token(24),
        mfa_passed=not user.totp_enabled,
        created_at=now,
        last_seen_at=now,
        expires_at=now + dt.timedelta(hours=s.session_absolute_hours),
        ip=ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    await AuthSessionRepository(session).create(row)
    await audit.record(session, "auth.login", "user", user.id, changes={"mfa_pending": user.totp_enabled})
    cookie = f"{context.current_tenant_id().hex}.{token}"
    return user, row, cookie


async def logout(session: AsyncSession, session_id: uuid.UUID) -> None:
    row = await AuthSessionRepository(session).get(session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(session, "auth.logout", "user", row.user_id)


# --- two-factor ----------------------------------------------------------------------------


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


async def mfa_enrol(session: AsyncSession, user_id: uuid.UUID, tenant_slug: str) -> tuple[str, str]:
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise errors.UserNotFound()
    secret = pyotp.random_base32()
    user.totp_secret = secret
    user.totp_enabled = False
    await session.flush()
    uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=f"Tessera ({tenant_slug})")
    return secret, uri


def _recovery_codes() -> list[str]:
    return [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(10)]


async def mfa_activate(session: AsyncSession, user_id: uuid.UUID, code: str) -> list[str]:
    user = await UserRepository(session).get(user_id)
    if user is None or not user.totp_secret:
        raise errors.InvalidMfaCode("start enrolment first", field="code")
    if not _totp(user.totp_secret).verify(code.strip(), valid_window=1):
        raise errors.InvalidMfaCode(field="code")
    codes = _recovery_codes()
    user.recovery_codes = [sha256_hex(c) for c in codes]
    user.totp_enabled = True
    await audit.record(session, "user.mfa_enabled", "user", user.id)
    return codes


async def mfa_verify(session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, code: str) -> None:
    """Complete a sign-in with a TOTP code or a one-time recovery code."""
    user = await UserRepository(session).get(user_id)
    row = await AuthSessionRepository(session).get(session_id)
    if user is None or row is None or not user.totp_enabled or not user.totp_secret:
        raise errors.InvalidMfaCode(field="code")
    code = code.strip()
    ok = _totp(user.totp_secret).verify(code, valid_window=1)
    if not ok:
        digest = sha256_hex(code)
        if digest in user.recovery_codes:
            user.recovery_codes = [c for c in user.recovery_codes if c != digest]
            ok = True
    if not ok:
        s = get_settings()
        await UserRepository(session).record_failure(
            user, s.login_max_failures, utcnow() + dt.timedelta(minutes=s.login_lockout_minutes)
        )
        if user.failed_logins >= s.login_max_failures:
            row.revoked_at = utcnow()
        await audit.record(session, "auth.mfa_failed", "user", user.id)
        raise _keeping_changes(errors.InvalidMfaCode(field="code"))
    user.failed_logins = 0
    row.mfa_passed = True
    await audit.record(session, "auth.mfa_passed", "user", user.id)


# --- password reset ------------------------------------------------------------------------


async def request_password_reset(session: AsyncSession, email: str, base_url: str) -> str | None:
    """Create a reset token and email it. Returns the token (for tests); None if no such user."""
    user = await UserRepository(session).by_email(email.lower())
    if user is None or user.status == "disabled":
        return None
    token = f"{context.current_tenant_id().hex}.{new_token()}"
    now = utcnow()
    await ResetTokenRepository(session).create(
        PasswordResetToken(
            token_hash=sha256_hex(token), user_id=user.id, created_at=now, expires_at=now + RESET_TTL
        )
    )
    await audit.record(session, "auth.password_reset_requested", "user", user.id)
    await send_email(
        user.email,
        "Reset your Tessera password",
        f"Open this link within 2 hours to choose a new password:\n{base_url}/reset?token={token}\n",
    )
    return token


async def confirm_password_reset(session: AsyncSession, token: str, password: str) -> User:
    check_password(password)
    row = await ResetTokenRepository(session).by_token_hash(sha256_hex(token))
    now = utcnow()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise errors.InvalidResetToken(field="token")
    user = await UserRepository(session).get(row.user_id)
    if user is None or user.status == "disabled":
        raise errors.InvalidResetToken(field="token")
    row.used_at = now
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    if user.status == "invited":
        user.status = "active"
    await AuthSessionRepository(session).revoke_all_for(user.id, now)
    context.bind(context.current_tenant_id(), context.Actor("user", user.id, user.email))
    await audit.record(session, "auth.password_reset", "user", user.id)
    return user


# --- API keys ------------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession, data: ApiKeyCreate, creator: Principal | None
) -> tuple[ApiKey, str]:
    tenant_hex = context.current_tenant_id().hex
    scopes = sorted(set(data.scopes))
    if creator is not None:
        if not scopes:
            scopes = sorted(creator.permissions)
        for sc in scopes:
            if not creator.has(sc) and not (sc.endswith(":*") and "*" in creator.permissions):
                raise errors.ScopeNotAllowed(f"you cannot grant '{sc}'", field="scopes")
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise errors.InvalidInput("expires_at must be in the future", field="expires_at")
    key_id = secrets.token_hex(4)
    secret = new_token(24).replace("_", "x").replace("-", "y")
    prefix = f"tsk_{tenant_hex}_{key_id}"
    key = ApiKey(
        name=data.name,
        prefix=prefix,
        secret_hash=sha256_hex(secret),
        scopes=scopes,
        role_id=None,
        created_by=creator.user_id if creator else None,
        expires_at=data.expires_at,
    )
    await ApiKeyRepository(session).create(key)
    await audit.record(
        session,
        "api_key.create",
        "api_key",
        key.id,
        after={"name": key.name, "scopes": scopes, "prefix": prefix},
    )
    return key, f"{prefix}_{secret}"


async def revoke_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    key = await ApiKeyRepository(session).get(key_id)
    if key is None:
        raise errors.ApiKeyNotFound()
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await audit.record(session, "api_key.revoke", "api_key", key.id, changes={"prefix": key.prefix})
        clear_principal_cache()
    return key
