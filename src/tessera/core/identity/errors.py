from __future__ import annotations

from tessera.core.http.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

__all__ = ["Conflict", "Forbidden", "InvalidInput", "NotFound", "Unauthenticated"]


class InvalidCredentials(Unauthenticated):
    """The workspace, email or password is wrong."""

    code = "auth.invalid_credentials"


class AccountLocked(Forbidden):
    """Too many failed sign-ins; the account is locked for a while."""

    code = "auth.locked"


class UserDisabled(Forbidden):
    """This user is disabled."""

    code = "auth.user_disabled"


class MfaRequired(Forbidden):
    """Two-factor verification is required."""

    code = "auth.mfa_required"


class InvalidMfaCode(InvalidInput):
    """The two-factor code is wrong or expired."""

    code = "auth.invalid_mfa_code"


class InvalidResetToken(InvalidInput):
    """The password reset link is invalid or expired."""

    code = "auth.invalid_reset_token"


class WeakPassword(InvalidInput):
    """The password is too short."""

    code = "user.weak_password"


class DuplicateEmail(Conflict):
    """A user with this email already exists in this tenant."""

    code = "user.duplicate_email"


class UserNotFound(NotFound):
    """User not found."""

    code = "user.not_found"


class RoleNotFound(NotFound):
    """Role not found."""

    code = "role.not_found"


class RoleInUse(Conflict):
    """The role is still assigned to users or API keys."""

    code = "role.in_use"


class BuiltinRoleReadOnly(Forbidden):
    """Built-in roles cannot be changed or deleted."""

    code = "role.builtin_read_only"


class UnknownPermission(InvalidInput):
    """Unknown permission."""

    code = "role.unknown_permission"


class DepartmentNotFound(NotFound):
    """Department not found."""

    code = "department.not_found"


class DepartmentNotEmpty(Conflict):
    """The department still has sub-departments or users."""

    code = "department.not_empty"


class DepartmentCycle(InvalidInput):
    """A department cannot be moved under itself or its descendants."""

    code = "department.cycle"


class TeamNotFound(NotFound):
    """Team not found."""

    code = "team.not_found"


class DuplicateTeam(Conflict):
    """A team with this name already exists."""

    code = "team.duplicate_name"


class ApiKeyNotFound(NotFound):
    """API key not found."""

    code = "api_key.not_found"


class ScopeNotAllowed(Forbidden):
    """An API key cannot have more permissions than its creator."""

    code = "api_key.scope_not_allowed"
