"""The web UI's login: one operator account, for Locust's pages and the plugin's API alike.

Why: the control page changes what is sent to production analytics, so when the UI leaves
loopback it needs a login (docs/web-ui.md). Locust's ``--web-login`` brings Flask-Login but no
account; the plugin supplies one from ``TRAFFICINATOR_WEB_USER``/``TRAFFICINATOR_WEB_PASSWORD``
(browsers log in on Locust's login page, whose form posts here; API clients send HTTP Basic).
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Any

from flask import Blueprint, jsonify, redirect, request, session, url_for

from trafficinator_locust.core.errors import UsageError

__all__ = ["PASSWORD_ENV", "USER_ENV", "configure_login"]

USER_ENV, PASSWORD_ENV = "TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"


class _LoginUser:
    """The one operator account of TRAFFICINATOR_WEB_USER/PASSWORD (Flask-Login's user protocol)."""

    is_authenticated = is_active = True
    is_anonymous = False

    def __init__(self, name: str):
        self.name = name

    def get_id(self) -> str:
        return self.name


def configure_login(web_ui: Any, options: Any, base: str) -> bool:
    """Login with TRAFFICINATOR_WEB_USER/PASSWORD when they are set or --web-login is given.

    Browsers log in on Locust's login page (its form posts to the plugin); API clients may send
    HTTP Basic credentials. Returns whether login is required; raises :class:`UsageError` when only
    half the account is given.
    """
    from flask_login import LoginManager, login_user

    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if not (getattr(options, "web_login", False) or user or password):
        return False
    if not (user and password):
        raise UsageError(
            f"the web login needs both {USER_ENV} and {PASSWORD_ENV} set (the operator's account); "
            "set them, or drop --web-login to serve the UI on 127.0.0.1 only"
        )
    app = web_ui.app
    if not web_ui.web_login:
        manager = LoginManager()
        manager.init_app(app)
        manager.login_view = "locust.login"
        web_ui.login_manager = manager
        web_ui.web_login = True
    manager = web_ui.login_manager
    if not app.secret_key:
        app.secret_key = secrets.token_hex(32)

    def valid(name: str | None, secret: str | None) -> bool:
        return hmac.compare_digest((name or "").encode(), user.encode()) & hmac.compare_digest(
            (secret or "").encode(), password.encode()
        )

    manager.user_loader(lambda name: _LoginUser(name) if hmac.compare_digest(name.encode(), user.encode()) else None)

    @manager.request_loader
    def basic_auth(req: Any) -> _LoginUser | None:
        auth = req.authorization
        return _LoginUser(user) if auth is not None and valid(auth.username, auth.password) else None

    @manager.unauthorized_handler
    def unauthorized() -> Any:
        if request.path.startswith(f"{base}/api/"):
            response = jsonify({"error": "login required: log in on the web UI, or send HTTP Basic credentials"})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Basic realm="trafficinator"'
            return response
        return redirect(url_for("locust.login"))

    login_blueprint = Blueprint("trafficinator_login", __name__, url_prefix=base or None)

    @login_blueprint.route("/trafficinator/login", methods=["POST"])
    def login_submit() -> Any:
        if valid(request.form.get("username"), request.form.get("password")):
            login_user(_LoginUser(user))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))

    app.register_blueprint(login_blueprint)
    web_ui.auth_args = {**(web_ui.auth_args or {}), "username_password_callback": f"{base}/trafficinator/login"}
    return True
