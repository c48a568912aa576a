"""Who am I, and user administration for admins (the CLI does the same through the service)."""
from __future__ import annotations

from flask.views import MethodView

from ..extensions import db
from ..http import Blueprint, current_actor, one_page
from . import schemas as s
from . import service

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Users and tokens")


@blp.route("/me")
class Me(MethodView):
    @blp.roles("admin", "operator", "inspector", "agent")
    @blp.response(200, s.MeOut)
    def get(self):
        """The caller's identity and role"""
        return current_actor()


@blp.route("/users")
class Users(MethodView):
    @blp.roles("admin")
    @blp.response(200, s.UserOut(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List users"""
        return one_page(pagination_parameters, service.list_users)

    @blp.roles("admin")
    @blp.arguments(s.UserIn)
    @blp.response(201, s.UserWithToken)
    def post(self, values):
        """Create a user and its first token (shown once)"""
        user = service.create_user(db.session, values["name"], values["role"], values["operator_id"])
        token = service.issue_token(db.session, user)
        # Raw values: the response schema serializes them (a pre-dumped created_at string crashed it).
        return {**{name: getattr(user, name) for name in s.UserOut().fields}, "token": token}


@blp.route("/users/<int:user_id>/revoke")
class Revoke(MethodView):
    @blp.roles("admin")
    @blp.response(200, s.RevokeOut)
    def post(self, user_id):
        """Deactivate a user and revoke all its tokens"""
        user = service.get_user(db.session, user_id)
        count = service.revoke_user(db.session, user)
        return {"user": user, "tokens_revoked": count}
