"""Permission catalogue and built-in roles.

Permissions are named ``<context>:<action>``. Contexts register theirs with
:func:`register` at import time so the console's permission matrix lists them. A role's
permission list may use ``<context>:*`` or ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CATALOGUE: dict[str, str] = {}


def register(name: str, description: str) -> str:
    if ":" not in name:
        raise ValueError(f"permission '{name}' must be '<context>:<action>'")
    CATALOGUE[name] = description
    return name


for _name, _desc in {
    "admin:users": "Invite, edit and disable users",
    "admin:roles": "Create and edit roles and permissions",
    "admin:departments": "Manage departments and teams",
    "admin:api_keys": "Create and revoke API keys",
    "admin:settings": "Change tenant settings",
    "admin:webhooks": "Manage webhook endpoints",
    "admin:subscription": "View subscription and usage",
    "audit:read": "Search and export the audit log",
    "pii:view": "See personal data unmasked in lists and details",
    "pii:unmask": "Reveal one masked value on demand (audited)",
    "users:read": "See the user directory",
    "contacts:read": "See contacts and accounts",
    "contacts:write": "Create and edit contacts and accounts",
    "contacts:import": "Import and export contacts",
    "messages:read": "See messages",
    "messages:send": "Send messages",
    "channels:manage": "Manage channels, routes and templates",
    "compliance:manage": "Manage word lists, block lists and reviews",
    "jobs:read": "See background jobs of the tenant",
    "jobs:manage": "Retry or cancel background jobs of the tenant",
}.items():
    register(_name, _desc)


def matches(granted: frozenset[str], needed: str) -> bool:
    if needed in granted or "*" in granted:
        return True
    ctx = needed.split(":", 1)[0]
    return f"{ctx}:*" in granted


@dataclass(frozen=True)
class BuiltinRole:
    key: str
    name: str
    permissions: list[str]
    visibility: dict[str, str] = field(default_factory=dict)
    description: str = ""


BUILTIN_ROLES: list[BuiltinRole] = [
    BuiltinRole("owner", "Owner", ["*"], {"default": "all"}, "Everything, including billing."),
    BuiltinRole(
        "admin",
        "Administrator",
        [
            "admin:*",
            "audit:*",
            "pii:*",
            "users:*",
            "contacts:*",
            "messages:*",
            "channels:*",
            "compliance:*",
            "jobs:*",
            "marketing:*",
            "sales:*",
            "service:*",
            "insights:*",
        ],
        {"default": "all"},
        "Administers users, roles, settings and every module.",
    ),
    BuiltinRole(
        "manager",
        "Manager",
        [
            "users:read",
            "contacts:*",
            "messages:*",
            "pii:unmask",
            "marketing:*",
            "sales:*",
            "service:*",
            "insights:*",
            "jobs:read",
        ],
        {"default": "department"},
        "Works with the records of their department subtree.",
    ),
    BuiltinRole(
        "member",
        "Member",
        [
            "users:read",
            "contacts:read",
            "contacts:write",
            "messages:read",
            "messages:send",
            "sales:read",
            "sales:write",
            "service:read",
            "service:write",
        ],
        {"default": "own"},
        "Works with their own records.",
    ),
    BuiltinRole(
        "read-only",
        "Read-only",
        ["users:read", "contacts:read", "messages:read", "sales:read", "service:read", "insights:read"],
        {"default": "own"},
        "Reads their own records.",
    ),
]
