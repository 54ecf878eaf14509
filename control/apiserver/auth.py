"""Who is asking, and may they: authentication and a simple authorization policy.

Authentication, as the kube-apiserver's `--token-auth-file` and `--client-ca-file`:
- a bearer token (`Authorization: Bearer <token>`) listed in the token file, a CSV
  of `token,user,uid,"group1,group2"` lines;
- or a client certificate signed by the cluster CA: the user is its CommonName, its
  Organizations are the groups.
Anything else is 401 Unauthorized. Every authenticated user is in
`system:authenticated`.

Authorization: a policy file (JSON) of rules; a request is allowed if a rule
matches its user or one of its groups, its verb, its resource (plural, or
`<plural>/<subresource>`; `*` for all) and namespace (`*` or absent: all). Without a
policy file, `system:masters` may do everything and nobody else anything.

    {"rules": [
      {"groups": ["system:masters"], "verbs": ["*"], "resources": ["*"]},
      {"users": ["system:node:n1"], "verbs": ["get", "list", "watch"],
       "resources": ["pods", "nodes", "configmaps", "secrets"]}
    ]}
"""

from __future__ import annotations

import csv
import io
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from control.apiserver import errors
from control.apiserver.errors import Target
from control.apiserver.resources import ResourceType

ADMIN_GROUP = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()

    def allows(self, user: User, verb: str, resource: str, namespace: str) -> bool:
        if not (user.name in self.users or set(user.groups) & self.groups):
            return False
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.resources and resource not in self.resources:
            base, sub, _ = resource.partition("/")
            if not sub or f"{base}/*" not in self.resources:  # `pods/*`: pods' subresources
                return False
        return not self.namespaces or "*" in self.namespaces or namespace in self.namespaces


DEFAULT_RULES = (
    Rule(groups=frozenset({ADMIN_GROUP}), verbs=frozenset({"*"}), resources=frozenset({"*"})),
)


def parse_token_file(text: str, source: str) -> dict[str, User]:
    """token -> user; ValueError naming the line for a malformed one."""
    users: dict[str, User] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f'{source}:{number}: want token,user,uid[,"groups"]')
        token, name, uid = (part.strip() for part in row[:3])
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        if not token or not name:
            raise ValueError(f"{source}:{number}: empty token or user")
        users[token] = User(name, uid, groups)
    return users


def parse_policy(text: str, source: str) -> tuple[Rule, ...]:
    try:
        document = json.loads(text)
        rules = []
        for index, rule in enumerate(document["rules"]):

            def names(key: str, rule: Any = rule, index: int = index) -> frozenset[str]:
                value = rule.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{source}: rules[{index}].{key}: want a list of strings")
                return frozenset(value)

            rules.append(Rule(names("users"), names("groups"), names("verbs"),
                              names("resources"), names("namespaces")))  # fmt: skip
        return tuple(rules)
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source}: not a policy ({e})") from None


@dataclass
class Authenticator:
    tokens: Mapping[str, User] = field(default_factory=dict)
    rules: tuple[Rule, ...] = DEFAULT_RULES

    @classmethod
    def from_files(cls, token_file: Path | None, policy_file: Path | None) -> Authenticator:
        tokens = parse_token_file(token_file.read_text(), str(token_file)) if token_file else {}
        rules = (
            parse_policy(policy_file.read_text(), str(policy_file))
            if policy_file
            else DEFAULT_RULES
        )
        return cls(tokens, rules)

    def authenticate(self, headers: Message, connection: Any) -> User:
        header = headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            user = self.tokens.get(credentials.strip())
            if user is not None:
                return User(user.name, user.uid, (*user.groups, AUTHENTICATED))
            raise errors.unauthorized()
        if isinstance(connection, ssl.SSLSocket):
            certificate = connection.getpeercert()
            if certificate:
                return _certificate_user(certificate)
        raise errors.unauthorized()

    def authorize(
        self,
        user: User,
        verb: str,
        resource: ResourceType,
        namespace: str,
        name: str,
        subresource: str = "",
    ) -> None:
        """Allowed, or 403. A subresource (`pods/status`) is authorized on its own, as
        RBAC does: a rule for `pods` does not allow `pods/status`."""
        asked = f"{resource.plural}/{subresource}" if subresource else resource.plural
        if any(rule.allows(user, verb, asked, namespace) for rule in self.rules):
            return
        raise errors.forbidden(
            user.name, verb, Target(resource.plural, name, resource.group), namespace, asked
        )


def _certificate_user(certificate: dict[str, Any]) -> User:
    name, groups = "", []
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        raise errors.unauthorized()
    return User(name, "", (*groups, AUTHENTICATED))
