"""How a client proves who it is to an ml-dash server: one home for the header names.

``Authorization: Bearer <api key>``, or, against a development server started
with ``--allow-user-name``, ``X-ML-Dash-User: <name>``.
"""

from __future__ import annotations

USER_HEADER = "X-ML-Dash-User"


def credential_headers(api_key: str | None, user_name: str | None) -> dict[str, str]:
    """The request headers for a key (preferred) or a user name; none for neither."""
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    if user_name:
        return {USER_HEADER: user_name}
    return {}
