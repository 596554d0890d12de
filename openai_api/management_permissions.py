"""Who may call which action of the management API: Django's model permissions, as in the admin.

Kept apart from :mod:`openai_api.management_api` because DRF imports its
``DEFAULT_PERMISSION_CLASSES`` while ``rest_framework.views`` is still loading, so this module
may import nothing from DRF but its permissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import permissions

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


def can_view(model: str) -> tuple[str, ...]:
    """The permissions that let one see ``model`` in the admin: view or change."""
    return (f"openai_api.view_{model}", f"openai_api.change_{model}")


class StaffModelPermissions(permissions.BasePermission):
    """Active staff holding the Django model permission of the action, as the admin asks.

    A view names, per action, the permissions any one of which allows it
    (``required_permissions``). An action the view does not name is refused, so a new action
    must state what it needs. Superusers hold every permission. A method no action handles
    (``action`` is None) is let through to DRF's 405.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is None or not (user.is_active and getattr(user, "is_staff", False)):
            return False
        action = getattr(view, "action", None)
        if action is None:
            return True
        required: dict[str, tuple[str, ...]] = getattr(view, "required_permissions", {})
        return any(user.has_perm(perm) for perm in required.get(action, ()))
